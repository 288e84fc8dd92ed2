//! The container engine in podsim, through `hutch __engine` (the engine
//! API a daemon calls): supervision, logs, attach, exec, stop, restart
//! policies, healthchecks, `--init`, and re-adoption after the engine
//! process is killed. In the default pod (masked /proc, degraded proc mode)
//! and the `procMount: Unmasked` pod.

use anyhow::ensure;
use hutch_tests::engine::EngineRig;
use hutch_tests::podsim::PodSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Default,
    Unmasked,
}

impl Variant {
    fn rig(self) -> anyhow::Result<EngineRig> {
        EngineRig::start(&match self {
            Variant::Default => PodSpec::new(),
            Variant::Unmasked => PodSpec::new().proc_unmasked(),
        })
    }
}

macro_rules! in_variants {
    ($check:ident) => {
        mod $check {
            #[test]
            fn default_pod() -> anyhow::Result<()> {
                super::$check(super::Variant::Default)
            }
            #[test]
            fn unmasked_pod() -> anyhow::Result<()> {
                super::$check(super::Variant::Unmasked)
            }
        }
    };
}

/// stdout and stderr land in the json-file log, separated, and `run`
/// returns the container's exit code.
fn logs_separate_streams(v: Variant) -> anyhow::Result<()> {
    let rig = v.rig()?;
    let done = rig.engine(&[
        "run",
        "--name",
        "logger",
        hutch_tests::engine::IMAGE,
        "sh",
        "-c",
        "echo out1; echo err1 >&2; printf partial; exit 3",
    ])?;
    ensure!(done.code == 3, "{done:?}");
    ensure!(done.stdout == "out1\npartial", "{done:?}");
    ensure!(done.stderr.contains("err1\n"), "{done:?}");
    let raw = rig.engine(&["logs", "--raw", "logger"])?.ok()?;
    let lines: Vec<&str> = raw.lines().collect();
    ensure!(lines.len() == 3, "{raw}");
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("stderr\t") && l.ends_with("\"err1\\n\"")),
        "{raw}"
    );
    ensure!(
        lines
            .iter()
            .any(|l| l.starts_with("stdout\t") && l.ends_with("\"partial\"")),
        "{raw}"
    );
    rig.engine(&["rm", "logger"])?.ok()?;
    rig.pod.stop()
}
in_variants!(logs_separate_streams);
