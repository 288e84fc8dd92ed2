//! A compact, stable text form of parsed Dockerfiles: one line per instruction.
//! The corpus tests compare against it, and it reads well in a debugger.

use std::fmt::{self, Display, Formatter, Write};

use super::instruction::*;
use super::Dockerfile;

impl Display for Dockerfile {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let d = &self.directives;
        if let Some(s) = &d.syntax {
            writeln!(f, "directive syntax={s}")?;
        }
        if let Some(e) = d.escape {
            writeln!(f, "directive escape={e}")?;
        }
        if let Some(c) = &d.check {
            writeln!(f, "directive check skip={:?} error={}", c.skip, c.error)?;
        }
        for ins in &self.meta_args {
            writeln!(f, "{ins}")?;
        }
        for stage in &self.stages {
            writeln!(f, "stage {} {}", stage.index, stage.display_name())?;
            writeln!(f, "  {}", stage.from_instruction)?;
            for ins in &stage.instructions {
                writeln!(f, "  {ins}")?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning {w}")?;
        }
        Ok(())
    }
}

impl Display for Instruction {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.span.start)?;
        if self.span.end_line != self.span.start.line {
            write!(f, "-{}", self.span.end_line)?;
        }
        write!(f, " {}", self.command)
    }
}

impl Display for Command {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut s = String::from(self.name());
        match self {
            Command::From(from) => {
                if let Some(p) = &from.platform {
                    write!(s, " platform={p:?}")?;
                }
                write!(s, " {:?}", from.image)?;
                if let Some(n) = &from.name {
                    write!(s, " as={n:?}")?;
                }
            }
            Command::Run(run) => {
                for m in &run.mounts {
                    match m.resolve(&mut |v| Ok(v.to_string())) {
                        Ok(resolved) if !m.raw.contains('$') => write!(s, " mount=[{resolved}]")?,
                        _ => write!(s, " mount={:?}", m.raw)?,
                    }
                }
                if run.network != Network::Default {
                    write!(
                        s,
                        " network={}",
                        if run.network == Network::None {
                            "none"
                        } else {
                            "host"
                        }
                    )?;
                }
                if run.security != Security::Sandbox {
                    s.push_str(" security=insecure");
                }
                command_line(&mut s, &run.cmd)?;
            }
            Command::Cmd(c) | Command::Entrypoint(c) => command_line(&mut s, c)?,
            Command::Label(kvs) | Command::Env(kvs) => {
                for kv in kvs {
                    write!(s, " {:?}={:?}", kv.key, kv.value)?;
                    if kv.legacy {
                        s.push_str(" (legacy)");
                    }
                }
            }
            Command::Expose(v) | Command::Volume(v) | Command::Shell(v) => write!(s, " {v:?}")?,
            Command::User(v)
            | Command::Workdir(v)
            | Command::StopSignal(v)
            | Command::Maintainer(v) => write!(s, " {v:?}")?,
            Command::Arg(decls) => {
                for d in decls {
                    write!(s, " {:?}", d.key)?;
                    if let Some(v) = &d.default {
                        write!(s, "={v:?}")?;
                    }
                }
            }
            Command::Copy(c) => {
                opt(&mut s, "from", &c.from)?;
                opt(&mut s, "chown", &c.chown)?;
                opt(&mut s, "chmod", &c.chmod)?;
                flag(&mut s, "link", c.link);
                flag(&mut s, "parents", c.parents);
                for e in &c.excludes {
                    write!(s, " exclude={e:?}")?;
                }
                sources(&mut s, &c.sources)?;
            }
            Command::Add(a) => {
                opt(&mut s, "chown", &a.chown)?;
                opt(&mut s, "chmod", &a.chmod)?;
                flag(&mut s, "link", a.link);
                if let Some(k) = a.keep_git_dir {
                    write!(s, " keep-git-dir={k}")?;
                }
                opt(&mut s, "checksum", &a.checksum)?;
                if let Some(u) = a.unpack {
                    write!(s, " unpack={u}")?;
                }
                for e in &a.excludes {
                    write!(s, " exclude={e:?}")?;
                }
                sources(&mut s, &a.sources)?;
            }
            Command::Onbuild(o) => write!(s, " {:?} => {}", o.expression, o.trigger.command)?,
            Command::Healthcheck(Healthcheck::None) => s.push_str(" NONE"),
            Command::Healthcheck(Healthcheck::Cmd(h)) => {
                for (name, d) in [
                    ("interval", h.interval),
                    ("timeout", h.timeout),
                    ("start-period", h.start_period),
                    ("start-interval", h.start_interval),
                ] {
                    if let Some(d) = d {
                        write!(s, " {name}={d:?}")?;
                    }
                }
                if let Some(r) = h.retries {
                    write!(s, " retries={r}")?;
                }
                write!(s, " {:?}", h.test)?;
            }
        }
        f.write_str(&s)
    }
}

fn opt(s: &mut String, name: &str, v: &Option<String>) -> fmt::Result {
    match v {
        Some(v) => write!(s, " {name}={v:?}"),
        None => Ok(()),
    }
}

fn flag(s: &mut String, name: &str, on: bool) {
    if on {
        s.push(' ');
        s.push_str(name);
    }
}

fn command_line(s: &mut String, c: &CommandLine) -> fmt::Result {
    if c.json {
        write!(s, " exec {:?}", c.args)?;
    } else {
        write!(s, " shell {:?}", c.args)?;
    }
    heredocs(s, &c.heredocs)
}

fn sources(s: &mut String, src: &Sources) -> fmt::Result {
    write!(s, " src={:?}", src.paths)?;
    heredocs(s, &src.inline)?;
    write!(s, " dest={:?}", src.dest)
}

fn heredocs(s: &mut String, docs: &[Heredoc]) -> fmt::Result {
    for h in docs {
        write!(s, " <<{}", h.name)?;
        if h.fd != 0 {
            write!(s, " fd={}", h.fd)?;
        }
        if !h.expand {
            s.push_str(" noexpand");
        }
        if h.chomp {
            s.push_str(" chomp");
        }
        write!(s, " {:?}", h.body)?;
    }
    Ok(())
}
