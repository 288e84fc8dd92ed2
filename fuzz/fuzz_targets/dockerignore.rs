//! A .dockerignore and paths matched against it: `patterns NUL path NUL
//! path ...`. Never a panic, whatever the patterns.
#![no_main]

use hutch_builder::DockerIgnore;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let Ok(ignore) = DockerIgnore::parse(parts.next().unwrap_or_default()) else {
        return;
    };
    let _ = ignore.has_exclusions();
    for path in parts.chain(["a", "a/b/c", ".", "Dockerfile"]) {
        let _ = ignore.is_ignored(path);
    }
});
