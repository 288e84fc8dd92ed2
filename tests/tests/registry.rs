//! The registry fixture serves both test images in all three variants: from
//! inside a pod, as pod root, curl fetches each manifest and every blob
//! with the variant's credentials or CA, and each digest is checked.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context};
use hutch_tests::podsim::{Pod, PodSpec};
use hutch_tests::registry::{Registry, RegistryVariant};
use hutch_tests::testimages::{self, sha256_digest, TestImage, MEDIA_TYPE_MANIFEST};
use serde_json::Value;

#[test]
fn plain_registry_serves_the_test_images() -> anyhow::Result<()> {
    serves_the_test_images(RegistryVariant::Plain)
}

#[test]
fn basic_auth_registry_serves_the_test_images() -> anyhow::Result<()> {
    serves_the_test_images(RegistryVariant::BasicAuth)
}

#[test]
fn tls_registry_serves_the_test_images() -> anyhow::Result<()> {
    serves_the_test_images(RegistryVariant::Tls)
}

fn serves_the_test_images(variant: RegistryVariant) -> anyhow::Result<()> {
    let images = [testimages::busybox()?, testimages::torture()?];
    let pod = Pod::start(&PodSpec::new())?;
    let registry = Registry::start(&pod, variant)?;
    for image in &images {
        registry.push(&pod, image, &repo_tag(image))?;
    }
    let client = Client {
        pod: &pod,
        registry: &registry,
    };
    for image in &images {
        client.verify_image(image).with_context(|| {
            format!(
                "{} from the {variant:?} registry\nregistry log:\n{}",
                image.name,
                registry.log()
            )
        })?;
    }
    client.verify_access_control()?;
    registry.stop()?;
    pod.stop()
}

/// Whether a registry answers HTTP at `addr` in the host's network
/// namespace; the fixture must live in the pod's alone. (Another host
/// process may own the same port number, but it is no registry.)
fn registry_answers_on_host(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut reply = String::new();
    if stream.write_all(request.as_bytes()).is_err() || stream.read_to_string(&mut reply).is_err() {
        return false;
    }
    reply
        .to_ascii_lowercase()
        .contains("docker-distribution-api-version")
}

fn repo_tag(image: &TestImage) -> String {
    format!("hutch-test/{}:latest", image.name)
}

/// curl inside the pod, as pod root, configured for one registry.
struct Client<'a> {
    pod: &'a Pod,
    registry: &'a Registry,
}

impl Client<'_> {
    /// Fetches the manifest by tag and by digest and every blob it names,
    /// checking each against its digest and the test image's metadata.
    fn verify_image(&self, image: &TestImage) -> anyhow::Result<()> {
        let repo = format!("hutch-test/{}", image.name);
        let accept = format!("Accept: {MEDIA_TYPE_MANIFEST}");
        let by_tag = self.get(&format!("/v2/{repo}/manifests/latest"), &["-H", &accept])?;
        ensure!(
            sha256_digest(&by_tag) == image.manifest_digest,
            "manifest by tag has another digest"
        );
        let by_digest = self.get(
            &format!("/v2/{repo}/manifests/{}", image.manifest_digest),
            &["-H", &accept],
        )?;
        ensure!(
            by_digest == by_tag,
            "manifest by digest differs from manifest by tag"
        );

        let manifest: Value = serde_json::from_slice(&by_tag)?;
        let config = &manifest["config"];
        ensure!(
            config["digest"] == image.config_digest.as_str(),
            "config digest"
        );
        let layers = manifest["layers"].as_array().context("manifest.layers")?;
        ensure!(layers.len() == image.layers.len(), "layer count");
        for descriptor in std::iter::once(config).chain(layers) {
            let digest = descriptor["digest"].as_str().context("descriptor digest")?;
            let size = descriptor["size"].as_u64().context("descriptor size")?;
            let blob = self.get(&format!("/v2/{repo}/blobs/{digest}"), &[])?;
            ensure!(
                sha256_digest(&blob) == digest,
                "blob {digest} has another digest"
            );
            ensure!(
                blob.len() as u64 == size,
                "blob {digest} is {} bytes, not {size}",
                blob.len()
            );
        }
        Ok(())
    }

    /// BasicAuth refuses missing or wrong credentials; Tls is not trusted
    /// without its CA, and its certificate also names localhost.
    fn verify_access_control(&self) -> anyhow::Result<()> {
        match self.registry.variant() {
            RegistryVariant::Plain => {
                ensure!(
                    self.status(&[], "/v2/")? == "200",
                    "plain registry wants credentials"
                );
                ensure!(
                    !registry_answers_on_host(self.registry.addr()),
                    "the registry is reachable from the host"
                );
            }
            RegistryVariant::BasicAuth => {
                let (user, _) = self.registry.credentials().context("credentials")?;
                let wrong = format!("{user}:not-the-password");
                ensure!(
                    self.status(&[], "/v2/")? == "401",
                    "no credentials were accepted"
                );
                ensure!(
                    self.status(&["-u", &wrong], "/v2/")? == "401",
                    "wrong credentials were accepted"
                );
                let manifest = "/v2/hutch-test/busybox/manifests/latest";
                ensure!(
                    self.status(&["-u", &wrong], manifest)? == "401",
                    "wrong credentials read a manifest"
                );
            }
            RegistryVariant::Tls => {
                let output = self
                    .curl_bare(&format!("{}/v2/", self.registry.url()))
                    .output()?;
                // curl's CURLE_PEER_FAILED_VERIFICATION.
                ensure!(
                    output.status.code() == Some(60),
                    "TLS without the CA: {output:?}"
                );
                let ca = self.registry.ca_cert_path().context("CA")?;
                let port = self.registry.addr().port();
                let output = self
                    .curl_bare(&format!("https://localhost:{port}/v2/"))
                    .arg("--cacert")
                    .arg(&ca)
                    .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
                    .output()?;
                ensure!(
                    output.status.success(),
                    "TLS via the name localhost: {output:?}"
                );
            }
        }
        Ok(())
    }

    /// GETs `path` with the registry's credentials and CA; the body.
    fn get(&self, path: &str, extra: &[&str]) -> anyhow::Result<Vec<u8>> {
        let output = self
            .curl(path)
            .args(["--fail", "-L"])
            .args(extra)
            .output()?;
        ensure!(
            output.status.success(),
            "curl {path} in the pod failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(output.stdout)
    }

    /// The HTTP status of `path` with the CA and only the `extra` options.
    fn status(&self, extra: &[&str], path: &str) -> anyhow::Result<String> {
        let mut curl = self.curl_bare(&format!("{}{path}", self.registry.url()));
        if let Some(ca) = self.registry.ca_cert_path() {
            curl.arg("--cacert").arg(ca);
        }
        let output = curl
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .args(extra)
            .output()?;
        Ok(String::from_utf8(output.stdout)?)
    }

    fn curl(&self, path: &str) -> Command {
        let mut curl = self.curl_bare(&format!("{}{path}", self.registry.url()));
        if let Some(ca) = self.registry.ca_cert_path() {
            curl.arg("--cacert").arg(ca);
        }
        if let Some((user, password)) = self.registry.credentials() {
            curl.args(["-u", &format!("{user}:{password}")]);
        }
        curl
    }

    /// curl run by the pod's root inside the pod, no credentials, no CA.
    fn curl_bare(&self, url: &str) -> Command {
        let mut curl = self.pod.exec("curl");
        curl.args(["-sS", "--max-time", "60", url]);
        curl
    }
}
