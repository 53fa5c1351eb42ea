//! `test-cert DIR`: writes `DIR/cert.pem` and `DIR/key.pem`, a self-signed certificate for
//! `localhost`, `127.0.0.1` and `::1` valid from yesterday for 30 days, and prints one JSON line
//! `{"cert", "key", "spki"}`: the files' paths and the base64 SHA-256 of the certificate's
//! public key, what Chromium's `--ignore-certificate-errors-spki-list` takes.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: test-cert DIR");
        return ExitCode::from(2);
    };
    let dir = std::path::PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("test-cert: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    match tether_tests::cert::write(&dir, &tether_tests::cert::LOCAL_NAMES) {
        Ok(c) => {
            let line = serde_json::json!({"cert": c.cert, "key": c.key, "spki": c.spki});
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("test-cert: {e}");
            ExitCode::FAILURE
        }
    }
}
