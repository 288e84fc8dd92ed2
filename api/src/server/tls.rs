//! TLS for TCP listeners, as dockerd's `--tls`/`--tlsverify`: with
//! `--tlsverify` only clients whose certificate the given CA signed may
//! connect (mutual TLS), which is what makes a TCP socket safe to offer to
//! other containers of the pod.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Require and verify client certificates against `ca`.
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The acceptor for `options`; every file problem is reported with its path.
pub fn acceptor(options: &TlsOptions) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_file_iter(&options.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate {}", options.cert.display()))?;
    if certs.is_empty() {
        bail!("{} holds no PEM certificate", options.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&options.key)
        .with_context(|| format!("reading the private key {}", options.key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?;
    let config = if options.verify {
        let Some(ca) = &options.ca else {
            bail!("--tlsverify needs --tlscacert: the CA that signs client certificates");
        };
        let mut roots = RootCertStore::empty();
        let cas = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("reading the CA certificate {}", ca.display()))?;
        for cert in cas {
            roots
                .add(cert)
                .with_context(|| format!("adding a CA certificate from {}", ca.display()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .with_context(|| format!("building a client verifier from {}", ca.display()))?;
        builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
    } else {
        builder.with_no_client_auth().with_single_cert(certs, key)
    }
    .context("the certificate and key do not form a usable TLS identity")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
