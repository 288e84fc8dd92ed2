//! fsutil's `Stat.mode` is Go's `os.FileMode` (the sender's `fi.Mode()`),
//! not a unix mode: the file type and the setuid/setgid/sticky bits are
//! high bits of their own. These convert between the two.

pub const DIR: u32 = 1 << 31;
pub const SYMLINK: u32 = 1 << 27;
pub const DEVICE: u32 = 1 << 26;
pub const NAMED_PIPE: u32 = 1 << 25;
pub const SOCKET: u32 = 1 << 24;
const SETUID: u32 = 1 << 23;
const SETGID: u32 = 1 << 22;
pub const CHAR_DEVICE: u32 = 1 << 21;
const STICKY: u32 = 1 << 20;
pub const IRREGULAR: u32 = 1 << 19;
/// The type bits (none: a regular file).
pub const TYPE: u32 = DIR | SYMLINK | NAMED_PIPE | SOCKET | DEVICE | CHAR_DEVICE | IRREGULAR;

/// Special bits in the order unix and Go have them.
const SPECIAL: [(u32, u32); 3] = [(0o4000, SETUID), (0o2000, SETGID), (0o1000, STICKY)];

/// The unix permission and special bits of a Go mode.
pub fn unix_permissions(go: u32) -> u32 {
    SPECIAL
        .iter()
        .filter(|(_, g)| go & g != 0)
        .fold(go & 0o777, |m, (u, _)| m | u)
}

/// The Go mode of unix permission and special bits (no type).
pub fn go_permissions(unix: u32) -> u32 {
    SPECIAL
        .iter()
        .filter(|(u, _)| unix & u != 0)
        .fold(unix & 0o777, |m, (_, g)| m | g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_bits_go_both_ways() {
        for unix in [0o644, 0o4755, 0o2750, 0o1777, 0o7777] {
            assert_eq!(unix_permissions(go_permissions(unix)), unix);
        }
        assert_eq!(go_permissions(0o4755), SETUID | 0o755);
        assert_eq!(unix_permissions(DIR | STICKY | 0o777), 0o1777);
    }
}
