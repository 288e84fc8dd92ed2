//! Volumes and mounts through `hutch daemon` in a simulated pod, driven by
//! the real docker CLI and docker-py: named volumes (populated from the
//! image, kept across containers and daemon restarts, in-use refusal),
//! anonymous volumes (the image's VOLUME, `-v /path`, `--rm`, `rm -v`),
//! binds (rw, ro → EROFS, missing sources, the data root refused), tmpfs
//! mounts, symlinks at mount targets, and `docker volume` commands.
//!
//! Needs the `hutch` and `podsim` binaries built first (`tests/run` does it).

use anyhow::{ensure, Context, Result};
use hutch_tests::daemon::{client_script, ok, Daemon};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::testimages;

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

/// `docker ARGS` that must fail: its stderr.
fn docker_err(daemon: &Daemon, args: &[&str]) -> Result<String> {
    let out = daemon.docker().args(args).output()?;
    ensure!(
        !out.status.success(),
        "docker {} succeeded: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A shell command run as pod root.
fn pod_sh(pod: &Pod, script: &str) -> Result<String> {
    let out = pod.exec("/bin/sh").args(["-c", script]).output()?;
    ok(&out, script)
}

fn volume_names(daemon: &Daemon, filter: &[&str]) -> Result<Vec<String>> {
    let mut args = vec!["volume", "ls", "-q"];
    args.extend_from_slice(filter);
    Ok(daemon
        .docker_ok(&args)?
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn docker_cli_named_and_anonymous_volumes() -> Result<()> {
    let image = testimages::volumes()?;
    let pod = Pod::start(&PodSpec::new())?;
    let mut daemon = Daemon::start(&pod)?;
    let img = image.reference.as_str();
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;

    // create / inspect, idempotent create.
    let made = daemon.docker_ok(&["volume", "create", "--label", "team=a", "data"])?;
    ensure!(made.trim() == "data", "{made}");
    ensure!(daemon.docker_ok(&["volume", "create", "data"])?.trim() == "data");
    let inspect = json(&daemon.docker_ok(&["volume", "inspect", "data"])?)?;
    let v = &inspect[0];
    ensure!(v["Name"] == "data" && v["Driver"] == "local", "{inspect}");
    ensure!(v["Scope"] == "local", "{inspect}");
    ensure!(
        v["Mountpoint"] == "/var/lib/hutch/volumes/data/_data",
        "{inspect}"
    );
    ensure!(v["Labels"]["team"] == "a", "{inspect}");
    ensure!(
        v["CreatedAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{inspect}"
    );
    let raw = json(&ok(
        &daemon
            .curl(&["-sf", "http://d/v1.50/volumes/data"])
            .output()?,
        "curl volume inspect",
    )?)?;
    ensure!(
        raw["UsageData"].is_null() && raw["Options"].is_null(),
        "{raw}"
    );
    let missing = docker_err(&daemon, &["volume", "inspect", "nope"])?;
    ensure!(missing.contains("no such volume"), "{missing}");
    let bad = docker_err(&daemon, &["volume", "create", "-d", "nfs-plugin", "x1"])?;
    ensure!(bad.contains("plugin"), "{bad}");
    let bad = docker_err(&daemon, &["volume", "create", "-o", "type=nfs", "x2"])?;
    ensure!(bad.contains("type=tmpfs"), "{bad}");

    // First use populates the volume from the image: content, owners, modes.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "data:/data",
        img,
        "sh",
        "-c",
        "cat /data/hello; stat -c '%n %u:%g %a' /data /data/hello /data/sub/deep; \
         echo kept > /data/new",
    ])?;
    for want in [
        "from the image",
        "/data 1000:1000 750",
        "/data/hello 1000:1000 640",
        "/data/sub/deep 1001:1002 600",
    ] {
        ensure!(out.contains(want), "missing {want:?} in {out}");
    }
    // The copy was staged beside `_data` and nothing is left there.
    let staged = pod_sh(&pod, "ls -A /var/lib/hutch/volumes/data/stage")?;
    ensure!(staged.trim().is_empty(), "left in stage/: {staged}");
    // The next container sees what the first wrote.
    let out = daemon.docker_ok(&["run", "--rm", "-v", "data:/data", img, "cat", "/data/new"])?;
    ensure!(out.trim() == "kept", "{out}");
    // nocopy: an empty volume stays empty.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "fresh:/data:nocopy",
        img,
        "ls",
        "-A",
        "/data",
    ])?;
    ensure!(out.trim().is_empty(), "nocopy copied: {out}");
    // --mount type=volume with a read-only mount: EROFS.
    let err = docker_err(
        &daemon,
        &[
            "run",
            "--rm",
            "--mount",
            "type=volume,src=data,dst=/data,readonly",
            img,
            "touch",
            "/data/x",
        ],
    )?;
    ensure!(err.contains("Read-only file system"), "{err}");

    // In use: 409 with Docker's message, even forced; free once removed.
    // (Its -v at /data replaces the image's VOLUME there.)
    let holder = daemon.docker_ok(&[
        "create",
        "--name",
        "holder",
        "-v",
        "data:/data",
        img,
        "true",
    ])?;
    let holder = holder.trim();
    let out = daemon.docker().args(["volume", "rm", "data"]).output()?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains(&format!("remove data: volume is in use - [{holder}]")),
        "{err}"
    );
    let err = docker_err(&daemon, &["volume", "rm", "-f", "data"])?;
    ensure!(err.contains("volume is in use"), "{err}");
    let reply = daemon.request("DELETE", "/v1.50/volumes/data", &[])?;
    ensure!(reply.status == 409, "{reply}");
    let mounts = json(&daemon.docker_ok(&["inspect", "-f", "{{json .Mounts}}", "holder"])?)?;
    ensure!(
        mounts.as_array().map(Vec::len) == Some(1)
            && mounts[0]["Type"] == "volume"
            && mounts[0]["Name"] == "data"
            && mounts[0]["Destination"] == "/data"
            && mounts[0]["Driver"] == "local"
            && mounts[0]["Mode"] == "z"
            && mounts[0]["RW"] == true
            && mounts[0]["Propagation"] == "",
        "{mounts}"
    );
    let ps = daemon.docker_ok(&["ps", "-a", "--format", "{{.Mounts}}"])?;
    ensure!(ps.contains("data"), "{ps}");
    let by_volume = daemon.docker_ok(&["ps", "-aq", "--no-trunc", "--filter", "volume=data"])?;
    ensure!(by_volume.trim() == holder, "{by_volume}");
    let by_volume = daemon.docker_ok(&["ps", "-aq", "--filter", "volume=fresh"])?;
    ensure!(by_volume.trim().is_empty(), "{by_volume}");

    // The image's VOLUME gets an anonymous volume; rm -v removes it.
    let before = volume_names(&daemon, &[])?;
    daemon.docker_ok(&["create", "--name", "anon", img, "true"])?;
    let mounts = json(&daemon.docker_ok(&["inspect", "-f", "{{json .Mounts}}", "anon"])?)?;
    let anon = mounts[0]["Name"].as_str().unwrap_or_default().to_string();
    ensure!(
        anon.len() == 64 && mounts[0]["Destination"] == "/data" && mounts[0]["Mode"] == "",
        "{mounts}"
    );
    let config =
        json(&daemon.docker_ok(&["inspect", "-f", "{{json .Config.Volumes}}", "anon"])?)?;
    ensure!(config == serde_json::json!({"/data": {}}), "{config}");
    let labels =
        json(&daemon.docker_ok(&["volume", "inspect", "-f", "{{json .Labels}}", &anon])?)?;
    ensure!(
        labels == serde_json::json!({"com.docker.volume.anonymous": ""}),
        "{labels}"
    );
    // It was populated at the first start.
    let out = daemon.docker_ok(&["start", "-a", "anon"])?;
    ensure!(out.is_empty(), "{out}");
    let data = pod_sh(
        &pod,
        &format!("cat /var/lib/hutch/volumes/{anon}/_data/hello"),
    )?;
    ensure!(data.trim() == "from the image", "{data}");
    daemon.docker_ok(&["rm", "-v", "anon"])?;
    ensure!(
        volume_names(&daemon, &[])? == before,
        "rm -v left the volume"
    );
    // --rm with -v /path: nothing left behind.
    daemon.docker_ok(&["run", "--rm", "-v", "/scratch", img, "touch", "/scratch/x"])?;
    ensure!(volume_names(&daemon, &[])? == before, "--rm left a volume");

    // ls filters.
    let dangling = volume_names(&daemon, &["--filter", "dangling=true"])?;
    ensure!(dangling == vec!["fresh".to_string()], "{dangling:?}");
    let in_use = volume_names(&daemon, &["--filter", "dangling=false"])?;
    ensure!(in_use == vec!["data".to_string()], "{in_use:?}");
    let labelled = volume_names(&daemon, &["--filter", "label=team=a"])?;
    ensure!(labelled == vec!["data".to_string()], "{labelled:?}");
    let named = volume_names(&daemon, &["--filter", "name=fre"])?;
    ensure!(named == vec!["fresh".to_string()], "{named:?}");

    // prune: anonymous only by default, all unused with --all.
    daemon.docker_ok(&["create", "--name", "anon2", img, "true"])?;
    daemon.docker_ok(&["rm", "anon2"])?;
    let dangling_anon: Vec<String> = volume_names(&daemon, &["--filter", "dangling=true"])?
        .into_iter()
        .filter(|n| n.len() == 64)
        .collect();
    ensure!(dangling_anon.len() == 1, "{dangling_anon:?}");
    let pruned = daemon.docker_ok(&["volume", "prune", "-f"])?;
    ensure!(pruned.contains(&dangling_anon[0]), "{pruned}");
    ensure!(!pruned.contains("fresh"), "{pruned}");
    let df = daemon.docker_ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Active}}",
    ])?;
    ensure!(df.contains("Local Volumes 2 1"), "{df}");
    // A volume's size is its files' bytes, as Docker counts it (not the
    // directories holding them): an empty one is 0.
    let files = pod_sh(
        &pod,
        "find /var/lib/hutch/volumes/data/_data -type f -printf '%s\\n' \
         | awk '{s += $1} END {print s + 0}'",
    )?;
    let reply = daemon.request("GET", "/system/df", &[])?;
    let usage: serde_json::Value = serde_json::from_str(&reply.body)?;
    let size_of = |name: &str| {
        usage["Volumes"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["Name"] == name))
            .map(|v| v["UsageData"]["Size"].clone())
    };
    ensure!(
        size_of("fresh") == Some(serde_json::json!(0))
            && size_of("data") == Some(serde_json::json!(files.trim().parse::<u64>()?)),
        "files {files}, df {}",
        reply.body
    );

    // A daemon restart keeps volumes and their content.
    ensure!(
        daemon.stop()?.success(),
        "the daemon failed to stop cleanly"
    );
    daemon = Daemon::start(&pod)?;
    let names = volume_names(&daemon, &[])?;
    ensure!(
        names == vec!["data".to_string(), "fresh".to_string()],
        "{names:?}"
    );
    let out = daemon.docker_ok(&["run", "--rm", "-v", "data:/data", img, "cat", "/data/new"])?;
    ensure!(out.trim() == "kept", "{out}");
    let err = docker_err(&daemon, &["volume", "rm", "data"])?;
    ensure!(
        err.contains("volume is in use"),
        "in-use lost at restart: {err}"
    );
    daemon.docker_ok(&["rm", "holder"])?;
    let pruned = daemon.docker_ok(&["volume", "prune", "-af"])?;
    ensure!(
        pruned.contains("data") && pruned.contains("fresh"),
        "{pruned}"
    );
    ensure!(volume_names(&daemon, &[])?.is_empty());
    let left = pod_sh(&pod, "ls -A /var/lib/hutch/volumes")?;
    ensure!(left.trim().is_empty(), "left in the volumes dir: {left}");

    ensure!(
        daemon.stop()?.success(),
        "the daemon failed to stop cleanly"
    );
    pod.stop()
}

