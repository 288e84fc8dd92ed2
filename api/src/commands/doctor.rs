//! `hutch doctor [--json]`: the environment preflight. The probes live in
//! `hutch_engine::doctor`; this prints their report. Exit status 1 when a
//! hard requirement is missing.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Context;
use hutch_engine::doctor::{self, Report, Status};

use crate::cli::{DoctorArgs, GlobalOptions};
use crate::defaults;

pub fn run(global: &GlobalOptions, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let data_root = global.data_root.clone().unwrap_or_else(defaults::data_root);
    let report = doctor::run(&data_root);
    if args.json {
        let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
        println!("{json}");
    } else {
        print!("{}", human(&report));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report for people: one aligned line per check, the chosen paths, then
/// what each non-ok item blocks and how to fix it.
fn human(report: &Report) -> String {
    let mut out = String::new();
    let env = &report.environment;
    let _ = writeln!(
        out,
        "hutch doctor: data root {} ({}), kernel {}\n",
        report.data_root.display(),
        env.data_root_fs,
        env.kernel
    );
    let width = report
        .checks
        .iter()
        .map(|c| c.title.len())
        .max()
        .unwrap_or(0);
    for check in &report.checks {
        let hard = if check.fails_hard() { "!" } else { " " };
        let _ = writeln!(
            out,
            "{:<8}{hard} {:<width$}  {}",
            check.status.label(),
            check.title,
            check.detail
        );
    }

    let c = &report.choices;
    let _ = writeln!(out, "\nPaths hutch takes here:");
    let lines = [
        (
            "nested user namespaces",
            format!("{}", c.nested_userns.chosen),
            &c.nested_userns.reason,
        ),
        (
            "private ID storage",
            json_name(&c.private_id_storage.chosen),
            &c.private_id_storage.reason,
        ),
        (
            "network uplink",
            json_name(&c.uplink.chosen),
            &c.uplink.reason,
        ),
        (
            "user-mode networking",
            format!("{}", c.user_mode_network.chosen),
            &c.user_mode_network.reason,
        ),
        ("container /proc", json_name(&c.proc.chosen), &c.proc.reason),
        ("container /sys", json_name(&c.sys.chosen), &c.sys.reason),
        (
            "root switch",
            json_name(&c.root_switch.chosen),
            &c.root_switch.reason,
        ),
        (
            "resource limits",
            json_name(&c.resource_limits.chosen),
            &c.resource_limits.reason,
        ),
    ];
    for (what, chosen, reason) in lines {
        let _ = writeln!(out, "  {what:<24}{chosen} ({reason})");
    }

    let problems: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nWhat is not OK, and how to fix it:");
    }
    for check in problems {
        let hard = if check.hard {
            " (hard requirement)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "\n{} {}{hard} [{}]",
            check.status.label(),
            check.title,
            check.id
        );
        if let Some(blocks) = &check.blocks {
            let _ = writeln!(out, "  blocks: {blocks}");
        }
        if let Some(fix) = &check.fix {
            let _ = writeln!(out, "  fix:");
            for line in fix.lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }

    let failed: Vec<_> = report.hard_failures().map(|c| c.id.as_str()).collect();
    if failed.is_empty() {
        let _ = writeln!(out, "\nhutch can run here.");
    } else {
        let _ = writeln!(
            out,
            "\nhutch cannot run here: hard requirements missing: {}",
            failed.join(", ")
        );
    }
    out
}

/// The name a choice has in the JSON report (kebab-case).
fn json_name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
