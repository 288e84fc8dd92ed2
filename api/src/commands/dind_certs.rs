//! The TLS material `hutch dind` keeps under `$DOCKER_TLS_CERTDIR`, laid out
//! as the docker:dind image's entrypoint lays it out, so the CI jobs that
//! share its `client/` directory connect unchanged:
//!
//! - `ca/`: the CA's `key.pem` and `cert.pem`;
//! - `server/`: `key.pem`, `cert.pem` (for the SANs below) and `ca.pem`;
//! - `client/`: `key.pem` (mode 0644: other containers of the pod read it),
//!   `cert.pem` (client authentication) and `ca.pem` (`DOCKER_CERT_PATH`).
//!
//! As there, the CA is hutch's to manage when its key is present or its
//! certificate is not; server and client certificates are made again at
//! each start (the pod's addresses change), keys are kept; a `server/`
//! complete without a CA key is the user's and is used as it is. Keys are
//! ECDSA P-256 (docker:dind makes RSA 4096 with openssl, which takes
//! seconds; every Docker client accepts either).

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// docker:dind's validity (the longest Apple's TLS clients accept).
const VALID_DAYS: i64 = 825;

/// The server's files, for `--tlscacert --tlscert --tlskey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes (or keeps) the material under `dir`; `sans` are the names and
/// addresses the server certificate is for.
pub fn ensure(dir: &Path, sans: &[SanType]) -> anyhow::Result<ServerFiles> {
    let server = ServerFiles {
        ca: dir.join("server/ca.pem"),
        cert: dir.join("server/cert.pem"),
        key: dir.join("server/key.pem"),
    };
    let ca_key_path = dir.join("ca/key.pem");
    let ca_cert_path = dir.join("ca/cert.pem");
    let user_managed = [&server.ca, &server.cert, &server.key]
        .iter()
        .all(|p| non_empty(p))
        && !non_empty(&ca_key_path);
    if user_managed {
        return Ok(server);
    }
    if !non_empty(&ca_key_path) && non_empty(&ca_cert_path) {
        bail!(
            "{} has a CA certificate but neither its key nor a complete server/ \
             (ca.pem, cert.pem, key.pem): hutch cannot make the server's certificate",
            dir.display()
        );
    }
    let ca_key = key_at(&ca_key_path, 0o600)?;
    let ca_pem = match read_non_empty(&ca_cert_path)? {
        Some(pem) => pem,
        None => {
            let pem = ca_params()?.self_signed(&ca_key)?.pem();
            write(&ca_cert_path, pem.as_bytes(), 0o644)?;
            pem
        }
    };
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, &ca_key)
        .with_context(|| format!("reading the CA certificate {}", ca_cert_path.display()))?;

    let mut params = leaf_params("docker:dind server")?;
    params.subject_alt_names = sans.to_vec();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = key_at(&server.key, 0o600)?;
    write(
        &server.cert,
        params.signed_by(&key, &issuer)?.pem().as_bytes(),
        0o644,
    )?;
    write(&server.ca, ca_pem.as_bytes(), 0o644)?;

    let client = dir.join("client");
    let mut params = leaf_params("docker:dind client")?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = key_at(&client.join("key.pem"), 0o644)?;
    write(
        &client.join("cert.pem"),
        params.signed_by(&key, &issuer)?.pem().as_bytes(),
        0o644,
    )?;
    write(&client.join("ca.pem"), ca_pem.as_bytes(), 0o644)?;
    Ok(server)
}

/// The server certificate's names: this machine's addresses, its host
/// name, `docker` (the host name CI services give the daemon) and
/// `localhost`, then `DOCKER_TLS_SAN`'s (`DNS:name` or `IP:address`,
/// separated by commas or spaces).
pub fn server_sans(extra: Option<&str>) -> anyhow::Result<Vec<SanType>> {
    let mut sans: Vec<SanType> = Vec::new();
    let mut add = |san: SanType| {
        if !sans.contains(&san) {
            sans.push(san);
        }
    };
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for ifaddr in addrs {
            let Some(addr) = ifaddr.address else { continue };
            if let Some(v4) = addr.as_sockaddr_in() {
                add(SanType::IpAddress(IpAddr::V4(v4.ip())));
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                add(SanType::IpAddress(IpAddr::V6(v6.ip())));
            }
        }
    }
    let hostname = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty());
    for name in hostname
        .iter()
        .map(String::as_str)
        .chain(["docker", "localhost"])
    {
        add(SanType::DnsName(name.try_into()?));
    }
    for entry in extra
        .unwrap_or_default()
        .split([',', ' '])
        .filter(|e| !e.is_empty())
    {
        add(parse_san(entry)?);
    }
    Ok(sans)
}

