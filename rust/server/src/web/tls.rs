//! TLS for the WebSocket listeners: a certificate chain and key from PEM
//! files, and the self-signed development certificate `sustenet up` makes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;

use crate::error::ServerError;

/// A server's TLS certificate and key, ready to accept `wss://` connections.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    pub(crate) config: Arc<rustls::ServerConfig>,
}

fn tls_error(what: &str, path: &Path, e: impl std::fmt::Display) -> ServerError {
    ServerError::Tls(format!("{what} {}: {e}", path.display()))
}

impl TlsIdentity {
    /// Reads a certificate chain (PEM, leaf first) and its private key (PEM:
    /// PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, ServerError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| tls_error("cannot read the certificate", cert, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_error("bad certificate PEM in", cert, e))?;
        if chain.is_empty() {
            return Err(tls_error("no certificate in", cert, "empty file"));
        }
        let key_der = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| tls_error("cannot read the private key", key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| tls_error("the key does not fit the certificate", key, e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }
}

/// The development certificate's files, and what a browser needs to trust it.
#[derive(Debug, Clone)]
pub struct DevCertificate {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM (mode 0600 on Unix).
    pub key: PathBuf,
    /// Base64 of the SHA-256 of the certificate's public key (SPKI), as
    /// Chromium's `--ignore-certificate-errors-spki-list` takes it.
    pub spki_sha256: String,
}

/// Makes (once) a self-signed certificate for `hosts` (names or IP
/// addresses) in `dir` (`websocket.crt`, `websocket.key`), for development
/// only: no browser trusts it until told to.
pub fn ensure_dev_certificate(dir: &Path, hosts: &[String]) -> Result<DevCertificate, ServerError> {
    let cert = dir.join("websocket.crt");
    let key = dir.join("websocket.key");
    if !cert.exists() || !key.exists() {
        std::fs::create_dir_all(dir)?;
        let pair = rcgen::KeyPair::generate().map_err(|e| ServerError::Tls(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(hosts.to_vec())
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Sustenet development");
        let made = params
            .self_signed(&pair)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        crate::keys::write_secret_file(&key, &pair.serialize_pem(), true)?;
        std::fs::write(&cert, made.pem())?;
    }
    let pem = std::fs::read_to_string(&key)?;
    let pair = rcgen::KeyPair::from_pem(&pem).map_err(|e| tls_error("bad key", &key, e))?;
    let spki_sha256 = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(
        rcgen::PublicKeyData::subject_public_key_info(&pair),
    ));
    Ok(DevCertificate {
        cert,
        key,
        spki_sha256,
    })
}
