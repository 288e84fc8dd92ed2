//! Image references as clients send them (`docker pull X`, `FROM X`,
//! `?fromImage=X`): parse, normalise, print. Never a panic, and what prints
//! parses back to the same reference.
#![no_main]

use hutch_images::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsers: [fn(&str) -> _; 2] = [Reference::parse, Reference::parse_normalized];
    for parse in parsers {
        let Ok(reference) = parse(text) else { continue };
        let shown = reference.to_string();
        let again = parse(&shown)
            .unwrap_or_else(|e| panic!("{text:?} printed as {shown:?}, which does not parse: {e}"));
        assert_eq!(again.to_string(), shown, "{text:?} does not round-trip");
    }
});
