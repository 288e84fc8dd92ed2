//! Reading /proc/self/mountinfo: the mount points, with the kernel's octal
//! escapes (`\040` for a space, and tab, newline, backslash) decoded.

/// Every mount point in a mountinfo text, in the order they were mounted.
pub fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_the_fifth_field_unescaped() {
        let text = "22 1 0:5 / /dev rw - devtmpfs dev rw\n\
                    30 22 0:6 / /mnt/a\\040b\\134c rw - tmpfs t rw\n";
        let points: Vec<String> = mount_points(text).collect();
        assert_eq!(points, vec!["/dev".to_string(), "/mnt/a b\\c".to_string()]);
    }

    #[test]
    fn decodes_octal_escapes() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
        assert_eq!(unescape("/data\\040dir"), "/data dir");
        assert_eq!(unescape("/plain"), "/plain");
        assert_eq!(unescape("/trailing\\04"), "/trailing\\04");
        assert_eq!(unescape(r"/a\\"), r"/a\\");
    }
}
