//! `/sdk/`: the npm package `tether-sdk`, for pages on any origin (the app's own H5 pages load
//! it from here: `import … from "https://RELAY/sdk/index.js"`, or the classic loader
//! `<script src="https://RELAY/sdk/tether.js">`).
//!
//! The package is read once, when the relay starts (it is small: a cap of [`MAX_BYTES`]), and
//! served from memory:
//! - every answer carries `Access-Control-Allow-Origin: *` and `Cross-Origin-Resource-Policy:
//!   cross-origin` (the files are public and carry no credentials: a page on any origin, also
//!   one with `Cross-Origin-Embedder-Policy`, may load them), the type browsers insist on
//!   (`application/wasm` for `WebAssembly.instantiateStreaming`, `text/javascript` for module
//!   scripts) and a strong `ETag` (its content's SHA-256), answered `304` on `If-None-Match`;
//! - `/sdk/FILE` is the entry point and may change with the next relay: `Cache-Control:
//!   no-cache` (revalidated at every load, a `304` when unchanged);
//! - `/sdk/@BUILD/FILE` is the same file under this package's build id (a hash of every file):
//!   `immutable`, cached for a year. The classic loader (`tether.js`, in which the relay writes
//!   the build id) loads everything from there; another build id is `404`, so a page never mixes
//!   two builds' files.
//!
//! The relay's own pages keep their Content-Security-Policy ([`super::pages`]); it is sent
//! here too, where browsers ignore it (a script's policy is its page's).

use super::AppError;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

use super::AppState;

/// The most the package may hold in all; a folder past it is not served (and the relay says so).
pub const MAX_BYTES: u64 = 32 * 1024 * 1024;
/// The most files it may hold.
pub const MAX_FILES: usize = 512;
/// In `tether.js`, replaced by the build id as the relay reads it.
const BUILD_MARK: &str = "__TETHER_BUILD__";

/// The package as served.
pub struct SdkFiles {
    /// A hash of every file (path and content), 16 hex digits; empty when there is no package.
    build: String,
    files: HashMap<String, SdkFile>,
}

struct SdkFile {
    bytes: Bytes,
    etag: HeaderValue,
    mime: &'static str,
}

impl SdkFiles {
    /// Reads the package in `dir`. A folder that is missing, unreadable or too large gives an
    /// empty package (every `/sdk/` path is `404`) and a warning, not a relay that fails to
    /// start: the relay's other parts do not need it.
    pub fn load(dir: &std::path::Path) -> SdkFiles {
        match read_all(dir) {
            Ok(raw) => SdkFiles::from_files(raw),
            Err(why) => {
                tracing::warn!(
                    "/sdk/ is not served: {why} (build it with scripts/build-sdk, or give --sdk DIR)"
                );
                SdkFiles { build: String::new(), files: HashMap::new() }
            }
        }
    }

    /// The package from `(path, content)` pairs (paths relative, `/`-separated).
    pub fn from_files(mut raw: Vec<(String, Vec<u8>)>) -> SdkFiles {
        raw.sort();
        let mut all = Sha256::new();
        for (path, bytes) in &raw {
            all.update((path.len() as u64).to_le_bytes());
            all.update(path.as_bytes());
            all.update(Sha256::digest(bytes));
        }
        let build = crate::util::hex(&all.finalize()[..8]);
        let files = raw
            .into_iter()
            .map(|(path, bytes)| {
                let bytes = if path == "tether.js" {
                    String::from_utf8_lossy(&bytes).replace(BUILD_MARK, &build).into_bytes()
                } else {
                    bytes
                };
                let etag = format!("\"{}\"", crate::util::hex(&Sha256::digest(&bytes)[..12]));
                let file = SdkFile {
                    etag: HeaderValue::from_str(&etag).expect("hex is a header value"),
                    mime: mime(&path),
                    bytes: Bytes::from(bytes),
                };
                (path, file)
            })
            .collect();
        SdkFiles { build, files }
    }

    /// The build id (empty when no package is served).
    pub fn build(&self) -> &str {
        &self.build
    }
}