#[test]
fn docker_cli_binds_tmpfs_and_symlinks() -> Result<()> {
    binds_tmpfs_and_symlinks(&PodSpec::new())
}

/// The same in a pod with `procMount: Unmasked` (fresh /proc, no degraded
/// mode) and in one with CAP_SYS_ADMIN (masks lifted by the engine).
#[test]
fn docker_cli_binds_tmpfs_and_symlinks_unmasked_and_sys_admin() -> Result<()> {
    binds_tmpfs_and_symlinks(&PodSpec::new().proc_unmasked())?;
    binds_tmpfs_and_symlinks(&PodSpec::new().cap_add("SYS_ADMIN"))
}

fn binds_tmpfs_and_symlinks(spec: &PodSpec) -> Result<()> {
    let image = testimages::volumes()?;
    let pod = Pod::start(spec)?;
    let daemon = Daemon::start(&pod)?;
    let img = image.reference.as_str();
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    pod_sh(&pod, "mkdir -p /tmp/b/sub && echo host > /tmp/b/f")?;

    // rw bind: both ways.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "/tmp/b:/b",
        img,
        "sh",
        "-c",
        "cat /b/f; echo back > /b/g",
    ])?;
    ensure!(out.trim() == "host", "{out}");
    ensure!(pod_sh(&pod, "cat /tmp/b/g")?.trim() == "back");
    // ro bind: EROFS.
    let err = docker_err(
        &daemon,
        &["run", "--rm", "-v", "/tmp/b:/b:ro", img, "touch", "/b/h"],
    )?;
    ensure!(err.contains("Read-only file system"), "{err}");
    ensure!(pod_sh(&pod, "test ! -e /tmp/b/h && echo none")?.trim() == "none");
    // Propagation as asked, on the mount in the container's namespace.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "/tmp/b:/b:rshared",
        "-v",
        "/tmp/b/sub:/c",
        img,
        "sh",
        "-c",
        "grep ' /b ' /proc/self/mountinfo; echo --; grep ' /c ' /proc/self/mountinfo",
    ])?;
    let (b, c) = out.split_once("--").unwrap_or_default();
    ensure!(b.contains("shared:"), "rshared not applied: {out}");
    ensure!(
        !c.contains("shared:") && !c.contains("master:") && c.contains(" /c "),
        "rprivate not applied: {out}"
    );
    // A single file.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "/tmp/b/f:/etc/hostfile:ro",
        img,
        "cat",
        "/etc/hostfile",
    ])?;
    ensure!(out.trim() == "host", "{out}");
    // Read-only reaches submounts (the pod's /dev/shm under /dev) unless
    // bind-recursive=writable says otherwise.
    let err = docker_err(
        &daemon,
        &[
            "run",
            "--rm",
            "-v",
            "/dev:/hd:ro",
            img,
            "touch",
            "/hd/shm/rro",
        ],
    )?;
    ensure!(err.contains("Read-only file system"), "{err}");
    daemon.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/dev,dst=/hd,readonly,bind-recursive=writable",
        img,
        "touch",
        "/hd/shm/written",
    ])?;
    ensure!(pod_sh(&pod, "test -e /dev/shm/written && echo yes")?.trim() == "yes");
    let err = docker_err(
        &daemon,
        &[
            "run",
            "--rm",
            "--mount",
            "type=bind,src=/dev,dst=/hd,bind-recursive=disabled",
            img,
            "ls",
            "/hd/shm/written",
        ],
    )?;
    ensure!(
        err.contains("bind-recursive=disabled cannot be honoured for /dev"),
        "{err}"
    );
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=bind,src=/tmp/b,dst=/b,bind-recursive=disabled",
        img,
        "cat",
        "/b/f",
    ])?;
    ensure!(out.trim() == "host", "{out}");
    // --mount with a missing source: Docker's error; -v creates it.
    let err = docker_err(
        &daemon,
        &[
            "run",
            "--rm",
            "--mount",
            "type=bind,src=/tmp/missing,dst=/m",
            img,
            "true",
        ],
    )?;
    ensure!(
        err.contains("bind source path does not exist: /tmp/missing"),
        "{err}"
    );
    daemon.docker_ok(&["run", "--rm", "-v", "/tmp/created/deep:/m", img, "true"])?;
    ensure!(pod_sh(&pod, "test -d /tmp/created/deep && echo yes")?.trim() == "yes");
    // Inspect shows the bind as Docker does.
    daemon.docker_ok(&["create", "--name", "bc", "-v", "/tmp/b:/b:ro", img, "true"])?;
    let mounts = json(&daemon.docker_ok(&["inspect", "-f", "{{json .Mounts}}", "bc"])?)?;
    // The bind, then the image's VOLUME /data as an anonymous volume.
    ensure!(
        mounts[0]
            == serde_json::json!({"Type": "bind", "Source": "/tmp/b", "Destination": "/b",
                "Mode": "ro", "RW": false, "Propagation": "rprivate"}),
        "{mounts}"
    );
    ensure!(
        mounts[1]["Type"] == "volume" && mounts[1]["Destination"] == "/data",
        "{mounts}"
    );
    let binds = json(&daemon.docker_ok(&["inspect", "-f", "{{json .HostConfig.Binds}}", "bc"])?)?;
    ensure!(binds == serde_json::json!(["/tmp/b:/b:ro"]), "{binds}");
    // --volumes-from takes the other container's mounts (read-only here).
    let err = docker_err(
        &daemon,
        &[
            "run",
            "--rm",
            "--volumes-from",
            "bc:ro",
            img,
            "touch",
            "/b/x",
        ],
    )?;
    ensure!(err.contains("Read-only file system"), "{err}");
    let out = daemon.docker_ok(&["run", "--rm", "--volumes-from", "bc", img, "cat", "/b/f"])?;
    ensure!(out.trim() == "host", "{out}");
    // Bad specifications and the engine's own files.
    let err = docker_err(
        &daemon,
        &["run", "--rm", "-v", "/tmp/b:/b:bogus", img, "true"],
    )?;
    ensure!(err.contains("invalid mode: bogus"), "{err}");
    let err = docker_err(
        &daemon,
        &["run", "--rm", "-v", "/var/lib/hutch:/x", img, "true"],
    )?;
    ensure!(err.contains("data root"), "{err}");
    let err = docker_err(
        &daemon,
        &[
            "run",
            "--rm",
            "-v",
            "/var/lib/hutch/containers:/x",
            img,
            "true",
        ],
    )?;
    ensure!(err.contains("data root"), "{err}");
    let err = docker_err(&daemon, &["run", "--rm", "-v", "/:/host", img, "true"])?;
    ensure!(err.contains("data root"), "{err}");
    let err = docker_err(
        &daemon,
        &[
            "run",
            "--rm",
            "-v",
            "/tmp/b:/x",
            "--tmpfs",
            "/x",
            img,
            "true",
        ],
    )?;
    ensure!(err.contains("Duplicate mount point: /x"), "{err}");

    // tmpfs: --tmpfs with size and mode, --mount type=tmpfs.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "--tmpfs",
        "/t:size=64m,mode=1777",
        img,
        "sh",
        "-c",
        "stat -c %a /t; df -k /t | tail -n 1 | awk '{print $2}'; grep ' /t ' /proc/mounts",
    ])?;
    let lines: Vec<&str> = out.lines().collect();
    ensure!(lines.first() == Some(&"1777"), "{out}");
    ensure!(lines.get(1) == Some(&"65536"), "{out}");
    ensure!(
        lines
            .get(2)
            .is_some_and(|l| l.contains("noexec") && l.contains("nosuid")),
        "{out}"
    );
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,dst=/t,tmpfs-size=1048576,tmpfs-mode=0700",
        img,
        "sh",
        "-c",
        "stat -c %a /t; df -k /t | tail -n 1 | awk '{print $2}'",
    ])?;
    ensure!(
        out.split_whitespace().collect::<Vec<_>>() == ["700", "1024"],
        "{out}"
    );
    // A tmpfs volume of the local driver.
    daemon.docker_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=2m",
        "tv",
    ])?;
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "tv:/tv",
        img,
        "sh",
        "-c",
        "df -k /tv | tail -n 1 | awk '{print $2}'",
    ])?;
    ensure!(out.trim() == "2048", "{out}");

    // volume-subpath: a directory of the volume, resolved inside it.
    daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "sv:/data",
        img,
        "sh",
        "-c",
        "mkdir /data/in && echo in-sub > /data/in/f && ln -s / /data/evil",
    ])?;
    let sub = |subpath: &str, cmd: &[&str]| {
        let mount = format!("type=volume,src=sv,dst=/x,volume-subpath={subpath}");
        let mut args = vec!["run", "--rm", "--mount", mount.as_str(), img];
        args.extend_from_slice(cmd);
        daemon.docker().args(&args).output()
    };
    let out = ok(&sub("in", &["cat", "/x/f"])?, "subpath in")?;
    ensure!(out.trim() == "in-sub", "{out}");
    // A symlink to / inside the volume leads to the volume's root.
    let out = ok(&sub("evil", &["ls", "/x"])?, "subpath evil")?;
    ensure!(out.contains("hello") && !out.contains("proc"), "{out}");
    let err = String::from_utf8_lossy(&sub("../x", &["true"])?.stderr).into_owned();
    ensure!(
        err.contains("subpath must be a relative path within the volume"),
        "{err}"
    );
    let err = String::from_utf8_lossy(&sub("missing", &["true"])?.stderr).into_owned();
    ensure!(
        err.contains("cannot access the volume subpath missing"),
        "{err}"
    );

    // Symlinks in the image at a mount target resolve inside the rootfs.
    let out = daemon.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "/tmp/b:/escape",
        "-v",
        "/tmp/b:/mnt/up",
        img,
        "sh",
        "-c",
        "cat /tmp/hutch-escape/f; cat /tmp/hutch-escape-rel/f",
    ])?;
    ensure!(out == "host\nhost\n", "{out}");
    let outside = pod_sh(
        &pod,
        "ls -d /tmp/hutch-escape /tmp/hutch-escape-rel 2>/dev/null; true",
    )?;
    ensure!(
        outside.trim().is_empty(),
        "a mount escaped the rootfs: {outside}"
    );

    drop(daemon);
    pod.stop()
}

