//! `hutch pull` / `push` end to end, run as pod root inside the pod
//! simulator against the registry fixture (plain, basic auth, TLS) and
//! against a lying registry: pulled images equal loaded ones, names and
//! digests are Docker's, credentials and CAs come from where Docker takes
//! them, push → pull keeps every digest, and broken registries or a
//! killed pull leave nothing behind.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use base64::Engine as _;
use hutch_tests::daemon::Daemon;
use hutch_tests::podsim::{hutch_bin, Pod, PodSpec};
use hutch_tests::poll::wait_for;
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages::{self, TestImage};

/// Runs hutch in the pod with `--data-root <pod data root>/<root>`.
fn hutch(pod: &Pod, root: &str, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut cmd = pod.exec(hutch_bin());
    cmd.arg("--data-root")
        .arg(pod.data_root().join(root))
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env_remove("HUTCH_REGISTRY_AUTH")
        .env_remove("HUTCH_CERTS_DIR")
        // Pod root cannot read the host's /root: no Docker config there.
        .env("HOME", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().context("running hutch in the pod")
}

fn ok(out: &Output) -> anyhow::Result<String> {
    ensure!(
        out.status.success(),
        "hutch failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn failed(out: &Output) -> anyhow::Result<String> {
    ensure!(
        !out.status.success(),
        "hutch should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn repo_tag(image: &TestImage) -> String {
    format!("hutch-test/{}:latest", image.name)
}

/// What a data root holds, read from the host.
#[derive(Debug, Default, PartialEq, Eq)]
struct StoreContents {
    blobs: BTreeSet<String>,
    layers: BTreeSet<String>,
    records: Vec<serde_json::Value>,
    ingest: Vec<String>,
}

fn list(dir: &Path) -> anyhow::Result<Vec<String>> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut out = Vec::new();
            for e in entries {
                out.push(e?.file_name().to_string_lossy().into_owned());
            }
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

fn contents(pod: &Pod, root: &str) -> anyhow::Result<StoreContents> {
    let dir = pod.data_dir_host().join(root);
    let mut records = Vec::new();
    for name in list(&dir.join("images"))? {
        records.push(serde_json::from_slice(&fs::read(
            dir.join("images").join(name),
        )?)?);
    }
    Ok(StoreContents {
        blobs: list(&dir.join("blobs/sha256"))?.into_iter().collect(),
        layers: list(&dir.join("layers"))?.into_iter().collect(),
        records,
        ingest: list(&dir.join("ingest"))?,
    })
}

/// The record of image `id` (`sha256:...`).
fn record<'a>(c: &'a StoreContents, id: &str) -> anyhow::Result<&'a serde_json::Value> {
    c.records
        .iter()
        .find(|r| r["id"] == id)
        .with_context(|| format!("no record for {id}"))
}

fn chain_ids(record: &serde_json::Value) -> Vec<String> {
    record["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| l["chain_id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every blob and layer is referenced by a record (garbage collection
/// would find nothing), and no operation left anything in ingest/.
fn assert_no_orphans(c: &StoreContents) -> anyhow::Result<()> {
    let mut blobs = BTreeSet::new();
    let mut layers = BTreeSet::new();
    for r in &c.records {
        blobs.insert(
            r["id"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("sha256:")
                .to_owned(),
        );
        for m in r["manifests"].as_array().into_iter().flatten() {
            blobs.insert(m["digest"].as_str().unwrap_or_default()[7..].to_owned());
        }
        for l in r["layers"].as_array().into_iter().flatten() {
            blobs.insert(l["blob"].as_str().unwrap_or_default()[7..].to_owned());
            layers.insert(l["chain_id"].as_str().unwrap_or_default()[7..].to_owned());
        }
    }
    ensure!(
        c.blobs == blobs,
        "blobs {:?}, referenced {:?}",
        c.blobs,
        blobs
    );
    ensure!(
        c.layers == layers,
        "layers {:?}, referenced {:?}",
        c.layers,
        layers
    );
    ensure!(c.ingest.is_empty(), "ingest leftovers: {:?}", c.ingest);
    Ok(())
}

/// Pulls both test images from `registry` with `env`, and checks each
/// against a `hutch load` of the same image: same ID, same layer chain.
fn pull_and_compare(
    pod: &Pod,
    registry: &Registry,
    images: &[TestImage],
    root: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    for image in images {
        let name = registry.image_ref(&repo_tag(image));
        let out = ok(&hutch(pod, root, &["pull", &name], env)?)?;
        ensure!(
            out.contains(&format!("Digest: {}", image.manifest_digest))
                && out.contains(&format!("Status: Downloaded newer image for {name}"))
                && out.trim_end().ends_with(&name),
            "pull output:\n{out}"
        );
        for layer in &image.layers {
            ensure!(
                out.contains(&format!("{}: Pull complete", &layer.digest[7..19])),
                "no progress for {}:\n{out}",
                layer.digest
            );
        }
        let loaded_root = format!("{root}-loaded-{}", image.name);
        let archive = image.docker_archive.to_string_lossy().into_owned();
        ok(&hutch(pod, &loaded_root, &["load", "-i", &archive], &[])?)?;
        let pulled = contents(pod, root)?;
        let loaded = contents(pod, &loaded_root)?;
        let want = record(&loaded, &image.config_digest)?;
        let have = record(&pulled, &image.config_digest)?;
        ensure!(
            chain_ids(have) == chain_ids(want) && !chain_ids(have).is_empty(),
            "{}: pulled layers {:?}, loaded {:?}",
            image.name,
            chain_ids(have),
            chain_ids(want)
        );
        for chain in chain_ids(have) {
            ensure!(
                loaded.layers.contains(&chain[7..]) && pulled.layers.contains(&chain[7..]),
                "layer {chain} missing"
            );
        }
    }
    let listed = ok(&hutch(pod, root, &["images", "--digests"], &[])?)?;
    for image in images {
        ensure!(
            listed.contains(&registry.image_ref(&format!("hutch-test/{}", image.name)))
                && listed.contains(&image.manifest_digest)
                && listed.contains(&image.config_digest[7..19]),
            "images output:\n{listed}"
        );
    }
    assert_no_orphans(&contents(pod, root)?)
}

fn setup(variant: RegistryVariant) -> anyhow::Result<(Pod, Registry, Vec<TestImage>)> {
    let images = vec![testimages::busybox()?, testimages::torture()?];
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, variant)?;
    for image in &images {
        registry.push(&pod, image, &repo_tag(image))?;
    }
    Ok((pod, registry, images))
}

/// A world-readable directory under target/test-fixtures, which pod root
/// can read at the same path.
fn fixture_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let parent = hutch_tests::workspace::target_dir().join("test-fixtures");
    fs::create_dir_all(&parent)?;
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(&parent)?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

#[test]
fn pull_from_plain_registry() -> anyhow::Result<()> {
    let (pod, registry, images) = setup(RegistryVariant::Plain)?;
    pull_and_compare(&pod, &registry, &images, "plain", &[])?;

    // Again: nothing to do, and Docker's words for it.
    let name = registry.image_ref(&repo_tag(&images[0]));
    let again = ok(&hutch(&pod, "plain", &["pull", &name], &[])?)?;
    ensure!(
        again.contains(&format!("Status: Image is up to date for {name}"))
            && !again.contains("Pull complete"),
        "second pull:\n{again}"
    );

    // By digest, into a fresh store; -q prints the name only.
    let by_digest = format!(
        "{}@{}",
        registry.image_ref("hutch-test/torture"),
        images[1].manifest_digest
    );
    let quiet = ok(&hutch(&pod, "digest", &["pull", "-q", &by_digest], &[])?)?;
    ensure!(quiet.trim() == by_digest, "pull -q output: {quiet}");
    let store = contents(&pod, "digest")?;
    record(&store, &images[1].config_digest)?;
    assert_no_orphans(&store)?;

    // A platform the image does not have.
    let err = failed(&hutch(
        &pod,
        "platform",
        &["pull", "--platform", "linux/s390x", &name],
        &[],
    )?)?;
    ensure!(
        err.contains("does not match the specified platform") && err.contains("linux/s390x"),
        "wrong-platform error: {err}"
    );
    drop(registry);
    pod.stop()
}

#[test]
fn pull_from_basic_auth_registry() -> anyhow::Result<()> {
    let (pod, registry, images) = setup(RegistryVariant::BasicAuth)?;
    let (user, pass) = registry.credentials().context("credentials")?;
    let name = registry.image_ref(&repo_tag(&images[0]));

    let err = failed(&hutch(&pod, "anonymous", &["pull", &name], &[])?)?;
    ensure!(
        err.to_lowercase().contains("authorized") || err.contains("401"),
        "anonymous pull error: {err}"
    );
    assert_no_orphans(&contents(&pod, "anonymous")?)?;

    // Credentials from a Docker config.json, as `docker login` writes it.
    let docker_config = fixture_dir("docker-config-")?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let config = serde_json::json!({ "auths": { registry.host(): { "auth": auth } } });
    let config_path = docker_config.path().join("config.json");
    fs::write(&config_path, serde_json::to_vec(&config)?)?;
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o644))?;
    let dir = docker_config.path().to_string_lossy().into_owned();
    pull_and_compare(
        &pod,
        &registry,
        &images,
        "config",
        &[("DOCKER_CONFIG", &dir)],
    )?;

    // pull -a lists the tags with the same credentials, and not without.
    let repo = registry.image_ref(&format!("hutch-test/{}", images[0].name));
    let all = ok(&hutch(
        &pod,
        "all-tags",
        &["pull", "-a", &repo],
        &[("DOCKER_CONFIG", &dir)],
    )?)?;
    ensure!(all.contains("latest: Pulling from hutch-test/"), "{all}");
    let err = failed(&hutch(
        &pod,
        "all-tags-anonymous",
        &["pull", "-a", &repo],
        &[],
    )?)?;
    ensure!(
        err.to_lowercase().contains("authorized") || err.contains("401"),
        "anonymous pull -a error: {err}"
    );

    // Explicit credentials, as the API passes them (X-Registry-Auth).
    let header = base64::engine::general_purpose::URL_SAFE.encode(
        serde_json::json!({ "username": user, "password": pass, "serveraddress": registry.host() })
            .to_string(),
    );
    pull_and_compare(
        &pod,
        &registry,
        &images,
        "explicit",
        &[("HUTCH_REGISTRY_AUTH", &header)],
    )?;

    // Wrong explicit credentials fail even with a good config.json.
    let wrong = base64::engine::general_purpose::URL_SAFE
        .encode(serde_json::json!({ "username": user, "password": "wrong" }).to_string());
    let err = failed(&hutch(
        &pod,
        "wrong",
        &["pull", &name],
        &[("HUTCH_REGISTRY_AUTH", &wrong), ("DOCKER_CONFIG", &dir)],
    )?)?;
    ensure!(
        err.to_lowercase().contains("authorized") || err.contains("401"),
        "wrong-password error: {err}"
    );
    drop(registry);
    pod.stop()
}

#[test]
fn pull_from_tls_registry() -> anyhow::Result<()> {
    let (pod, registry, images) = setup(RegistryVariant::Tls)?;
    let name = registry.image_ref(&repo_tag(&images[0]));

    // Without the CA, the server's certificate is not trusted.
    let empty = fixture_dir("certs-empty-")?;
    let empty_dir = empty.path().to_string_lossy().into_owned();
    let err = failed(&hutch(
        &pod,
        "untrusted",
        &["pull", &name],
        &[("HUTCH_CERTS_DIR", &empty_dir)],
    )?)?;
    ensure!(
        err.to_lowercase().contains("certificate"),
        "untrusted-CA error: {err}"
    );

    // certs.d/<host:port>/ca.crt, Docker's layout.
    let certs = fixture_dir("certs-d-")?;
    let host_dir = certs.path().join(registry.host());
    fs::create_dir(&host_dir)?;
    fs::set_permissions(&host_dir, fs::Permissions::from_mode(0o755))?;
    let ca = host_dir.join("ca.crt");
    fs::copy(registry.ca_cert_path().context("CA")?, &ca)?;
    fs::set_permissions(&ca, fs::Permissions::from_mode(0o644))?;
    let certs_dir = certs.path().to_string_lossy().into_owned();
    pull_and_compare(
        &pod,
        &registry,
        &images,
        "tls",
        &[("HUTCH_CERTS_DIR", &certs_dir)],
    )?;
    drop(registry);
    pod.stop()
}

#[test]
fn push_then_pull_back_keeps_digests() -> anyhow::Result<()> {
    let (pod, registry, images) = setup(RegistryVariant::Plain)?;
    let torture = &images[1];
    let busybox = &images[0];

    // A pulled image goes back byte for byte: same manifest digest.
    let source = registry.image_ref(&repo_tag(torture));
    ok(&hutch(&pod, "push", &["pull", "-q", &source], &[])?)?;
    let copy = registry.image_ref("copies/torture:v1");
    ok(&hutch(&pod, "push", &["tag", &source, &copy], &[])?)?;
    let out = ok(&hutch(&pod, "push", &["push", &copy], &[])?)?;
    ensure!(
        out.contains(&format!("v1: digest: {} size:", torture.manifest_digest)),
        "push output:\n{out}"
    );
    // Every blob is in the registry already, under hutch-test/torture: the
    // registry links them (cross-repository mount) instead of an upload.
    ensure!(
        out.contains("Mounted from hutch-test/torture") && !out.contains(": Pushed"),
        "push output:\n{out}"
    );
    let again = ok(&hutch(&pod, "push", &["push", &copy], &[])?)?;
    ensure!(
        again.contains("Layer already exists") && !again.contains("Mounted from"),
        "second push output:\n{again}"
    );

    // A loaded image (a docker-archive, which carries no manifest) is
    // uploaded to a new repository and pulled back into a fresh store.
    let archive = busybox.docker_archive.to_string_lossy().into_owned();
    ok(&hutch(&pod, "loaded", &["load", "-i", &archive], &[])?)?;
    let target = registry.image_ref("uploads/busybox:v2");
    ok(&hutch(
        &pod,
        "loaded",
        &["tag", &busybox.reference, &target],
        &[],
    )?)?;
    let out = ok(&hutch(&pod, "loaded", &["push", &target], &[])?)?;
    let pushed_digest = out
        .lines()
        .find_map(|l| l.strip_prefix("v2: digest: "))
        .and_then(|l| l.split_whitespace().next())
        .with_context(|| format!("no digest in push output:\n{out}"))?
        .to_owned();
    ensure!(out.contains(": Pushed"), "push output:\n{out}");
    let back = ok(&hutch(&pod, "back", &["pull", &target], &[])?)?;
    ensure!(
        back.contains(&format!("Digest: {pushed_digest}")),
        "pull-back output:\n{back}"
    );
    let pulled = contents(&pod, "back")?;
    let loaded = contents(&pod, "loaded")?;
    ensure!(
        chain_ids(record(&pulled, &busybox.config_digest)?)
            == chain_ids(record(&loaded, &busybox.config_digest)?),
        "layers differ after push and pull"
    );
    // A docker-archive's layers are uncompressed tars; the push gzips them
    // (as `docker push` does), so the pulled record names gzip blobs of the
    // same diff IDs.
    let layers = |r: &serde_json::Value| -> Vec<(String, String)> {
        r["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| {
                let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
                (s("blob"), s("media_type"))
            })
            .collect()
    };
    let (pulled_layers, loaded_layers) = (
        layers(record(&pulled, &busybox.config_digest)?),
        layers(record(&loaded, &busybox.config_digest)?),
    );
    ensure!(
        pulled_layers.len() == loaded_layers.len()
            && pulled_layers
                .iter()
                .zip(&loaded_layers)
                .all(|(p, l)| p.1.ends_with("gzip") && !l.1.ends_with("gzip") && p.0 != l.0),
        "pushed layers not gzipped: pulled {pulled_layers:?}, loaded {loaded_layers:?}"
    );
    let listed = ok(&hutch(&pod, "loaded", &["images", "--digests"], &[])?)?;
    ensure!(
        listed.contains(&pushed_digest),
        "push records the repo digest:\n{listed}"
    );
    assert_no_orphans(&pulled)?;
    drop(registry);
    pod.stop()
}

/// The lying registry of tests/fixtures, as a sidecar in the pod's netns.
struct Liar {
    child: Child,
    host: String,
}

impl Liar {
    /// Serves `image` on `port` (the pod has its own network namespace: a
    /// fixed port is free).
    fn start(pod: &Pod, image: &TestImage, port: u16) -> anyhow::Result<Liar> {
        let script =
            hutch_tests::workspace::workspace_root().join("tests/fixtures/lying_registry.py");
        let child = pod
            .sidecar("/usr/bin/python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&image.oci_layout)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the lying registry (python3)")?;
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let probe = pod
                .sidecar("curl")
                .args(["-sf", "-o", "/dev/null", &format!("http://{host}/v2/")])
                .status()?;
            if probe.success() {
                return Ok(Liar { child, host });
            }
            if Instant::now() > deadline {
                bail!("the lying registry did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Liar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn lying_registries_store_nothing() -> anyhow::Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let liar = Liar::start(&pod, &image, 5055)?;
    let control = ok(&hutch(
        &pod,
        "good",
        &["pull", &format!("{}/good/img", liar.host)],
        &[],
    )?)?;
    ensure!(
        control.contains("Downloaded newer image"),
        "control pull:\n{control}"
    );

    let cases: &[(&str, &[&str])] = &[
        ("wrongdigest", &["digest"]),
        ("rangelie", &["content verification failed"]),
        ("truncated", &["truncated"]),
        (
            "abort",
            &["download failed", "error decoding", "connection", "body"],
        ),
        ("error500", &["500"]),
        (
            "unknownmedia",
            &[
                "unsupported manifest media type",
                "application/vnd.example.unknown",
            ],
        ),
        ("huge", &["byte limit"]),
        ("endless", &["byte limit"]),
    ];
    for (repo, words) in cases {
        let name = format!("{}/{repo}/img", liar.host);
        let err = failed(&hutch(&pod, repo, &["pull", &name], &[])?)?;
        let lower = err.to_lowercase();
        ensure!(
            words.iter().any(|w| lower.contains(&w.to_lowercase())),
            "{repo}: unclear error: {err}"
        );
        let store = contents(&pod, repo)?;
        ensure!(
            store == StoreContents::default(),
            "{repo}: something was stored: {store:?}"
        );
    }
    // The endless manifest was read only to the limit (4 MiB), not on
    // to its 1 GiB.
    let sent = pod
        .sidecar("curl")
        .args(["-sf", &format!("http://{}/sent/endless", liar.host)])
        .output()?;
    let sent: u64 = String::from_utf8_lossy(&sent.stdout).trim().parse()?;
    ensure!(
        sent < 64 << 20,
        "{sent} bytes of the endless manifest were sent"
    );
    drop(liar);
    pod.stop()
}

/// A pull that fails on one layer keeps the layers it verified, and the
/// next pull of the image reuses them instead of downloading them again.
#[test]
fn a_failed_pull_keeps_verified_layers_for_the_next() -> anyhow::Result<()> {
    let image = testimages::torture()?;
    ensure!(
        image.layers.len() >= 2,
        "the torture image has several layers"
    );
    let pod = Pod::start(&PodSpec::new())?;
    let liar = Liar::start(&pod, &image, 5056)?;
    let err = failed(&hutch(
        &pod,
        "resume",
        &["pull", &format!("{}/halfbad/img", liar.host)],
        &[],
    )?)?;
    ensure!(err.contains("500"), "unclear error: {err}");
    let store = contents(&pod, "resume")?;
    ensure!(
        store.records.is_empty(),
        "an image record after a failed pull"
    );
    ensure!(
        store.ingest.is_empty(),
        "ingest leftovers: {:?}",
        store.ingest
    );
    let (good, last) = image.layers.split_at(image.layers.len() - 1);
    for layer in good {
        let hex = layer.digest.trim_start_matches("sha256:");
        ensure!(
            store.blobs.contains(hex),
            "verified layer blob {hex} was not kept: {store:?}"
        );
        let data = fs::read(pod.data_dir_host().join("resume/blobs/sha256").join(hex))?;
        ensure!(testimages::sha256_digest(&data) == layer.digest);
    }
    let failed_hex = last[0].digest.trim_start_matches("sha256:");
    ensure!(
        !store.blobs.contains(failed_hex),
        "the failed layer's blob was stored"
    );
    ensure!(
        store.layers.len() == good.len(),
        "expected {} complete layers, found {:?}",
        good.len(),
        store.layers
    );
    for layer in &store.layers {
        ensure!(pod
            .data_dir_host()
            .join("resume/layers")
            .join(layer)
            .join("layer.json")
            .is_file());
    }

    let out = ok(&hutch(
        &pod,
        "resume",
        &["pull", &format!("{}/good/img", liar.host)],
        &[],
    )?)?;
    ensure!(
        out.matches("Already exists").count() == good.len(),
        "the kept layers were not reused:\n{out}"
    );
    ensure!(out.contains("Downloaded newer image"), "{out}");
    let store = contents(&pod, "resume")?;
    record(&store, &image.config_digest)?;
    assert_no_orphans(&store)?;
    drop(liar);
    pod.stop()
}

/// A layer blob that cannot be written (past the file size limit, as on a
/// full disk) fails the pull with the write's own error, while the layer
/// was unpacking beside it, and stores nothing; the same pull then works.
#[test]
fn a_failed_blob_write_stores_nothing() -> anyhow::Result<()> {
    let image = testimages::incompressible()?;
    let limit_kib: u64 = 256;
    let blob_size = image.layers.first().context("one layer")?.size;
    // The blob must fail, not a file of the layer: every file is smaller.
    ensure!(
        blob_size > 2 * limit_kib * 1024
            && (testimages::INCOMPRESSIBLE_FILE_SIZE as u64) < limit_kib * 1024,
        "the image does not fit the test: blob of {blob_size} bytes"
    );
    let pod = Pod::start(&PodSpec::new())?;
    let liar = Liar::start(&pod, &image, 5057)?;
    let name = format!("{}/good/img", liar.host);
    // SIGXFSZ ignored (kept across exec): a write past the limit fails
    // with EFBIG instead of killing hutch.
    let script = format!(
        "trap '' XFSZ; ulimit -f {limit_kib}; exec {hutch} --data-root {root} pull {name}",
        hutch = hutch_bin().display(),
        root = pod.data_root().join("blobfail").display(),
    );
    let out = pod
        .exec("/bin/bash")
        .args(["-c", &script])
        .env("HOME", "/nonexistent")
        .output()?;
    let err = failed(&out)?;
    ensure!(
        err.contains("cannot write the blob to the store") && err.contains("File too large"),
        "unclear error: {err}"
    );
    let store = contents(&pod, "blobfail")?;
    ensure!(
        store == StoreContents::default(),
        "something was stored: {store:?}"
    );

    let out = ok(&hutch(&pod, "blobfail", &["pull", &name], &[])?)?;
    ensure!(out.contains("Downloaded newer image"), "{out}");
    let store = contents(&pod, "blobfail")?;
    record(&store, &image.config_digest)?;
    assert_no_orphans(&store)?;
    drop(liar);
    pod.stop()
}

/// The lying registry's stalled blob requests so far, and how many of
/// them the client closed.
fn stalls(pod: &Pod, liar: &Liar) -> anyhow::Result<(u64, u64)> {
    let out = pod
        .sidecar("curl")
        .args(["-sf", &format!("http://{}/sent/stall", liar.host)])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut counts = text.split_whitespace().map(str::parse::<u64>);
    match (counts.next(), counts.next()) {
        (Some(Ok(started)), Some(Ok(closed))) => Ok((started, closed)),
        _ => bail!("the lying registry answered {text:?}"),
    }
}

/// A client that goes away in the middle of `docker pull` cancels the
/// pull, as Docker's does: the daemon drops the download (the registry
/// sees its connection close, though the blob is only half sent and the
/// registry would wait), keeps nothing half-written, and pulls the same
/// image whole afterwards.
#[test]
fn a_client_leaving_mid_pull_cancels_it() -> anyhow::Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let liar = Liar::start(&pod, &image, 5058)?;
    let daemon = Daemon::start(&pod)?;
    let mut cli = daemon
        .docker()
        .args(["pull", &format!("{}/stall/img", liar.host)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    wait_for("the layer download", Duration::from_secs(20), || {
        Ok(stalls(&pod, &liar)?.0 == 1)
    })?;
    // podsim exec forwards SIGTERM to the CLI, which drops the connection.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(cli.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let _ = cli.wait();
    wait_for(
        "the daemon closing the download",
        Duration::from_secs(20),
        || Ok(stalls(&pod, &liar)?.1 == 1),
    )?;
    wait_for(
        "the ingest directory emptying",
        Duration::from_secs(20),
        || Ok(contents(&pod, "")?.ingest.is_empty()),
    )?;
    let store = contents(&pod, "")?;
    ensure!(
        store.records.is_empty() && store.layers.is_empty(),
        "a cancelled pull stored {store:?}"
    );
    let name = format!("{}/good/img", liar.host);
    let pulled = daemon.docker_ok(&["pull", &name])?;
    ensure!(pulled.contains("Downloaded newer image"), "{pulled}");
    let store = contents(&pod, "")?;
    record(&store, &image.config_digest)?;
    assert_no_orphans(&store)?;
    ensure!(!daemon.log().contains("panicked"), "{}", daemon.log());
    drop(daemon);
    drop(liar);
    pod.stop()
}

#[test]
fn killed_pulls_leave_no_orphans() -> anyhow::Result<()> {
    let (pod, registry, images) = setup(RegistryVariant::Plain)?;
    let names: Vec<String> = images
        .iter()
        .map(|i| registry.image_ref(&repo_tag(i)))
        .collect();
    let hutch_path = hutch_bin();
    let root = pod.data_root().join("killed");
    // kill -9 from inside the pod at several points of a pull of both images.
    for delay_ms in [5, 15, 30, 50, 80, 120, 200] {
        let script = format!(
            "{hutch} --data-root {root} pull -q {a} >/dev/null 2>&1 & a=$!; \
             {hutch} --data-root {root} pull -q {b} >/dev/null 2>&1 & b=$!; \
             sleep {delay}; kill -9 $a $b 2>/dev/null; wait",
            hutch = hutch_path.display(),
            root = root.display(),
            a = names[0],
            b = names[1],
            delay = delay_ms as f64 / 1000.0,
        );
        let status = pod
            .exec("/bin/sh")
            .args(["-c", &script])
            .env("HOME", "/nonexistent")
            .status()?;
        ensure!(status.success(), "kill loop at {delay_ms} ms: {status}");
        let store = contents(&pod, "killed")?;
        // Whatever is in blobs/ and layers/ is complete: blobs have their digest.
        for blob in &store.blobs {
            let data = fs::read(pod.data_dir_host().join("killed/blobs/sha256").join(blob))?;
            ensure!(
                testimages::sha256_digest(&data) == format!("sha256:{blob}"),
                "blob {blob} is incomplete after a kill at {delay_ms} ms"
            );
        }
        for layer in &store.layers {
            ensure!(
                pod.data_dir_host()
                    .join("killed/layers")
                    .join(layer)
                    .join("layer.json")
                    .is_file(),
                "layer {layer} has no metadata after a kill at {delay_ms} ms"
            );
        }
    }
    for (image, name) in images.iter().zip(&names) {
        let out = ok(&hutch(&pod, "killed", &["pull", name], &[])?)?;
        ensure!(
            out.contains(&format!("Digest: {}", image.manifest_digest)),
            "{out}"
        );
    }
    let store = contents(&pod, "killed")?;
    for image in &images {
        record(&store, &image.config_digest)?;
    }
    assert_no_orphans(&store)?;
    drop(registry);
    pod.stop()
}

/// `hutch pull -a` pulls every tag the registry lists, across its pages;
/// a registry that pages forever, sends a page too large, or lists a tag
/// no reference can carry is a clear error.
#[test]
fn pull_all_tags_follows_pages_and_refuses_lies() -> anyhow::Result<()> {
    let image = testimages::busybox()?;
    let pod = Pod::start(&PodSpec::new())?;
    let liar = Liar::start(&pod, &image, 5056)?;
    let repo = format!("{}/good/img", liar.host);
    let out = ok(&hutch(&pod, "all", &["pull", "-a", &repo], &[])?)?;
    for tag in ["a", "b"] {
        ensure!(
            out.contains(&format!("{tag}: Pulling from good/img")),
            "tag {tag} was not pulled:\n{out}"
        );
    }
    ensure!(
        out.contains(&format!("Status: Downloaded newer image for {repo}")),
        "{out}"
    );
    let names = fs::read_to_string(pod.data_dir_host().join("all/repositories.json"))?;
    for tag in ["a", "b"] {
        ensure!(
            names.contains(&format!("{repo}:{tag}\"")),
            "{repo}:{tag} is not a name: {names}"
        );
    }
    let again = ok(&hutch(&pod, "all", &["pull", "--all-tags", &repo], &[])?)?;
    ensure!(
        again.contains(&format!("Status: Image is up to date for {repo}")),
        "{again}"
    );
    let tagged = failed(&hutch(
        &pod,
        "all",
        &["pull", "-a", &format!("{repo}:a")],
        &[],
    )?)?;
    ensure!(
        tagged.contains("tag can't be used with --all-tags/-a"),
        "{tagged}"
    );

    let cases: &[(&str, &str)] = &[
        ("endless", "more than 1000 pages"),
        ("huge", "over 4194304 bytes"),
        ("truncated", "invalid tag"),
        ("nosuch", "NAME_UNKNOWN"),
    ];
    for (repo, words) in cases {
        let name = format!("{}/{repo}/img", liar.host);
        let err = failed(&hutch(&pod, repo, &["pull", "-a", &name], &[])?)?;
        ensure!(err.contains(words), "{repo}: unclear error: {err}");
        let store = contents(&pod, repo)?;
        ensure!(
            store == StoreContents::default(),
            "{repo}: something was stored: {store:?}"
        );
    }
    drop(liar);
    pod.stop()
}