/// Every file under `dir`, with its path relative to it, within the caps.
fn read_all(dir: &std::path::Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut out = Vec::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| format!("{}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("{}: {e}", d.display()))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?;
            if kind.is_dir() {
                stack.push(path);
                continue;
            }
            if !kind.is_file() {
                // Symlinks and the rest are not served (nothing outside the folder is): said,
                // so a package that holds links is not a silent 404.
                tracing::warn!("/sdk/: {} is not a regular file; not served", path.display());
                continue;
            }
            let rel = path.strip_prefix(dir).map_err(|e| e.to_string())?;
            let Some(rel) = rel.to_str().map(|r| r.replace(std::path::MAIN_SEPARATOR, "/")) else {
                continue;
            };
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            total += bytes.len() as u64;
            if total > MAX_BYTES || out.len() >= MAX_FILES {
                return Err(format!(
                    "{} holds more than {MAX_FILES} files or {MAX_BYTES} bytes: is it the package?",
                    dir.display()
                ));
            }
            out.push((rel, bytes));
        }
    }
    if out.is_empty() {
        return Err(format!("{} is empty", dir.display()));
    }
    Ok(out)
}

/// The content type of a package file.
fn mime(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "ts" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// How long a browser may keep a file: the entry points are revalidated at every load, a
/// build's own paths are kept for a year.
const REVALIDATE: &str = "no-cache";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// `GET /sdk/{*path}` (and `HEAD`).
pub(super) async fn file(
    State(s): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let sdk = &s.sdk;
    let (name, cache) = match path.strip_prefix('@') {
        Some(rest) => match rest.split_once('/') {
            Some((build, name)) if !sdk.build.is_empty() && build == sdk.build => (name, IMMUTABLE),
            _ => {
                let message = "no such build of the SDK on this relay (it was updated): reload the page";
                return cross_origin(
                    AppError::new(StatusCode::NOT_FOUND, "not_found", message).into_response(),
                );
            }
        },
        None => (path.as_str(), REVALIDATE),
    };
    let Some(f) = sdk.files.get(name) else {
        let message = format!("no file {name:?} in the SDK package");
        return cross_origin(AppError::new(StatusCode::NOT_FOUND, "not_found", message).into_response());
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == f.etag));
    let mut resp =
        if fresh { StatusCode::NOT_MODIFIED.into_response() } else { f.bytes.clone().into_response() };
    let h = resp.headers_mut();
    if !fresh {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(f.mime));
    }
    h.insert(header::ETAG, f.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    cross_origin(resp)
}

/// The headers that let any origin load a file.
fn cross_origin(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("cross-origin"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn package() -> SdkFiles {
        SdkFiles::from_files(vec![
            ("index.js".into(), b"import './tether_sdk.js';".to_vec()),
            ("tether.js".into(), b"var BUILD = \"__TETHER_BUILD__\";".to_vec()),
            ("tether_sdk_bg.wasm".into(), b"\0asm".to_vec()),
            ("snippets/x/hooks.js".into(), b"export {}".to_vec()),
        ])
    }

    #[test]
    fn the_build_id_follows_every_file_and_is_written_into_the_loader() {
        let a = package();
        assert_eq!(a.build.len(), 16);
        let loader = String::from_utf8(a.files["tether.js"].bytes.to_vec()).unwrap();
        assert_eq!(loader, format!("var BUILD = \"{}\";", a.build));
        assert_eq!(package().build, a.build, "the same files, the same id");
        let mut changed = vec![
            ("index.js".into(), b"import './tether_sdk.js';".to_vec()),
            ("tether.js".into(), b"var BUILD = \"__TETHER_BUILD__\";".to_vec()),
            ("tether_sdk_bg.wasm".into(), b"\0asm\x01".to_vec()),
            ("snippets/x/hooks.js".into(), b"export {}".to_vec()),
        ];
        assert_ne!(SdkFiles::from_files(changed.clone()).build, a.build, "one byte of the wasm");
        changed.truncate(3);
        assert_ne!(SdkFiles::from_files(changed).build, a.build, "a file less");
    }

    #[test]
    fn types_are_what_browsers_insist_on() {
        let p = package();
        assert_eq!(p.files["tether_sdk_bg.wasm"].mime, "application/wasm");
        assert_eq!(p.files["index.js"].mime, "text/javascript; charset=utf-8");
        assert_eq!(p.files["snippets/x/hooks.js"].mime, "text/javascript; charset=utf-8");
        assert_eq!(mime("README.md"), "text/markdown; charset=utf-8");
        assert_eq!(mime("size.json"), "application/json");
        assert_eq!(mime("LICENSE"), "application/octet-stream");
    }

    #[test]
    fn a_missing_or_empty_folder_serves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SdkFiles::load(dir.path()).files.is_empty());
        assert!(SdkFiles::load(&dir.path().join("nope")).build.is_empty());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.js"), "x").unwrap();
        std::fs::write(dir.path().join("index.js"), "y").unwrap();
        let p = SdkFiles::load(dir.path());
        let mut names: Vec<&str> = p.files.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["index.js", "sub/a.js"]);
    }
}
