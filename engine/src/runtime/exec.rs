//! The container's final execve, with Docker's lookup rules and exit codes:
//! 127 and "executable file not found in $PATH" for a missing command, 126
//! for a file that cannot be executed.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::execve;

use super::error::SetupError;
use super::spec::ProcessSpec;

/// Exit code of a command that cannot be found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of a command that cannot be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;

/// The program, argv and envp, ready for execve.
#[derive(Debug)]
pub struct Command {
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
}

/// Finds the program as Go's exec.LookPath does (which is what Docker's
/// messages come from): a name with a `/` is taken as is, otherwise the
/// first regular file with an execute bit in the container's PATH wins.
/// Runs inside the container, after the switch into its rootfs.
pub fn resolve(process: &ProcessSpec) -> Result<Command, SetupError> {
    let name = process
        .args
        .first()
        .ok_or_else(|| SetupError::Invalid("no command specified".into()))?;
    let program = if name.contains('/') {
        check_explicit(name)?
    } else {
        search_path(name, process.path_var()).ok_or_else(|| SetupError::Exec {
            code: EXIT_NOT_FOUND,
            message: format!("exec: \"{name}\": executable file not found in $PATH"),
        })?
    };
    Ok(Command {
        program: cstring(program.as_os_str().as_bytes())?,
        argv: process
            .args
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<Result<_, _>>()?,
        envp: process
            .env
            .iter()
            .map(|e| cstring(e.as_bytes()))
            .collect::<Result<_, _>>()?,
    })
}

/// Replaces the process image; only returns with the error Docker reports.
pub fn exec(cmd: &Command) -> SetupError {
    let err = match execve(&cmd.program, &cmd.argv, &cmd.envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    exec_error(&cmd.program.to_string_lossy(), err)
}

fn check_explicit(name: &str) -> Result<PathBuf, SetupError> {
    let md = std::fs::metadata(name).map_err(|e| SetupError::Exec {
        code: EXIT_NOT_FOUND,
        message: format!(
            "exec: \"{name}\": stat {name}: {}",
            strip_os_error(&e.to_string())
        ),
    })?;
    if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
        return Err(SetupError::Exec {
            code: EXIT_CANNOT_EXEC,
            message: format!("exec: \"{name}\": permission denied"),
        });
    }
    Ok(PathBuf::from(name))
}

fn search_path(name: &str, path_var: &str) -> Option<PathBuf> {
    path_var.split(':').find_map(|dir| {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        let md = std::fs::metadata(&candidate).ok()?;
        (md.is_file() && md.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

fn exec_error(program: &str, err: Errno) -> SetupError {
    let code = match err {
        Errno::ENOENT => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXEC,
    };
    SetupError::Exec {
        code,
        message: format!("exec: \"{program}\": {}", err.desc().to_lowercase()),
    }
}

/// "No such file or directory (os error 2)" → "no such file or directory",
/// the way Go prints it.
fn strip_os_error(text: &str) -> String {
    let base = text.split(" (os error").next().unwrap_or(text);
    base.to_lowercase()
}

fn cstring(bytes: &[u8]) -> Result<CString, SetupError> {
    CString::new(bytes)
        .map_err(|_| SetupError::Invalid("argument or environment contains a NUL byte".into()))
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn process(args: &[&str], path: &str) -> ProcessSpec {
        let mut p = ProcessSpec::new(args.iter().map(|s| s.to_string()).collect());
        p.env = vec![format!("PATH={path}")];
        p
    }

    fn code_and_message(r: Result<Command, SetupError>) -> (i32, String) {
        match r {
            Err(e) => (e.exit_code(), e.to_string()),
            Ok(c) => (0, c.program.to_string_lossy().into_owned()),
        }
    }

    #[test]
    fn lookup_follows_path_and_reports_dockers_errors() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let bin = dir.path().join("bin");
        fs::create_dir(&bin)?;
        let exe = bin.join("tool");
        fs::write(&exe, "#!/bin/sh\n")?;
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755))?;
        let data = bin.join("data");
        fs::write(&data, "x")?;
        let path = format!("/nonexistent:{}", bin.display());

        let (code, program) = code_and_message(resolve(&process(&["tool", "a"], &path)));
        assert_eq!((code, program), (0, exe.display().to_string()));

        assert_eq!(
            code_and_message(resolve(&process(&["nope"], &path))),
            (
                127,
                "exec: \"nope\": executable file not found in $PATH".into()
            )
        );
        // A non-executable file in PATH is skipped, as Go's LookPath does.
        assert_eq!(code_and_message(resolve(&process(&["data"], &path))).0, 127);

        let data_s = data.display().to_string();
        assert_eq!(
            code_and_message(resolve(&process(&[&data_s], &path))),
            (126, format!("exec: \"{data_s}\": permission denied"))
        );
        assert_eq!(
            code_and_message(resolve(&process(&["/no/such"], &path))),
            (
                127,
                "exec: \"/no/such\": stat /no/such: no such file or directory".into()
            )
        );
        let dir_s = bin.display().to_string();
        assert_eq!(code_and_message(resolve(&process(&[&dir_s], &path))).0, 126);
        Ok(())
    }

    #[test]
    fn exec_errors_map_to_docker_codes() {
        assert_eq!(exec_error("/x", Errno::ENOENT).exit_code(), 127);
        let e = exec_error("/x", Errno::EACCES);
        assert_eq!(e.exit_code(), 126);
        assert_eq!(e.to_string(), "exec: \"/x\": permission denied");
        assert_eq!(exec_error("/x", Errno::ENOEXEC).exit_code(), 126);
    }
}