fn parse_san(entry: &str) -> anyhow::Result<SanType> {
    match entry.split_once(':') {
        Some(("DNS", name)) => Ok(SanType::DnsName(name.try_into()?)),
        Some(("IP", ip)) => {
            Ok(SanType::IpAddress(ip.parse().with_context(|| {
                format!("DOCKER_TLS_SAN: {entry:?} is no IP address")
            })?))
        }
        _ => bail!("DOCKER_TLS_SAN: {entry:?} is neither DNS:NAME nor IP:ADDRESS"),
    }
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = leaf_params("docker:dind CA")?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

fn leaf_params(common_name: &str) -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let now = time::OffsetDateTime::now_utc();
    // An hour back: a client whose clock runs a little behind still
    // accepts it at once.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(VALID_DAYS);
    Ok(params)
}

/// The key at `path`, made (with `mode`) when there is none.
fn key_at(path: &Path, mode: u32) -> anyhow::Result<KeyPair> {
    match read_non_empty(path)? {
        Some(pem) => {
            let key = KeyPair::from_pem(&pem)
                .with_context(|| format!("reading the private key {}", path.display()))?;
            // docker:dind shares the client key with the pod's other
            // containers; keep whatever mode the others have as made.
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
            Ok(key)
        }
        None => {
            let key = KeyPair::generate()?;
            write(path, key.serialize_pem().as_bytes(), mode)?;
            Ok(key)
        }
    }
}

fn non_empty(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

fn read_non_empty(path: &Path) -> anyhow::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes `bytes` to `path` whole (a temporary file renamed over it), with
/// `mode`, creating its directory.
fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map_or_else(Default::default, |n| n.to_string_lossy())
    ));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans() -> anyhow::Result<Vec<SanType>> {
        Ok(vec![SanType::DnsName("localhost".try_into()?)])
    }

    #[test]
    fn the_layout_is_docker_dinds_and_keys_survive_a_restart() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let server = ensure(dir.path(), &sans()?)?;
        for f in [
            "ca/key.pem",
            "ca/cert.pem",
            "server/ca.pem",
            "server/cert.pem",
            "server/key.pem",
            "client/ca.pem",
            "client/cert.pem",
            "client/key.pem",
        ] {
            assert!(non_empty(&dir.path().join(f)), "{f}");
        }
        assert_eq!(server.key, dir.path().join("server/key.pem"));
        let mode = |f: &str| -> anyhow::Result<u32> {
            Ok(fs::metadata(dir.path().join(f))?.permissions().mode() & 0o777)
        };
        assert_eq!(mode("ca/key.pem")?, 0o600);
        assert_eq!(mode("server/key.pem")?, 0o600);
        assert_eq!(mode("client/key.pem")?, 0o644);
        let read = |f: &str| fs::read_to_string(dir.path().join(f));
        let (ca, key, cert) = (
            read("ca/cert.pem")?,
            read("server/key.pem")?,
            read("server/cert.pem")?,
        );
        assert_eq!(read("client/ca.pem")?, ca);
        // A restart: the CA and the keys stay, the certificates are new.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        ensure(dir.path(), &sans()?)?;
        assert_eq!(read("ca/cert.pem")?, ca);
        assert_eq!(read("server/key.pem")?, key);
        assert_ne!(read("server/cert.pem")?, cert);
        Ok(())
    }

    #[test]
    fn a_server_dir_without_a_ca_key_is_the_users() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        ensure(dir.path(), &sans()?)?;
        fs::remove_file(dir.path().join("ca/key.pem"))?;
        let before = fs::read(dir.path().join("server/cert.pem"))?;
        ensure(dir.path(), &sans()?)?;
        assert_eq!(fs::read(dir.path().join("server/cert.pem"))?, before);
        // Without it too: nothing to sign with.
        fs::remove_file(dir.path().join("server/key.pem"))?;
        let err = ensure(dir.path(), &sans()?).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("neither its key")));
        Ok(())
    }

    #[test]
    fn extra_names_are_dns_or_ip_entries() -> anyhow::Result<()> {
        let sans = server_sans(Some("DNS:dind.ci.internal, IP:10.1.2.3"))?;
        assert!(sans.contains(&SanType::DnsName("docker".try_into()?)));
        assert!(sans.contains(&SanType::DnsName("dind.ci.internal".try_into()?)));
        assert!(sans.contains(&SanType::IpAddress("10.1.2.3".parse()?)));
        assert!(sans.contains(&SanType::IpAddress("127.0.0.1".parse()?)));
        assert!(server_sans(Some("URI:x")).is_err());
        assert!(server_sans(Some("IP:not-an-ip")).is_err());
        Ok(())
    }
}
