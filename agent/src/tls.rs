//! Which servers the agent trusts: one rustls client configuration for both
//! connections to the control plane (`https://…/agent/enroll` through reqwest,
//! `wss://…/agent/connect` through tungstenite).
//!
//! ```text
//!   roots = operating system trust store          (rustls-native-certs)
//!         + every certificate in --ca-file (PEM)  (an internal CA)
//!   bundled web roots (webpki-roots) only when the system store yields none
//! ```
//!
//! Why the system store first: hosts behind an internal CA usually have it
//! installed there already (`update-ca-certificates`), and an administrator who
//! removes a CA from it expects the agent to stop trusting it too; a union
//! with the bundled roots would quietly keep it. The bundled roots remain the
//! fallback for a host (or a minimal container) without any CA certificates,
//! so such an agent still reaches a control plane with a public certificate,
//! as it did before the system store was used.
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA file {path} (--ca-file): {source}")]
    ReadCaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the CA file {path} (--ca-file) is unusable: {reason}")]
    BadCaFile { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The certificates of a PEM file (other blocks, e.g. keys, are skipped).
/// At least one is required: an empty CA file is a mistake worth stopping for.
pub fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block in it".into());
    }
    Ok(certs)
}

/// Adds every certificate of the CA file to `store`; returns how many.
pub fn add_ca_file(store: &mut RootCertStore, path: &Path) -> Result<usize, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::ReadCaFile {
        path: path.to_owned(),
        source,
    })?;
    let bad = |reason: String| TlsError::BadCaFile {
        path: path.to_owned(),
        reason,
    };
    let certs = parse_ca_pem(&pem).map_err(bad)?;
    let n = certs.len();
    for (i, cert) in certs.into_iter().enumerate() {
        store
            .add(cert)
            .map_err(|e| bad(format!("certificate {} of {n}: {e}", i + 1)))?;
    }
    Ok(n)
}

/// The system trust store, or the bundled web roots when it has nothing.
fn system_roots() -> RootCertStore {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "part of the system trust store could not be read");
    }
    let (added, ignored) = store.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::warn!(ignored, "unparsable certificates in the system trust store");
    }
    if added == 0 {
        tracing::warn!(
            "the system trust store has no certificates; trusting the bundled web roots instead"
        );
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    store
}

/// The client configuration: system roots plus the CA file, if any.
pub fn client_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = system_roots();
    if let Some(path) = ca_file {
        let n = add_ca_file(&mut roots, path)?;
        tracing::info!(ca_file = %path.display(), certificates = n, "trusting the CA file");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Whether `e` (or what caused it) is a rejected server certificate: such an
/// error gets a hint about `--ca-file`.
pub fn is_certificate_error(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(_)) = e.downcast_ref::<rustls::Error>() {
            return true;
        }
        // tungstenite and hyper wrap it in an io::Error.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(rustls::Error::InvalidCertificate(_)) =
                inner.downcast_ref::<rustls::Error>()
            {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// `e` with its causes, `: `-separated (reqwest's own text hides the cause,
/// e.g. a rejected certificate), plus the `--ca-file` hint where it applies.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    if is_certificate_error(e) {
        out.push_str(
            " (the server's certificate is not trusted: install its CA in the system trust store or pass it with --ca-file)",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two real self-signed certificates (rcgen), PEM.
    fn two_certs_pem() -> String {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".into()]).unwrap();
        format!(
            "# internal roots\n{}\n{}{}",
            a.cert.pem(),
            a.signing_key.serialize_pem(),
            b.cert.pem()
        )
    }

    #[test]
    fn parses_every_certificate_and_skips_keys() {
        let certs = parse_ca_pem(two_certs_pem().as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
    }

    #[test]
    fn rejects_empty_and_broken_pem() {
        assert!(parse_ca_pem(b"")
            .unwrap_err()
            .contains("no PEM CERTIFICATE"));
        assert!(parse_ca_pem(b"not a certificate at all\n")
            .unwrap_err()
            .contains("no PEM CERTIFICATE"));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(parse_ca_pem(broken.as_bytes())
            .unwrap_err()
            .contains("not valid PEM"));
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let mut store = RootCertStore::empty();
        let e = add_ca_file(&mut store, &missing).unwrap_err();
        assert!(matches!(e, TlsError::ReadCaFile { .. }));
        assert!(e.to_string().contains("missing-ca.pem"), "{e}");

        let junk = dir.path().join("junk-ca.pem");
        std::fs::write(&junk, "hello").unwrap();
        let e = add_ca_file(&mut store, &junk).unwrap_err();
        assert!(e.to_string().contains("junk-ca.pem"), "{e}");

        // DER that is not a certificate, in a CERTIFICATE block.
        let not_x509 = dir.path().join("not-x509.pem");
        std::fs::write(
            &not_x509,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = add_ca_file(&mut store, &not_x509).unwrap_err();
        assert!(e.to_string().contains("not-x509.pem"), "{e}");
        assert!(store.is_empty());

        let good = dir.path().join("ca.pem");
        std::fs::write(&good, two_certs_pem()).unwrap();
        assert_eq!(add_ca_file(&mut store, &good).unwrap(), 2);
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn certificate_errors_are_recognised_through_io_wrappers() {
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, cert);
        assert!(is_certificate_error(&io));
        assert!(describe(&io).contains("--ca-file"));
        let other = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(!is_certificate_error(&other));
        assert_eq!(describe(&other), "refused");
    }
}
