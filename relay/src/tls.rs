//! TLS on `--listen` (`--tls-cert`, `--tls-key`): the relay serves `https://` and `wss://`
//! itself, for a LAN without a proxy (public deployments terminate TLS in nginx,
//! docs/deploy.md). rustls with the ring provider; HTTP/1.1 only, as the relay serves no
//! HTTP/2. The handshake itself happens in each connection's task ([`crate::http::serve`]),
//! within the header timeout of the accept.

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
pub use tokio_rustls::TlsAcceptor;

/// Why the TLS files cannot be used; each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One of the two flags without the other.
    #[error("--tls-cert and --tls-key go together: {0} is missing")]
    Half(&'static str),
    /// A file that cannot be read or holds nothing of use.
    #[error("{flag} {}: {why}", path.display())]
    File { flag: &'static str, path: PathBuf, why: String },
    /// Both files read, but rustls cannot use them together.
    #[error("--tls-cert {} with --tls-key {}: {why}", cert.display(), key.display())]
    Pair { cert: PathBuf, key: PathBuf, why: String },
}

/// The acceptor for `--tls-cert` and `--tls-key`: `None` without them.
pub fn acceptor(config: &crate::Config) -> Result<Option<TlsAcceptor>, TlsError> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) => return Ok(None),
        (Some(_), None) => return Err(TlsError::Half("--tls-key")),
        (None, Some(_)) => return Err(TlsError::Half("--tls-cert")),
        (Some(c), Some(k)) => (c, k),
    };
    let chain = certificates(cert)?;
    let private = private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let pair = |why: String| TlsError::Pair { cert: cert.clone(), key: key.clone(), why };
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| pair(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                pair("the key is not the certificate's (its public key differs)".into())
            }
            other => pair(format!("the key cannot be used: {other}")),
        })?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(server))))
}

/// Reads `path` for `flag`.
fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        flag,
        path: path.to_owned(),
        why: format!("cannot read it: {e}"),
    })
}

/// The PEM certificate chain in `path` (`--tls-cert`), the server's own first.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |why: String| TlsError::File { flag: "--tls-cert", path: path.to_owned(), why };
    let bytes = read("--tls-cert", path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM file: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no certificate in it (want PEM `-----BEGIN CERTIFICATE-----` blocks)".into()));
    }
    Ok(chain)
}

/// The PEM private key in `path` (`--tls-key`): PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read("--tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::File {
        flag: "--tls-key",
        path: path.to_owned(),
        why: match e {
            pem::Error::NoItemsFound => "no private key in it (want PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or \
                                         `EC PRIVATE KEY`)"
                .into(),
            other => format!("not a PEM private key: {other}"),
        },
    })
}