#[test]
fn docker_py_volumes() -> Result<()> {
    let image = testimages::volumes()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;
    let out = daemon
        .venv_python()
        .arg(client_script("docker_py_volumes.py"))
        .arg(&image.reference)
        .output()
        .context("running docker-py in the pod (did tests/install-deps make the venv?)")?;
    let text = ok(&out, "docker_py_volumes.py")?;
    let seen = json(text.trim())?;
    ensure!(seen["created"] == "pyvol", "{seen}");
    ensure!(seen["labels"] == serde_json::json!({"k": "v"}), "{seen}");
    ensure!(seen["listed"].to_string().contains("pyvol"), "{seen}");
    ensure!(seen["got"] == "pyvol", "{seen}");
    ensure!(seen["run_output"] == "from the image\nwritten\n", "{seen}");
    ensure!(seen["bind_output"] == "via bind\n", "{seen}");
    ensure!(seen["in_use_status"] == 409, "{seen}");
    ensure!(seen["removed"] == true, "{seen}");
    ensure!(seen["missing_status"] == 404, "{seen}");
    ensure!(
        seen["pruned_anon"] == true && seen["kept_named"] == true,
        "{seen}"
    );
    drop(daemon);
    pod.stop()
}

/// Private ID mode (on the pod's disk: shifted copies of the layers): a
/// fresh volume is handed to the container's root, so the copy-up and the
/// container's writes carry the container's own IDs; a volume holding
/// another range's files is refused with a clear error.
#[test]
fn docker_cli_volumes_in_private_id_mode() -> Result<()> {
    let image = testimages::volumes()?;
    let pod = Pod::start(&PodSpec::new())?;
    let daemon = Daemon::start(&pod)?;
    let img = image.reference.as_str();
    daemon.docker_ok(&["load", "-i", &image.docker_archive.display().to_string()])?;

    // The docker CLI knows only `--userns host`: create over the API.
    let script = "stat -c %u:%g /data /data/hello /data/sub/deep; touch /data/w; \
                  stat -c %u:%g /data/w";
    let create = |name: &str, dest: &str| -> Result<serde_json::Value> {
        let body = serde_json::json!({
            "Image": img, "Cmd": ["sh", "-c", script],
            "HostConfig": {"UsernsMode": "private", "Binds": [format!("pv:{dest}")]},
        });
        let out = daemon
            .curl(&[
                "-s",
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
                &format!("http://d/v1.50/containers/create?name={name}"),
            ])
            .output()?;
        json(&ok(&out, "create a private-mode container")?)
    };
    let made = create("p1", "/data")?;
    ensure!(made["Id"].is_string(), "{made}");
    let out = daemon.docker_ok(&["start", "-a", "p1"])?;
    ensure!(
        out.split_whitespace().collect::<Vec<_>>()
            == ["1000:1000", "1000:1000", "1001:1002", "0:0"],
        "the container does not see the image's owners: {out}"
    );
    // Outside, the files belong to the container's range, not to the
    // engine's own IDs.
    let ids = pod_sh(
        &pod,
        "cd /var/lib/hutch/volumes/pv/_data && stat -c %u w hello sub/deep",
    )?;
    let ids: Vec<u32> = ids
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    let [root, hello, deep] = ids.as_slice() else {
        anyhow::bail!("unexpected stat output {ids:?}");
    };
    ensure!(
        *root >= 1024,
        "the volume was not handed to the range: {ids:?}"
    );
    ensure!(*hello == root + 1000 && *deep == root + 1001, "{ids:?}");

    // Another private container (another range, p1 still holds its own)
    // cannot use the filled volume: a clear refusal, nothing created.
    let refused = create("p2", "/data")?;
    let err = refused["message"].as_str().unwrap_or_default();
    ensure!(
        err.contains("volume pv holds files of engine ID") && err.contains("private-mode"),
        "{refused}"
    );
    let names = daemon.docker_ok(&["ps", "-a", "--format", "{{.Names}}"])?;
    ensure!(names.trim() == "p1", "{names}");
    // The same container starts again with its volume.
    let out = daemon.docker_ok(&["start", "-a", "p1"])?;
    ensure!(out.contains("0:0"), "{out}");
    drop(daemon);
    pod.stop()
}
