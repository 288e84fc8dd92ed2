//! The real docker CLI against `hutch daemon` inside a simulated pod:
//! version, info, and the image commands end to end, with the events they
//! cause.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn docker_cli_version_and_info() -> Result<()> {
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;

    let version = json(&daemon.docker_ok(&["version", "--format", "{{json .}}"])?)?;
    let server = &version["Server"];
    ensure!(server["Platform"]["Name"] == "hutch", "{version}");
    // The CLI did not have to downgrade: it speaks 1.50 and so do we.
    ensure!(version["Client"]["ApiVersion"] == "1.50", "{version}");
    ensure!(server["ApiVersion"] == "1.50", "{version}");
    ensure!(server["MinAPIVersion"] == "1.24", "{version}");
    let details = &server["Components"][0]["Details"];
    for key in ["GitCommit", "GoVersion", "KernelVersion", "Os", "Arch"] {
        ensure!(
            details[key].as_str().is_some_and(|v| !v.is_empty()),
            "Details.{key} missing: {version}"
        );
    }
    let text = daemon.docker_ok(&["version"])?;
    ensure!(text.contains("Server: hutch"), "{text}");
    ensure!(text.contains("Experimental:     false"), "{text}");

    let info = json(&daemon.docker_ok(&["info", "--format", "{{json .}}"])?)?;
    ensure!(info["Driver"] == "overlay", "{info}");
    ensure!(info["DockerRootDir"] == "/var/lib/hutch", "{info}");
    ensure!(info["OSType"] == "linux", "{info}");
    ensure!(info["Images"] == 0 && info["Containers"] == 0, "{info}");
    ensure!(info["NCPU"].as_i64().is_some_and(|n| n > 0), "{info}");
    ensure!(info["MemTotal"].as_i64().is_some_and(|n| n > 0), "{info}");
    ensure!(info["CgroupVersion"] == "2", "{info}");
    ensure!(info["Swarm"]["LocalNodeState"] == "inactive", "{info}");
    let security = info["SecurityOptions"].to_string();
    ensure!(
        security.contains("name=userns") && security.contains("name=rootless"),
        "{info}"
    );
    // The doctor ran in the pod: the default pod has no CAP_SYS_ADMIN, and
    // /info says so among its warnings.
    ensure!(
        info["Warnings"].to_string().contains("CAP_SYS_ADMIN"),
        "{info}"
    );
    // The doctor's choices, in hutch's own field (the CLI drops unknown
    // fields, so read it raw).
    let raw = json(&ok(
        &daemon.curl(&["-sf", "http://d/v1.50/info"]).output()?,
        "curl /info",
    )?)?;
    let choices = &raw["Hutch"]["Doctor"]["Choices"];
    ensure!(
        choices["private_id_storage"]["chosen"].is_string(),
        "no doctor choices in /info: {raw}"
    );
    let storage = raw["DriverStatus"].to_string();
    ensure!(storage.contains("Private ID storage"), "{raw}");

    ensure!(
        daemon.stop()?.success(),
        "the daemon failed to stop cleanly"
    );
    pod.stop()
}

