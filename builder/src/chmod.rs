//! `--chmod` values: octal (`755`, `0644`) or symbolic (`u=rwx,go=rx`, `+x`,
//! `a-w,u+X`), as BuildKit accepts them for COPY and ADD.

use std::fmt;

/// A parsed `--chmod`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated clause of a symbolic mode: who, then operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bits of `ugo` selected (`a` or nothing = all).
    pub who: u32,
    pub ops: Vec<(char, Perm)>,
}

/// What an operation sets: permission letters, or a copy of another class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Perm {
    Letters(String),
    Copy(char),
}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    pub fn parse(s: &str) -> Result<Chmod, String> {
        if !s.is_empty() && s.chars().all(|c| c.is_digit(8)) {
            let mode =
                u32::from_str_radix(s, 8).map_err(|e| format!("invalid chmod {s:?}: {e}"))?;
            if mode > 0o7777 {
                return Err(format!("invalid chmod {s:?}: out of range"));
            }
            return Ok(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            clauses.push(parse_clause(part).ok_or_else(|| format!("invalid chmod {s:?}"))?);
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode a file gets when its current permission bits are `mode`
    /// (`X` adds execute only to directories or files already executable).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(c) => c,
        };
        let mut mode = mode & 0o7777;
        for clause in clauses {
            for (op, perm) in &clause.ops {
                let bits = match perm {
                    Perm::Copy(from) => {
                        let src = match from {
                            'u' => (mode >> 6) & 7,
                            'g' => (mode >> 3) & 7,
                            _ => mode & 7,
                        };
                        (src << 6 | src << 3 | src) & clause.who & 0o777
                    }
                    Perm::Letters(letters) => {
                        let mut b = 0;
                        for l in letters.chars() {
                            b |= match l {
                                'r' => 0o444,
                                'w' => 0o222,
                                'x' => 0o111,
                                'X' if is_dir || mode & 0o111 != 0 => 0o111,
                                's' => 0o6000,
                                't' => 0o1000,
                                _ => 0,
                            };
                        }
                        b & clause.who
                    }
                };
                match op {
                    '+' => mode |= bits,
                    '-' => mode &= !bits,
                    _ => mode = (mode & !(clause.who & 0o777)) | bits,
                }
            }
        }
        mode
    }
}

fn parse_clause(s: &str) -> Option<Clause> {
    let mut chars = s.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        who |= match c {
            'u' => USER,
            'g' => GROUP,
            'o' => OTHER,
            'a' => USER | GROUP | OTHER,
            _ => break,
        };
        chars.next();
    }
    if who == 0 {
        who = USER | GROUP | OTHER;
    }
    let mut ops = Vec::new();
    while let Some(op) = chars.next() {
        if !matches!(op, '+' | '-' | '=') {
            return None;
        }
        let perm = match chars.peek() {
            Some(&c @ ('u' | 'g' | 'o')) => {
                chars.next();
                Perm::Copy(c)
            }
            _ => {
                let mut letters = String::new();
                while let Some(&c) = chars.peek().filter(|c| "rwxXst".contains(**c)) {
                    letters.push(c);
                    chars.next();
                }
                Perm::Letters(letters)
            }
        };
        ops.push((op, perm));
    }
    (!ops.is_empty()).then_some(Clause { who, ops })
}

impl fmt::Display for Chmod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Chmod::Octal(m) => write!(f, "{m:04o}"),
            Chmod::Symbolic(clauses) => write!(f, "symbolic({} clauses)", clauses.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(s: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(s).expect("valid chmod").apply(mode, dir)
    }

    #[test]
    fn octal_and_symbolic() {
        assert_eq!(apply("755", 0o600, false), 0o755);
        assert_eq!(apply("0644", 0o777, false), 0o644);
        assert_eq!(apply("u=rwx,go=rx", 0o600, false), 0o755);
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("a-w", 0o666, false), 0o444);
        assert_eq!(apply("go=u", 0o700, false), 0o777);
        assert_eq!(apply("a+X", 0o644, false), 0o644);
        assert_eq!(apply("a+X", 0o644, true), 0o755);
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
    }

    #[test]
    fn invalid_modes() {
        for bad in ["", "8", "q+x", "u", "u+x,", "77777"] {
            assert!(Chmod::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
