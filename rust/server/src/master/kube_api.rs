//! The master's client of the Kubernetes API (instances on Agones,
//! docs/instances.md §7): one HTTP/1.1 request per TLS connection, the
//! service account's bearer token read from its file at every request
//! (Kubernetes rotates it), the API server's certificate checked against the
//! CA file, every answer bounded in bytes and time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, rustls};

use crate::error::ServerError;

/// The largest answer body read from the API server.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// An API server: where it is, how to trust it, how to authenticate.
pub struct KubeApi {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    token_path: PathBuf,
    timeout: Duration,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApi")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// An answer: the HTTP status and the body.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body (at most [`MAX_ANSWER_BYTES`]).
    pub body: Bytes,
}

/// Splits `https://host[:port]` (a bracketed IPv6 host allowed); the port defaults to 443.
pub fn parse_api_server(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("must start with https://")?
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err("must be https://host or https://host:port".into());
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && (!h.starts_with('[') || h.ends_with(']')) => {
            (h, p.parse::<u16>().map_err(|_| format!("bad port '{p}'"))?)
        }
        _ => (rest, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err("must name a host and a port above 0".into());
    }
    Ok((host.to_owned(), port))
}

impl KubeApi {
    /// The API server at `url` (`https://host[:port]`), trusted through the
    /// CA certificates in `ca_path` (PEM), authenticated with the token in
    /// `token_path`; each request gets at most `timeout`.
    pub fn new(
        url: &str,
        ca_path: &Path,
        token_path: &Path,
        timeout: Duration,
    ) -> Result<Self, ServerError> {
        let (host, port) = parse_api_server(url)
            .map_err(|e| ServerError::Tls(format!("instances.agones.api_server '{url}': {e}")))?;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca_path)
            .map_err(|e| ServerError::Tls(format!("cannot read {}: {e}", ca_path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| {
                ServerError::Tls(format!("bad certificate in {}: {e}", ca_path.display()))
            })?;
            roots
                .add(cert)
                .map_err(|e| ServerError::Tls(format!("{}: {e}", ca_path.display())))?;
        }
        if roots.is_empty() {
            return Err(ServerError::Tls(format!(
                "no CA certificate in {}",
                ca_path.display()
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ServerError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let server_name = ServerName::try_from(host.clone())
            .map_err(|e| ServerError::Tls(format!("api_server host '{host}': {e}")))?;
        Ok(Self {
            host,
            port,
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            token_path: token_path.to_owned(),
            timeout,
        })
    }

    /// Sends one request (`body` as JSON, or as `content_type`), waits at
    /// most the timeout for the whole answer. `Err` says what failed.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let token = std::fs::read_to_string(&self.token_path).map_err(|e| {
            format!(
                "cannot read the service account token {}: {e}",
                self.token_path.display()
            )
        })?;
        let fut = self.exchange(method, path, content_type, token.trim(), body);
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the Kubernetes API did not answer within {} ms",
                self.timeout.as_millis()
            )),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        token: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, String> {
        let unreachable = |e: &dyn std::fmt::Display| {
            format!(
                "cannot reach the Kubernetes API at {}:{}: {e}",
                self.host, self.port
            )
        };
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| unreachable(&e))?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(&e))?;
        let conn = tokio::spawn(conn);
        let authority = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, content_type);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| format!("bad request {path}: {e}"))?;
        let answer = async {
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable(&e))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| format!("the Kubernetes API's answer could not be read: {e}"))?
                .to_bytes();
            Ok(Answer { status, body })
        }
        .await;
        conn.abort();
        answer
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn api_server_addresses() {
        assert_eq!(
            parse_api_server("https://kubernetes.default.svc").unwrap(),
            ("kubernetes.default.svc".into(), 443)
        );
        assert_eq!(
            parse_api_server("https://127.0.0.1:6443/").unwrap(),
            ("127.0.0.1".into(), 6443)
        );
        assert_eq!(
            parse_api_server("https://[::1]:6443").unwrap(),
            ("::1".into(), 6443)
        );
        assert!(parse_api_server("http://x").is_err());
        assert!(parse_api_server("https://x/path").is_err());
        assert!(parse_api_server("https://x:0").is_err());
        assert!(parse_api_server("https://u@x").is_err());
    }
}
