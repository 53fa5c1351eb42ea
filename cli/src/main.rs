//! `tether`: drive a room's devices from a script, through the relay's HTTP API
//! (docs/protocol.md, "The HTTP API"). JSON on stdout; exit codes a script can rely on:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | a device answered with an error (with `--all`: any entry is an error); `replay`: a reply differs from the recorded one |
//! | 2 | usage error (bad flags, bad JSON in an argument; `replay`: a file of no known shape) |
//! | 3 | the relay refused or failed: its `{"error": {"code", "message"}}` on stderr |
//! | 4 | the relay cannot be reached (or did not answer in time) |
//!
//! `http://` or `https://` relays (rustls: the public roots, plus `--cacert` for a LAN relay's
//! own certificate; certificates and names are always checked). The secret goes in the
//! `Authorization` header and is never printed. `tether mcp` serves the same routes as
//! MCP tools on stdio ([`mcp`]); [`client`] is the API as both use it.

use clap::{Args, Parser, Subcommand};
use client::{Api, Failure, Relay};
use serde_json::{Map, Value, json};
use std::process::ExitCode;

mod client;
mod mcp;
mod replay;

#[derive(Parser)]
#[command(name = "tether", version, about = "Drive a Tether room's devices from scripts (JSON on stdout).")]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Global {
    /// The relay's base URL, http:// or https://.
    #[arg(long, global = true, env = "TETHER_RELAY", default_value = "http://127.0.0.1:8080")]
    relay: String,
    /// For an https:// relay: trust the certificate(s) in this PEM file too (a LAN relay's
    /// self-signed one), besides the public roots. Names are checked all the same.
    #[arg(long, global = true, env = "TETHER_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
    /// The room.
    #[arg(long, global = true, env = "TETHER_ROOM")]
    room: Option<String>,
    /// The room's PC secret (sent as a Bearer token, never printed).
    #[arg(long, global = true, env = "TETHER_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// How long the relay waits for the devices, in ms (the API's `timeoutMs`; 1..=600000).
    #[arg(long, global = true, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=600_000))]
    timeout: Option<u64>,
    /// A short human form instead of JSON.
    #[arg(long, global = true)]
    pretty: bool,
}

