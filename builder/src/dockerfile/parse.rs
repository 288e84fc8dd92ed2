//! The driver: logical lines → instructions (reading heredoc bodies where a line
//! opens them) → stages, with BuildKit's warnings collected on the way.

use crate::error::{ParseError, Position, Span, Warning};

use super::heredoc::{self, Heredoc};
use super::instruction::{Command, Instruction, Onbuild};
use super::lexer::{LexError, Lexer, LogicalLine};
use super::lint;
use super::node::{At, Node};
use super::typed;
use super::{Dockerfile, Stage};

/// Parses a Dockerfile. `file_name` is used in error messages.
pub fn parse(file_name: &str, bytes: &[u8]) -> Result<Dockerfile, ParseError> {
    let text = String::from_utf8_lossy(bytes);
    let mut lexer = Lexer::new(&text);
    let lex_err = |e: LexError| ParseError::new(file_name, e.at, e.message);
    let mut instructions = Vec::new();
    let mut warnings = Vec::new();
    while let Some(line) = lexer.next_line().map_err(lex_err)? {
        if line.had_empty_continuation {
            warnings.push(Warning {
                rule: "NoEmptyContinuation",
                at: line.start(),
                message: "Empty continuation line".to_string(),
            });
        }
        let escape = lexer.escape();
        let instruction = instruction(&line, &mut lexer, escape)
            .map_err(|at| ParseError::new(file_name, line.position(at.offset), at.message))?;
        instructions.push(instruction);
    }
    let directives = lexer.directives().clone();
    let escape = lexer.escape();
    let end = Position {
        line: lexer.line_number().max(1),
        column: 1,
    };
    if instructions.is_empty() {
        return Err(ParseError::new(file_name, end, "file with no instructions"));
    }
    let (meta_args, stages) = group_stages(file_name, instructions)?;
    if stages.is_empty() {
        return Err(ParseError::new(
            file_name,
            end,
            "dockerfile contains no stages to build",
        ));
    }
    let mut df = Dockerfile {
        file: file_name.to_string(),
        directives,
        escape,
        meta_args,
        stages,
        warnings,
    };
    lint::check(&mut df);
    Ok(df)
}

/// Parses one logical line into an instruction, reading its heredoc bodies.
fn instruction(line: &LogicalLine, lexer: &mut Lexer<'_>, escape: char) -> Result<Instruction, At> {
    let node = Node::parse(&line.text, 0, escape)?;
    let heredocs = read_heredocs(&node, line, lexer)?;
    let end_line = lexer.line_number().max(line.end_line);
    let span = Span {
        start: line.position(node.keyword_offset),
        end_line,
    };
    let original = line.text.trim().to_string();
    from_node(&node, heredocs, escape, span, original)
}

fn from_node(
    node: &Node,
    heredocs: Vec<Heredoc>,
    escape: char,
    span: Span,
    original: String,
) -> Result<Instruction, At> {
    let command = if node.lower() == "onbuild" {
        onbuild(node, heredocs, escape, span, &original)?
    } else {
        typed::build(node, heredocs, escape)?
    };
    Ok(Instruction {
        keyword: node.keyword.clone(),
        span,
        original,
        command,
    })
}

fn onbuild(
    node: &Node,
    heredocs: Vec<Heredoc>,
    escape: char,
    span: Span,
    original: &str,
) -> Result<Command, At> {
    super::flags::Flags::parse(&node.flags, &[]).map_err(|e| At::new(e.offset, e.message))?;
    let Some(child) = &node.child else {
        return Err(At::new(
            node.keyword_offset,
            "ONBUILD requires at least one argument",
        ));
    };
    let trigger = child.keyword.to_ascii_uppercase();
    match trigger.as_str() {
        "ONBUILD" => {
            return Err(At::new(
                child.keyword_offset,
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ))
        }
        "MAINTAINER" | "FROM" => {
            return Err(At::new(
                child.keyword_offset,
                format!("{trigger} isn't allowed as an ONBUILD trigger"),
            ))
        }
        _ => {}
    }
    // The stored expression is the line without the ONBUILD keyword, with heredoc
    // bodies and terminators appended so the child build can parse it again.
    let mut expression = strip_onbuild(original).to_string();
    for doc in &heredocs {
        expression.push('\n');
        expression.push_str(&doc.body);
        expression.push_str(&doc.name);
    }
    let trigger_span = Span {
        start: span.start,
        end_line: span.end_line,
    };
    let trigger = from_node(
        child,
        heredocs,
        escape,
        trigger_span,
        strip_onbuild(original).to_string(),
    )?;
    Ok(Command::Onbuild(Onbuild {
        expression,
        trigger: Box::new(trigger),
    }))
}

fn strip_onbuild(original: &str) -> &str {
    let t = original.trim_start();
    t.get(7..)
        .filter(|_| t.len() >= 7 && t[..7].eq_ignore_ascii_case("onbuild"))
        .map_or(t, str::trim_start)
}

/// Heredocs are read for RUN, COPY and ADD (also as ONBUILD triggers) in shell form.
fn read_heredocs(
    node: &Node,
    line: &LogicalLine,
    lexer: &mut Lexer<'_>,
) -> Result<Vec<Heredoc>, At> {
    let target = node.child.as_deref().unwrap_or(node);
    let can = matches!(target.lower().as_str(), "run" | "copy" | "add") && !target.json;
    if !can || !line.text.contains("<<") {
        return Ok(Vec::new());
    }
    let mut docs = Vec::new();
    for mut marker in heredoc::markers_in_line(&line.text) {
        match lexer.heredoc_body(&marker.name, marker.chomp) {
            Some(body) => marker.body = body,
            None => return Err(At::new(node.keyword_offset, "unterminated heredoc")),
        }
        docs.push(marker);
    }
    Ok(docs)
}

/// Splits instructions into global ARGs and stages.
fn group_stages(
    file: &str,
    instructions: Vec<Instruction>,
) -> Result<(Vec<Instruction>, Vec<Stage>), ParseError> {
    let mut meta = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions {
        match (&ins.command, stages.last_mut()) {
            (Command::From(from), _) => stages.push(Stage {
                index: stages.len(),
                name: from.name.clone(),
                from: from.clone(),
                from_instruction: ins,
                instructions: Vec::new(),
            }),
            (Command::Arg(_), None) => meta.push(ins),
            (_, Some(stage)) => stage.instructions.push(ins),
            (_, None) => {
                return Err(ParseError::new(
                    file,
                    ins.span.start,
                    "no build stage in current context",
                ))
            }
        }
    }
    Ok((meta, stages))
}