#[test]
fn docker_cli_image_commands() -> Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let since = format!("{:.3}", unix_now() - 1.0);

    let archive = image.docker_archive.display().to_string();
    let loaded = daemon.docker_ok(&["load", "-i", &archive])?;
    ensure!(
        loaded.trim() == format!("Loaded image: {}", image.reference),
        "{loaded}"
    );
    let id = image.config_digest.clone();
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let images = daemon.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"])?;
    ensure!(
        images.trim() == format!("{} {short}", image.reference),
        "{images}"
    );

    let inspect = json(&daemon.docker_ok(&["image", "inspect", &image.reference])?)?;
    let first = &inspect[0];
    ensure!(first["Id"] == id.as_str(), "{inspect}");
    let diff_ids: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    ensure!(first["RootFS"]["Type"] == "layers", "{inspect}");
    ensure!(
        first["RootFS"]["Layers"] == serde_json::json!(diff_ids),
        "{inspect}"
    );
    ensure!(
        first["Os"] == "linux" && first["Architecture"] == "amd64",
        "{inspect}"
    );
    ensure!(first["Config"]["Cmd"].is_array(), "{inspect}");
    ensure!(first["GraphDriver"]["Name"] == "overlay", "{inspect}");

    // A name with a registry port and a path: routed as `{name:.*}`.
    let target = "localhost:5000/team/app:v1";
    daemon.docker_ok(&["tag", &image.reference, target])?;
    let inspect = json(&daemon.docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .RepoTags}}",
        target,
    ])?)?;
    ensure!(
        inspect == serde_json::json!([image.reference.as_str(), target]),
        "{inspect}"
    );

    let history = daemon.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}",
        target,
    ])?;
    let top = history.lines().next().unwrap_or_default();
    ensure!(top.starts_with(&format!("{id}|")), "{history}");

    let df = daemon.docker_ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Size}}",
    ])?;
    let images_line = df
        .lines()
        .find(|l| l.starts_with("Images "))
        .unwrap_or_default();
    ensure!(images_line.starts_with("Images 1 "), "{df}");
    ensure!(!images_line.ends_with(" 0B"), "{df}");

    // Deleting an image that two names share needs force, as in Docker.
    let refused = daemon.docker().args(["rmi", short]).output()?;
    ensure!(
        !refused.status.success(),
        "rmi by ID of a twice-named image succeeded"
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        stderr.contains("conflict: unable to delete") && stderr.contains("must be forced"),
        "{stderr}"
    );

    // save | load round trip: everything removed, then back with the same ID.
    let saved = daemon
        .pod()
        .exec("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{cli} save -o /tmp/rt.tar {reference} {target} && {cli} rmi -f {id}",
            cli = hutch_tests::daemon::DOCKER_CLI,
            reference = image.reference,
        ))
        .env("DOCKER_HOST", hutch_tests::daemon::DOCKER_HOST)
        .env("DOCKER_CONFIG", "/tmp/docker-config")
        .output()?;
    let after_rmi = ok(&saved, "save, rmi -f")?;
    ensure!(after_rmi.contains(&format!("Deleted: {id}")), "{after_rmi}");
    let left = daemon.docker_ok(&["images", "-q"])?;
    ensure!(left.trim().is_empty(), "images left after rmi -f: {left}");
    let piped = daemon
        .pod()
        .exec("/bin/sh")
        .arg("-c")
        .arg(format!(
            "{cli} load < /tmp/rt.tar && {cli} save {target} | {cli} load",
            cli = hutch_tests::daemon::DOCKER_CLI,
        ))
        .env("DOCKER_HOST", hutch_tests::daemon::DOCKER_HOST)
        .env("DOCKER_CONFIG", "/tmp/docker-config")
        .output()?;
    let piped = ok(&piped, "load and save | load")?;
    ensure!(
        piped.contains(&format!("Loaded image: {}", image.reference)),
        "{piped}"
    );
    ensure!(
        piped.contains(&format!("Loaded image: {target}")),
        "{piped}"
    );
    let ids = daemon.docker_ok(&["images", "--no-trunc", "-q"])?;
    ensure!(
        ids.lines().all(|l| l == id),
        "round trip changed the ID: {ids}"
    );

    let untagged = daemon.docker_ok(&["rmi", target])?;
    ensure!(
        untagged.trim() == format!("Untagged: {target}"),
        "{untagged}"
    );
    let missing = daemon.docker().args(["rmi", "nope:latest"]).output()?;
    ensure!(
        !missing.status.success(),
        "rmi of a missing image succeeded"
    );
    ensure!(
        String::from_utf8_lossy(&missing.stderr).contains("No such image: nope:latest"),
        "{missing:?}"
    );
    let deleted = daemon.docker_ok(&["rmi", &image.reference])?;
    ensure!(deleted.contains(&format!("Deleted: {id}")), "{deleted}");

    // Everything above, as events, replayed between two times.
    let until = format!("{:.3}", unix_now() + 0.5);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let events = daemon.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}",
    ])?;
    for wanted in [
        format!("image load {id}"),
        format!("image tag {id} {target}"),
        format!("image untag {id} {target}"),
        format!("image delete {id}"),
    ] {
        ensure!(
            events.contains(&wanted),
            "no {wanted:?} in events:\n{events}"
        );
    }
    let tags_only = daemon.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=tag",
        "--format",
        "{{.Action}}",
    ])?;
    ensure!(
        !tags_only.is_empty() && tags_only.lines().all(|l| l == "tag"),
        "{tags_only}"
    );

    drop(daemon);
    pod.stop()
}
