//! Verifying the real server: the system's roots plus `ssl_verify_dir`, and
//! what `ssl_verify` does with a server that fails.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// `ssl_verify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// A server that fails verification is not connected to.
    Block,
    /// A server whose certificate no trusted CA signed (self-signed ones
    /// included) is accepted, with a log line; other failures still block.
    SelfSigned,
}

/// The trusted CAs: the system's, then every PEM certificate in `extra`.
/// Returns the store and how many came from each.
pub fn roots(extra: Option<&Path>) -> Result<(RootCertStore, usize, usize), String> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        log::warn!("system CA certificates: {e}");
    }
    let (system, _) = store.add_parsable_certificates(native.certs);
    let mut added = 0;
    if let Some(dir) = extra {
        let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths.iter().filter(|p| p.is_file()) {
            // Hash links (c_rehash) point at files already read.
            if path.is_symlink() {
                continue;
            }
            let Ok(certs) = CertificateDer::pem_file_iter(path) else {
                continue;
            };
            for cert in certs.flatten() {
                store
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                added += 1;
            }
        }
    }
    Ok((store, system, added))
}

/// The verifier for upstream connections.
pub fn verifier(
    roots: RootCertStore,
    mode: VerifyMode,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| format!("no usable CA to verify servers: {e}"))?;
    Ok(match mode {
        VerifyMode::Block => webpki,
        VerifyMode::SelfSigned => Arc::new(AllowUntrusted(webpki)),
    })
}

/// `ssl_verify=selfsigned`: an unknown issuer is logged and accepted.
#[derive(Debug)]
struct AllowUntrusted(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AllowUntrusted {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                log::warn!(
                    "server {}: certificate not signed by a trusted CA; accepted (ssl_verify=selfsigned)",
                    server_name.to_str()
                );
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