#[derive(Subcommand)]
enum Command {
    /// The room's member list.
    Devices,
    /// One request through the phone's native network stack.
    Post {
        /// One device (a member id from `devices`); default: every device, first reply wins.
        #[arg(long)]
        to: Option<String>,
        /// Wait for every device's reply (`{"replies": [...]}`).
        #[arg(long)]
        all: bool,
        /// The HTTP method (the device's default when absent).
        #[arg(long, short = 'X')]
        method: Option<String>,
        /// The request body, as JSON (a string body: '"a=b"').
        #[arg(long, short = 'd', value_name = "JSON")]
        body: Option<String>,
        /// A request header, `Name: value` (repeatable).
        #[arg(long, short = 'H', value_name = "K:V")]
        header: Vec<String>,
        /// The URL the device requests.
        url: String,
    },
    /// One native JS-API call.
    Call {
        /// One device (a member id from `devices`); default: every device, first reply wins.
        #[arg(long)]
        to: Option<String>,
        /// Wait for every device's reply (`{"replies": [...]}`).
        #[arg(long)]
        all: bool,
        /// The JS-API method.
        method: String,
        /// Its parameters, a JSON array (default `[]`).
        params: Option<String>,
    },
    /// The room's stored pairs, newest first.
    History {
        /// At most this many pairs.
        #[arg(long)]
        limit: Option<u32>,
        /// As HAR 1.2 instead of JSON.
        #[arg(long)]
        har: bool,
    },
    /// Re-run recorded posts and calls, one at a time, oldest first; report each reply that
    /// differs from the recorded one (exit 1 on any difference).
    Replay {
        /// `tether history` output, `tether history --har` output, or a hand-written JSON array
        /// of `{"type": "post", "url", …}` / `{"type": "call", "method", "params"?}`.
        file: std::path::PathBuf,
        /// One device (a member id from `devices`); default: every device, first reply wins.
        #[arg(long)]
        to: Option<String>,
        /// A JSON path not to compare, dotted, `*` for any key or index (repeatable), e.g.
        /// `result.body.time`, `cookie`.
        #[arg(long, value_name = "PATH")]
        ignore: Vec<String>,
    },
    /// An MCP server on stdio (for AI agents): the tools `devices`, `post`, `call` and
    /// `history`, acting on the room with its PC secret. The phone's Guard still decides
    /// what runs on it.
    Mcp {
        /// Show the devices' cookies to the agent (withheld by default: they are the phone
        /// user's logged-in sessions).
        #[arg(long)]
        show_cookies: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(msg)) => {
            eprintln!("tether: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Relay(err)) => {
            eprintln!("{err}");
            ExitCode::from(3)
        }
        Err(Failure::Unreachable(msg)) => {
            eprintln!("{}", json!({"error": {"code": "unreachable", "message": msg}}));
            ExitCode::from(4)
        }
    }
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let g = &cli.global;
    let relay = Relay::parse(&g.relay, g.cacert.as_deref())?;
    let room =
        g.room.as_deref().ok_or_else(|| Failure::Usage("--room (or TETHER_ROOM) is required".into()))?;
    let secret = g
        .secret
        .as_deref()
        .ok_or_else(|| Failure::Usage("--secret (or TETHER_SECRET) is required".into()))?;
    let api = Api::new(relay, room, secret);
    match &cli.command {
        Command::Devices => {
            print(&api.devices().await?, g.pretty, pretty_devices);
            Ok(0)
        }
        Command::History { limit, har } => {
            let v = api.history(*limit, *har).await?;
            print(&v, g.pretty && !har, pretty_history);
            Ok(0)
        }
        Command::Post { to, all, method, body, header, url } => {
            let mut req = Map::new();
            req.insert("url".into(), json!(url));
            if let Some(m) = method {
                req.insert("method".into(), json!(m));
            }
            if let Some(b) = body {
                let b: Value = serde_json::from_str(b).map_err(|e| {
                    Failure::Usage(format!("--body is not JSON ({e}); a string body: '\"…\"'"))
                })?;
                req.insert("body".into(), b);
            }
            if !header.is_empty() {
                let mut headers = Map::new();
                for h in header {
                    let (k, v) = h
                        .split_once(':')
                        .ok_or_else(|| Failure::Usage(format!("--header {h:?} is not `Name: value`")))?;
                    headers.insert(k.trim().to_owned(), json!(v.trim()));
                }
                req.insert("headers".into(), Value::Object(headers));
            }
            send_request(&api, "post", req, to, *all, g).await
        }
        Command::Call { to, all, method, params } => {
            let mut req = Map::new();
            req.insert("method".into(), json!(method));
            if let Some(p) = params {
                let p: Value = serde_json::from_str(p)
                    .map_err(|e| Failure::Usage(format!("PARAMS_JSON is not JSON ({e})")))?;
                if !p.is_array() {
                    return Err(Failure::Usage("PARAMS_JSON must be a JSON array, e.g. '[\"qq\"]'".into()));
                }
                req.insert("params".into(), p);
            }
            send_request(&api, "call", req, to, *all, g).await
        }
        Command::Replay { file, to, ignore } => run_replay(&api, file, to, ignore, g).await,
        Command::Mcp { show_cookies } => {
            mcp::serve(api, g.timeout, *show_cookies).await.map_err(Failure::Usage)?;
            Ok(0)
        }
    }
}

/// `tether replay`: each entry through the API in turn, compared with its recording.
async fn run_replay(
    api: &Api,
    file: &std::path::Path,
    to: &Option<String>,
    ignore: &[String],
    g: &Global,
) -> Result<u8, Failure> {
    let text =
        std::fs::read_to_string(file).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let plan = replay::parse(&text).map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let mut results = Vec::new();
    let mut differing = 0;
    for entry in &plan.entries {
        let mut req = entry.request.clone();
        if let Some(to) = to {
            req.insert("to".into(), json!(to));
        }
        if let Some(ms) = g.timeout {
            req.insert("timeoutMs".into(), json!(ms));
        }
        let reply = api.request(entry.kind, req).await?;
        let recorded = Value::Object(entry.recorded.clone());
        let now = Value::Object(entry.now(&reply));
        let differences = replay::differences(&recorded, &now, ignore);
        if !differences.is_empty() {
            differing += 1;
        }
        results.push(json!({
            "index": entry.index, "type": entry.kind, "target": entry.target(),
            "same": differences.is_empty(), "differences": differences,
        }));
    }
    let out = json!({
        "replayed": plan.entries.len(), "skipped": plan.skipped, "differing": differing, "results": results,
    });
    print(&out, g.pretty, pretty_replay);
    Ok(if differing > 0 { 1 } else { 0 })
}

