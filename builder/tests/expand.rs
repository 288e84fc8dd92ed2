//! Word expansion against a table of cases (BuildKit's `shell/lex.go` behaviour):
//! each row is `input | expected` (or `error`), evaluated with a fixed environment.

use hutch_builder::shell::{EnvList, Lexer};

fn env() -> EnvList {
    let mut e = EnvList::new();
    for (k, v) in [
        ("HOME", "/root"),
        ("EMPTY", ""),
        ("SPACED", "a  b c"),
        ("PATHV", "/usr/local/lib/libfoo.so.1.2"),
        ("VER", "v1.22.3"),
        ("ÜBER", "unicode"),
        ("X", "x"),
    ] {
        e.set(k, v);
    }
    e
}

const WORD_CASES: &str = r#"
plain                        | plain
$HOME                        | /root
${HOME}                      | /root
pre${HOME}post               | pre/rootpost
$HOMEx                       |
${HOME}x                     | /rootx
$UNSET                       |
a$UNSET-b                    | a-b
'$HOME'                      | $HOME
"$HOME"                      | /root
"'$HOME'"                    | '/root'
'"$HOME"'                    | "$HOME"
\$HOME                       | $HOME
"\$HOME"                     | $HOME
\\$HOME                      | \/root
"\\$HOME"                    | \/root
"a\tb"                       | a\tb
a\tb                         | atb
'a\'                         | a\
"unterminated                | error
'unterminated                | error
trailing\                    | trailing
$                            | $
$.                           | $.
a$                           | a$
${HOME:-def}                 | /root
${UNSET:-def}                | def
${EMPTY:-def}                | def
${EMPTY-def}                 |
${UNSET-def}                 | def
${UNSET:-$HOME}              | /root
${UNSET:-${X:-y}}            | x
${UNSET:-"quoted word"}      | quoted word
${HOME:+alt}                 | alt
${UNSET:+alt}                |
${EMPTY:+alt}                |
${EMPTY+alt}                 | alt
${HOME:?}                    | /root
${EMPTY?}                    |
${EMPTY:?}                   | error
${UNSET?}                    | error
${UNSET:?custom}             | error
${PATHV#*/}                  | usr/local/lib/libfoo.so.1.2
${PATHV##*/}                 | libfoo.so.1.2
${PATHV%.*}                  | /usr/local/lib/libfoo.so.1
${PATHV%%.*}                 | /usr/local/lib/libfoo
${PATHV%/*}                  | /usr/local/lib
${VER#v}                     | 1.22.3
${VER#x}                     | v1.22.3
${VER/./-}                   | v1-22.3
${VER//./-}                  | v1-22-3
${VER//[0-9]/N}              | v1.22.3
${VER/#v/V}                  | v1.22.3
${VER/2*/X}                  | v1.X
${VER//?/_}                  | _______
${VER/\//x}                  | v1.22.3
${UNSET//a/b}                |
${VER:#v}                    | error
${VER:%v}                    | error
${}                          | error
${:}                         | error
${HOME                       | error
${HOME:-x                    | error
${{HOME}                     | error
${HOME}}                     | /root}
${.}                         | error
${X:=y}                      | error
$1$2x                        | x
${1:-one}                    | one
$@$*$#$?$-$$$!$0             |
${ÜBER}                      | unicode
$ÜBER                        | unicode
a"b"'c'd                     | abcd
""                           |
"${SPACED}"                  | a  b c
${SPACED}                    | a  b c
<<EOF                        | <<EOF
a<b                          | a<b
"
"#;

const WORDS_CASES: &str = r#"
hello                        | hello
hello there                  | hello,there
  lead  trail                | lead,trail
$SPACED                      | a,b,c
"$SPACED"                    | a  b c
x$SPACED                     | xa,b,c
$SPACED"y"                   | a,b,cy
'a b' c                      | a b,c
a\ b c                       | a b,c
"" x                         | x
<<EOF cat                    | <<EOF,cat
<< EOF                       | << EOF
"#;

fn rows(table: &str) -> impl Iterator<Item = (&str, &str)> {
    table
        .lines()
        .filter(|l| l.contains(" | ") || l.ends_with(" |"))
        .map(|l| {
            let (input, expected) = l.rsplit_once('|').expect("row has a separator");
            (input.trim_end(), expected.trim())
        })
}

#[test]
fn process_word_table() {
    let lex = Lexer::new('\\');
    let env = env();
    let mut failures = Vec::new();
    let mut count = 0;
    for (input, expected) in rows(WORD_CASES) {
        count += 1;
        let got = lex.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(e), exp) => e.value == exp,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(count > 70, "table has {count} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn process_words_table() {
    let lex = Lexer::new('\\');
    let env = env();
    for (input, expected) in rows(WORDS_CASES) {
        let got = lex.process_words(input, &env).expect("valid words");
        let want: Vec<&str> = if expected.is_empty() {
            vec![]
        } else {
            expected.split(',').collect()
        };
        assert_eq!(got, want, "input {input:?}");
    }
}

#[test]
fn backtick_escape_and_variable_tracking() {
    let lex = Lexer::new('`');
    let env = env();
    assert_eq!(
        lex.process_word("C:\\dir\\`$HOME", &env).expect("ok").value,
        "C:\\dir\\$HOME"
    );
    assert_eq!(
        lex.process_word("\"a`\"b\"", &env).expect("ok").value,
        "a\"b"
    );
    let e = Lexer::new('\\')
        .process_word("$HOME ${UNSET:-x} $X", &env)
        .expect("ok");
    assert_eq!(e.matched.iter().collect::<Vec<_>>(), ["HOME", "X"]);
    assert_eq!(e.unmatched.iter().collect::<Vec<_>>(), ["UNSET"]);
}

#[test]
fn skip_unset_keeps_references() {
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let env = env();
    assert_eq!(
        lex.process_word("$UNSET ${UNSET} ${UNSET:-d} $X", &env)
            .expect("ok")
            .value,
        "$UNSET ${UNSET} ${UNSET:-d} x"
    );
}

#[test]
fn error_messages_name_the_word() {
    let err = Lexer::new('\\')
        .process_word("${HOME", &env())
        .expect_err("unterminated");
    assert_eq!(
        err.to_string(),
        "failed to process \"${HOME\": syntax error: missing '}'"
    );
    let err = Lexer::new('\\')
        .process_word("${U:?is required}", &env())
        .expect_err("required");
    assert_eq!(
        err.to_string(),
        "failed to process \"${U:?is required}\": U: is required"
    );
}
