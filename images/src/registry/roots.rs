//! The system's CA certificates, read once per process.
//!
//! reqwest's default verifier reads the whole system store (on Debian about
//! 300 files under /etc/ssl/certs, ~5 ms) every time a client is built, and
//! a pull builds three (oci-client's, the manifest fetcher's, the token
//! exchange's), even for a plain-HTTP registry that never speaks TLS. The
//! registry clients (and the builder's `ADD <url>` downloads) are built
//! with `tls_certs_only` over this one copy plus the endpoint's own CAs
//! instead: the same trust, since on Linux the platform verifier is WebPKI
//! over this same store.

use std::sync::OnceLock;

use rustls_pki_types::CertificateDer;
use tokio_rustls::rustls::RootCertStore;

/// The system's CA certificates that parse as trust anchors (a broken one
/// is skipped, as the platform verifier skips it, rather than failing
/// every client).
pub(crate) fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(%e, "a system CA certificate could not be read");
        }
        let mut probe = RootCertStore::empty();
        found
            .certs
            .into_iter()
            .filter(|cert| probe.add(cert.clone()).is_ok())
            .collect()
    })
}

/// [`system_roots`] as reqwest certificates.
pub fn reqwest_roots() -> Vec<reqwest::Certificate> {
    system_roots()
        .iter()
        // from_der only copies the bytes; they parsed above.
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
}

/// [`system_roots`] as oci-client certificates.
pub(crate) fn oci_client_roots() -> Vec<oci_client::client::Certificate> {
    system_roots()
        .iter()
        .map(|der| oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Der,
            data: der.to_vec(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_read_once_and_parses() {
        let first = system_roots();
        // The CI machine has Debian's ca-certificates.
        assert!(!first.is_empty(), "no system CA certificates found");
        let again = system_roots();
        assert!(std::ptr::eq(first, again), "the store was read twice");
        assert_eq!(reqwest_roots().len(), first.len());
    }
}
