//! Word expansion as ENV, ARG, COPY and friends run it: the input is
//! `word NUL key=value NUL key=value ...`; expansion must end in Ok or an
//! ExpandError, never a panic.
#![no_main]

use hutch_builder::shell::{EnvList, Lexer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let word = parts.next().unwrap_or_default();
    let env = EnvList::from_key_values(parts);
    for escape in ['\\', '`'] {
        let mut lexer = Lexer::new(escape);
        let _ = lexer.process_word(word, &env);
        let _ = lexer.process_words(word, &env);
        lexer.raw_quotes = true;
        lexer.raw_escapes = true;
        let _ = lexer.process_word(word, &env);
    }
});