fn pretty_replay(v: &Value) -> String {
    let mut out = String::new();
    for r in v["results"].as_array().into_iter().flatten() {
        let verdict = if r["same"] == true { "same" } else { "DIFFERS" };
        out.push_str(&format!("#{} {} {}: {verdict}\n", r["index"], text(&r["type"]), text(&r["target"])));
        for d in r["differences"].as_array().into_iter().flatten() {
            let side = |k: &str| d.get(k).map_or_else(|| "(absent)".to_owned(), Value::to_string);
            out.push_str(&format!("  {}: {} -> {}\n", text(&d["path"]), side("recorded"), side("now")));
        }
    }
    out.push_str(&format!(
        "{} replayed, {} differing, {} skipped\n",
        v["replayed"], v["differing"], v["skipped"]
    ));
    out
}

/// Sends a `post` or `call`, prints the answer; exit 1 when a device's answer is an error.
async fn send_request(
    api: &Api,
    kind: &str,
    mut req: Map<String, Value>,
    to: &Option<String>,
    all: bool,
    g: &Global,
) -> Result<u8, Failure> {
    if let Some(to) = to {
        req.insert("to".into(), json!(to));
    }
    if all {
        req.insert("all".into(), json!(true));
    }
    if let Some(ms) = g.timeout {
        req.insert("timeoutMs".into(), json!(ms));
    }
    let v = api.request(kind, req).await?;
    print(&v, g.pretty, pretty_replies);
    Ok(if client::failed(&v) { 1 } else { 0 })
}

fn print(v: &Value, pretty: bool, human: fn(&Value) -> String) {
    if pretty {
        print!("{}", human(v));
    } else {
        println!("{v}");
    }
}

fn pretty_devices(v: &Value) -> String {
    let mut out = String::new();
    for m in v["members"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or("-");
        out.push_str(&format!("{}\t{}\t{name}\n", text(&m["id"]), text(&m["role"])));
    }
    if out.is_empty() {
        out.push_str("(no members)\n");
    }
    out
}

fn pretty_replies(v: &Value) -> String {
    match v.get("replies").and_then(Value::as_array) {
        Some(replies) => replies.iter().map(pretty_reply).collect(),
        None => pretty_reply(v),
    }
}

fn pretty_reply(r: &Value) -> String {
    let who = match r["deviceName"].as_str() {
        Some(name) => format!("{name} ({})", text(&r["device"])),
        None => text(&r["device"]),
    };
    let ms = r["ms"].as_u64().map(|ms| format!(" {ms} ms")).unwrap_or_default();
    if r["type"] == "error" {
        return format!("{who}: error {}: {}\n", text(&r["error"]["code"]), text(&r["error"]["message"]));
    }
    if !r.get("error").is_none_or(Value::is_null) {
        return format!("{who}:{ms} error {}\n", text(&r["error"]));
    }
    let result = &r["result"];
    match result.get("status") {
        Some(status) => format!("{who}:{ms} {status} {}\n", result.get("body").unwrap_or(&Value::Null)),
        None => format!("{who}:{ms} {result}\n"),
    }
}

fn pretty_history(v: &Value) -> String {
    let mut out = String::new();
    for row in v.as_array().into_iter().flatten() {
        let what = row.get("url").or_else(|| row.get("method")).map(text).unwrap_or_default();
        let status = row["result"].get("status").map(|s| format!(" {s}")).unwrap_or_default();
        let err = if row.get("error").is_none_or(Value::is_null) { "" } else { " error" };
        out.push_str(&format!("{}\t{}\t{what}{status}{err}\n", text(&row["reqId"]), text(&row["type"])));
    }
    out
}

/// A string as it is, anything else as JSON.
fn text(v: &Value) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}
