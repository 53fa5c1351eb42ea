//! Every input the fuzzers found a problem with (`fuzz/regressions/<target>/`) and every seed
//! they start from (`fuzz/seeds/<target>/`), run through the fuzz targets' own checks on the
//! stable toolchain, so a fixed finding stays fixed. How the fuzzers run: docs/reliability.md.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of the target's folders; returns how many there were.
fn run(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut n = 0;
    for dir in ["regressions", "seeds"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.expect("folder entry").path();
            if path.file_name().is_some_and(|f| f.to_string_lossy().starts_with('.')) {
                continue;
            }
            let data = std::fs::read(&path).expect("readable input");
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails its check again", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn envelope_inputs_pass() {
    assert!(run("envelope", checks::envelope) > 0, "no saved envelope inputs found");
}

#[test]
fn xmlrpc_inputs_pass() {
    assert!(run("xmlrpc", checks::xmlrpc) > 0, "no saved XML-RPC inputs found");
}

#[test]
fn alarm_inputs_pass() {
    assert!(run("alarm", checks::alarm) > 0, "no saved alarm inputs found");
}
