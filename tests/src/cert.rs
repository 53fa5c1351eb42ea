//! Self-signed certificates for TLS tests (the relay's `--tls-cert`), and what Chromium's
//! `--ignore-certificate-errors-spki-list` takes to trust one: the base64 SHA-256 of its
//! public key (SubjectPublicKeyInfo).

use anyhow::Context as _;
use base64::Engine as _;
use rcgen::PublicKeyData as _;
use sha2::Digest as _;
use std::path::{Path, PathBuf};

/// A certificate and its key, as PEM files.
pub struct TestCert {
    /// The certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8).
    pub key: PathBuf,
    /// base64(SHA-256(SubjectPublicKeyInfo)), for Chromium's `--ignore-certificate-errors-spki-list`.
    pub spki: String,
}

/// The names the default test certificate is for.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Writes `dir/cert.pem` and `dir/key.pem`: a self-signed certificate (not a CA) for `names`
/// (host names or IP addresses), valid from yesterday for 30 days, with a fresh ECDSA P-256 key.
pub fn write(dir: &Path, names: &[&str]) -> anyhow::Result<TestCert> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Tether test relay");
    let yesterday = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_before = yesterday;
    params.not_after = yesterday + time::Duration::days(30);
    let cert = params.self_signed(&key)?;
    let spki =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(key.subject_public_key_info()));
    let out = TestCert { cert: dir.join("cert.pem"), key: dir.join("key.pem"), spki };
    for (path, text) in [(&out.cert, cert.pem()), (&out.key, key.serialize_pem())] {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(out)
}
