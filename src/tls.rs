// SPDX-License-Identifier: MIT OR Apache-2.0

//! HTTPS for serve, on the same port as HTTP: browsers off localhost only
//! give a page the camera in a secure context, and WHIP/WHEP tokens must
//! not cross a network in the clear.
//!
//! Each connection is told apart by its first byte (a TLS handshake record
//! starts with 0x16, an HTTP request with a letter). With a certificate
//! configured, plain HTTP is still answered for loopback peers, so local
//! tools and tests keep working, and refused for everyone else.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The first byte of a TLS record carrying a handshake (a ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
/// How long a connection may take to send its first byte, its TLS
/// handshake, and each request's headers: a client that trickles them
/// (slowloris) is closed then, rather than hold its connection for ever.
pub const SLOW_CLIENT: std::time::Duration = std::time::Duration::from_secs(10);

/// The server side of HTTPS: a certificate and its key.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// A certificate chain and its private key from PEM files (as a CA or
    /// `certbot` writes them).
    pub fn from_pem(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
        if chain.is_empty() {
            anyhow::bail!("{} holds no certificate", cert.display());
        }
        let key = PrivateKeyDer::from_pem_file(key)
            .with_context(|| format!("cannot read a private key from {}", key.display()))?;
        Self::new(chain, key)
    }

    /// A certificate made up now for `names` (host names or addresses),
    /// which browsers accept once told to trust it: for trying HTTPS
    /// without a CA. Returns its SHA-256 fingerprint too, to check it by.
    pub fn self_signed(names: Vec<String>) -> anyhow::Result<(Self, String)> {
        let made = rcgen::generate_simple_self_signed(names)
            .context("cannot generate a self-signed certificate")?;
        let der = made.cert.der().clone();
        let fingerprint = fingerprint(&der);
        let key = PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
        Ok((Self::new(vec![der], key)?, fingerprint))
    }

    /// A certificate chain and its private key, DER-encoded.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("no TLS versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("the certificate and the key do not go together")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// A certificate's SHA-256, as hex pairs separated by colons (how browsers
/// show it).
fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Whether plain HTTP is answered for `peer`: always without TLS, and with
/// it only on loopback (the one place it cannot be overheard).
fn plain_allowed(tls: bool, peer: SocketAddr) -> bool {
    !tls || peer.ip().to_canonical().is_loopback()
}

/// Serves one accepted connection with `service`: over TLS when it starts
/// a handshake and `tls` is set, as plain HTTP when there is no `tls` or
/// the peer is on loopback, else refused with a one-line 400.
pub async fn serve_connection<S>(stream: TcpStream, peer: SocketAddr, tls: Option<Tls>, service: S)
where
    S: tower_service::Service<
            http::Request<hyper::body::Incoming>,
            Response = warp::reply::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let mut first = [0u8; 1];
    // A peer that connects and sends nothing is dropped.
    let Ok(Ok(1)) = tokio::time::timeout(SLOW_CLIENT, stream.peek(&mut first)).await else {
        return;
    };
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(SLOW_CLIENT);
    let service = hyper_util::service::TowerToHyperService::new(service);
    match tls {
        Some(tls) if first[0] == TLS_HANDSHAKE => {
            let Ok(Ok(stream)) =
                tokio::time::timeout(SLOW_CLIENT, tls.acceptor.accept(stream)).await
            else {
                // A failed handshake (an untrusted certificate, a scanner)
                // is the peer's to report.
                return;
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = builder.serve_connection_with_upgrades(io, service).await;
        }
        Some(_) if !plain_allowed(true, peer) => {
            let mut stream = stream;
            let body = "this gateway answers HTTPS off localhost: use https://\n";
            let reply = format!(
                "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
        }
        _ => {
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = builder.serve_connection_with_upgrades(io, service).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_read_as_browsers_show_them() {
        let text = fingerprint(b"");
        assert!(text.starts_with("E3:B0:C4:42"), "{text}");
        assert_eq!(text.len(), 32 * 3 - 1);
    }

    #[test]
    fn plain_http_stays_on_loopback() {
        let at = |addr: &str| addr.parse::<SocketAddr>().unwrap();
        assert!(plain_allowed(false, at("192.0.2.7:5000")));
        assert!(plain_allowed(true, at("127.0.0.1:5000")));
        assert!(plain_allowed(true, at("[::1]:5000")));
        assert!(plain_allowed(true, at("[::ffff:127.0.0.1]:5000")));
        assert!(!plain_allowed(true, at("192.0.2.7:5000")));
        assert!(!plain_allowed(true, at("[2001:db8::1]:5000")));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("moq-gateway-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = Tls::from_pem(&empty, &empty).unwrap_err();
        assert!(format!("{err:#}").contains("empty.pem"), "{err:#}");
        let err = Tls::from_pem(&dir.join("none.pem"), &empty).unwrap_err();
        assert!(format!("{err:#}").contains("none.pem"), "{err:#}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
