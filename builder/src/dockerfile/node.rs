//! The syntactic split of one instruction line: keyword, flags and arguments in the
//! shape each instruction takes (BuildKit's dispatch table in `parser/parser.go`).

use super::words::{self, Json, RawFlag};

/// A failure at a byte offset of the instruction text.
pub(crate) struct At {
    pub offset: usize,
    pub message: String,
}

impl At {
    pub fn new(offset: usize, message: impl Into<String>) -> Self {
        Self {
            offset,
            message: message.into(),
        }
    }
}

/// One instruction's pieces; offsets are bytes in the logical line's text.
pub(crate) struct Node {
    pub keyword: String,
    pub keyword_offset: usize,
    pub flags: Vec<RawFlag>,
    /// The argument text after the flags, trimmed.
    pub rest: String,
    pub rest_offset: usize,
    /// Arguments in the instruction's form (see `split_args`).
    pub args: Vec<String>,
    pub json: bool,
    /// ONBUILD's trigger.
    pub child: Option<Box<Node>>,
}

const KNOWN: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

impl Node {
    /// Splits `text` (which starts at byte `base` of the logical line).
    pub fn parse(text: &str, base: usize, escape: char) -> Result<Node, At> {
        let lead = text.len() - text.trim_start().len();
        let trimmed = text.trim();
        let keyword_offset = base + lead;
        let mut parts = words::split_spaces(trimmed, 2).into_iter();
        let keyword = parts.next().unwrap_or_default().to_string();
        let after = parts.next().unwrap_or("");
        let after_offset = keyword_offset + (trimmed.len() - after.len());
        let (mut flags, args_at) = words::extract_flags(after, escape);
        for f in &mut flags {
            f.offset += after_offset;
        }
        let args_text = &after[args_at..];
        let rest_lead = args_text.len() - args_text.trim_start().len();
        let rest = args_text.trim().to_string();
        let rest_offset = after_offset + args_at + rest_lead;
        let lower = keyword.to_ascii_lowercase();
        if !KNOWN.contains(&lower.as_str()) {
            return Err(At::new(
                keyword_offset,
                format!("unknown instruction: {keyword}"),
            ));
        }
        let mut node = Node {
            keyword,
            keyword_offset,
            flags,
            rest,
            rest_offset,
            args: Vec::new(),
            json: false,
            child: None,
        };
        match lower.as_str() {
            "add" | "copy" | "volume" => node.maybe_json_or_list()?,
            "cmd" | "entrypoint" | "run" | "shell" => node.maybe_json()?,
            "arg" => node.args = words::parse_words(&node.rest, escape),
            "expose" | "from" => node.args = node.whitespace_list(),
            "healthcheck" => node.health()?,
            "onbuild" => {
                if !node.rest.is_empty() {
                    let child = Node::parse(&node.rest.clone(), node.rest_offset, escape)?;
                    node.child = Some(Box::new(child));
                }
            }
            // env, label: name/value splitting needs the escape and is done by the
            // instruction builder; maintainer, stopsignal, user, workdir take the
            // whole rest as one string.
            _ => {
                if !node.rest.is_empty() {
                    node.args = vec![node.rest.clone()];
                }
            }
        }
        Ok(node)
    }

    pub fn lower(&self) -> String {
        self.keyword.to_ascii_lowercase()
    }

    fn whitespace_list(&self) -> Vec<String> {
        if self.rest.is_empty() {
            return Vec::new();
        }
        words::split_spaces(&self.rest, 0)
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn json(&mut self, text: &str) -> Result<bool, At> {
        match words::parse_json(text) {
            Json::Strings(v) => {
                self.args = v;
                self.json = true;
                Ok(true)
            }
            Json::NotStrings => Err(At::new(
                self.rest_offset,
                "when using JSON array syntax, arrays must be comprised of strings only",
            )),
            Json::Shell => Ok(false),
        }
    }

    fn maybe_json(&mut self) -> Result<(), At> {
        if self.rest.is_empty() {
            return Ok(());
        }
        if !self.json(&self.rest.clone())? {
            self.args = vec![self.rest.clone()];
        }
        Ok(())
    }

    fn maybe_json_or_list(&mut self) -> Result<(), At> {
        if !self.json(&self.rest.clone())? {
            self.args = self.whitespace_list();
        }
        Ok(())
    }

    /// `HEALTHCHECK TYPE [command]`: the type word, then a maybe-JSON command.
    fn health(&mut self) -> Result<(), At> {
        let rest = self.rest.clone();
        let Some(sep) = rest
            .find(char::is_whitespace)
            .or((!rest.is_empty()).then_some(rest.len()))
        else {
            return Ok(());
        };
        let typ = rest[..sep].to_string();
        let cmd = rest[sep..].trim_start();
        self.args.push(typ);
        if cmd.is_empty() {
            return Ok(());
        }
        match words::parse_json(cmd) {
            Json::Strings(v) => {
                self.args.extend(v);
                self.json = true;
            }
            Json::NotStrings => {
                return Err(At::new(
                    self.rest_offset,
                    "when using JSON array syntax, arrays must be comprised of strings only",
                ))
            }
            Json::Shell => self.args.push(cmd.to_string()),
        }
        Ok(())
    }
}
