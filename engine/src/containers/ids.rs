//! Container IDs and names, as Docker makes and checks them.

use std::io::Read;

/// A new 64-hex-digit container ID from the kernel's random source.
pub fn new_id() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Docker's name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, an optional leading `/`.
pub fn valid_name(name: &str) -> bool {
    let name = name.strip_prefix('/').unwrap_or(name);
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    name.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

const LEFT: &[&str] = &[
    "agile", "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry",
    "nimble", "proud", "quiet", "sharp", "tender", "vivid", "witty", "zen",
];
const RIGHT: &[&str] = &[
    "badger", "crane", "dingo", "egret", "ferret", "gecko", "heron", "ibis", "jackal", "koala",
    "lemur", "marten", "newt", "otter", "panda", "quail", "raven", "stoat", "tapir", "wombat",
];

/// A Docker-style `adjective_animal` name derived from the ID; the caller
/// appends a digit on a clash.
pub fn generated_name(id: &str) -> String {
    let n = u64::from_str_radix(id.get(..12).unwrap_or("0"), 16).unwrap_or(0) as usize;
    format!(
        "{}_{}",
        LEFT[n % LEFT.len()],
        RIGHT[(n / LEFT.len()) % RIGHT.len()]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_digits() -> std::io::Result<()> {
        let id = new_id()?;
        assert_eq!(id.len(), 64);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(id, new_id()?);
        Ok(())
    }

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "/web", "a1", "my_app.v2-x"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "a", "_x", "-x", "a b", "a/b", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name(&generated_name(&"ab".repeat(32))));
    }
}
