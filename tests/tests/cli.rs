//! The `tether` CLI (#19): the real binary (built by `cargo build -p tether-cli`) against a
//! real relay and scripted devices: devices, post, call with `--all`, a device's error,
//! `--timeout`, a wrong secret and no relay at all, and `replay` (history JSON and HAR, same,
//! different, `--ignore`, a malformed file), each with the exit code a script relies on.

use serde_json::{Value, json};
use std::process::Stdio;
use tether_tests::{Client, Relay, WAIT, built_binary};

const SECRET: &str = "cli-secret-0123456789abcdef";

/// What one run of `tether` ended with.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

/// Starts `tether --relay http://ADDR --room ROOM --secret SECRET ARGS…` (no env of the caller's).
fn tether(relay: &str, room: &str, secret: &str, args: &[&str]) -> tokio::task::JoinHandle<Run> {
    let mut cmd = tokio::process::Command::new(built_binary("tether", "tether-cli"));
    cmd.env_remove("TETHER_RELAY")
        .env_remove("TETHER_ROOM")
        .env_remove("TETHER_SECRET")
        .args(["--relay", relay, "--room", room, "--secret", secret])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    tokio::spawn(async move {
        let out = tokio::time::timeout(WAIT, cmd.output())
            .await
            .expect("tether ended in time")
            .expect("tether runs");
        Run {
            code: out.status.code().expect("an exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
}

fn url(relay: &Relay) -> String {
    format!("http://{}", relay.addr)
}

/// A device of `room` that said its name.
async fn device(relay: &Relay, room: &str, name: &str) -> Client {
    let mut d = relay.join(room, "device", SECRET).await;
    d.send(json!({"type": "hello", "msg": {"name": name}})).await;
    d
}

#[tokio::test]
async fn devices_post_and_history_print_json_and_exit_0() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "cli", "Pixel 8").await;
    let run = tether(&url(&relay), "cli", SECRET, &["devices"]).await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let members = run.json()["members"].as_array().unwrap().clone();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0]["id"], dev.member.as_str());

    let pending = tether(
        &url(&relay),
        "cli",
        SECRET,
        &[
            "post",
            "--method",
            "POST",
            "--body",
            r#"{"n": 1}"#,
            "--header",
            "X-Trace: 7",
            "https://api.example/v1/me",
        ],
    );
    let req = dev.expect("post").await;
    assert_eq!(
        req["msg"],
        json!({"url": "https://api.example/v1/me", "method": "POST", "body": {"n": 1},
               "headers": {"X-Trace": "7"}, "timeoutMs": 30000})
    );
    dev.send(tether_tests::reply_to(&req, json!({"status": 200, "body": {"uid": 42}}))).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reply = run.json();
    assert_eq!((reply["type"].as_str(), reply["deviceName"].as_str()), (Some("postCb"), Some("Pixel 8")));
    assert_eq!(reply["result"]["body"]["uid"], 42);

    // The short human form.
    let pending = tether(&url(&relay), "cli", SECRET, &["--pretty", "post", "https://api.example/v1/me"]);
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, json!({"status": 200, "body": {"uid": 42}}))).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("Pixel 8 (") && run.stdout.contains(r#"200 {"uid":42}"#),
        "{}",
        run.stdout
    );

    let run = tether(&url(&relay), "cli", SECRET, &["history", "--limit", "1"]).await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = run.json();
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["url"], "https://api.example/v1/me");
    let run = tether(&url(&relay), "cli", SECRET, &["history", "--har"]).await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["log"]["entries"].as_array().map(Vec::len), Some(2));
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
    relay.stop().await;
}

#[tokio::test]
async fn call_with_all_prints_every_devices_reply() {
    let relay = Relay::start().await;
    let mut ios = device(&relay, "all", "iPhone").await;
    let mut android = device(&relay, "all", "Android").await;
    let pending = tether(&url(&relay), "all", SECRET, &["call", "--all", "login", r#"["qq"]"#]);
    let (a, b) = (ios.expect("call").await, android.expect("call").await);
    assert_eq!(a["msg"], json!({"method": "login", "params": ["qq"], "timeoutMs": 30000}));
    ios.send(tether_tests::reply_to(&a, json!("ios"))).await;
    android.send(tether_tests::reply_to(&b, json!("android"))).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v = run.json();
    let got: Vec<(&str, &str)> = v["replies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["deviceName"].as_str().unwrap(), r["result"].as_str().unwrap()))
        .collect();
    assert_eq!(got, [("iPhone", "ios"), ("Android", "android")]);
    relay.stop().await;
}

#[tokio::test]
async fn a_devices_own_error_exits_1_with_its_reply_on_stdout() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "err", "Pixel").await;
    let pending = tether(&url(&relay), "err", SECRET, &["call", "--to", &dev.member, "login"]);
    let req = dev.expect("call").await;
    assert_eq!(req["msg"], json!({"method": "login", "params": [], "timeoutMs": 30000}));
    dev.send(json!({"type": "callCb", "id": req["id"], "msg": {"method": "login", "result": null,
        "error": "refused: login is not allowed"}}))
        .await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.json()["error"], "refused: login is not allowed");
    relay.stop().await;
}

#[tokio::test]
async fn the_relays_refusals_exit_3_with_its_error_on_stderr() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "no", "Pixel").await;

    // A wrong secret.
    let run = tether(&url(&relay), "no", "not-the-secret", &["devices"]).await.unwrap();
    assert_eq!(run.code, 3, "{}", run.stderr);
    let err: Value = serde_json::from_str(run.stderr.trim()).expect("stderr is JSON");
    assert_eq!((err["status"].as_u64(), err["error"]["code"].as_str()), (Some(401), Some("unauthorized")));
    assert!(run.stdout.is_empty() && !run.stderr.contains("not-the-secret"), "{}", run.stderr);

    // A device that does not answer within --timeout.
    let pending = tether(&url(&relay), "no", SECRET, &["--timeout", "300", "call", "getAppInfo"]);
    let req = dev.expect("call").await;
    assert_eq!(req["msg"]["timeoutMs"], 300);
    let run = pending.await.unwrap();
    assert_eq!(run.code, 3, "{}", run.stderr);
    let err: Value = serde_json::from_str(run.stderr.trim()).expect("stderr is JSON");
    assert_eq!((err["status"].as_u64(), err["error"]["code"].as_str()), (Some(504), Some("timeout")));

    // No such device.
    let run = tether(&url(&relay), "no", SECRET, &["post", "--to", "d-nobody", "https://x/"]).await.unwrap();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("no_target"), "{}", run.stderr);
    relay.stop().await;
}

#[tokio::test]
async fn usage_errors_exit_2_and_no_relay_exits_4() {
    // A port nobody listens on: bind one, note it, let it go.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let run = tether(&format!("http://{free}"), "r", SECRET, &["devices"]).await.unwrap();
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.stderr.contains("unreachable") && !run.stderr.contains(SECRET), "{}", run.stderr);

    let run = tether(&format!("http://{free}"), "r", SECRET, &["call", "login", "{not json"]).await.unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run = tether(&format!("http://{free}"), "r", SECRET, &["nonsense"]).await.unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    // Not an http:// or https:// URL; --cacert for a plain relay (https:// is tests/tls.rs's).
    let run = tether("ftp://relay.example", "r", SECRET, &["devices"]).await.unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    let run =
        tether(&format!("http://{free}"), "r", SECRET, &["--cacert", "/dev/null", "devices"]).await.unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--cacert is for https:// relays"), "{}", run.stderr);
}

/// Answers one replayed post, then one replayed call, with these results.
async fn answer_replay(dev: &mut Client, post: Value, call: Value) {
    let req = dev.expect("post").await;
    assert_eq!(
        req["msg"],
        json!({"url": "https://api.example/v1/me", "method": "GET", "headers": {"X-Trace": "7"},
               "timeoutMs": 30000})
    );
    dev.send(tether_tests::reply_to(&req, post)).await;
    let req = dev.expect("call").await;
    assert_eq!(req["msg"], json!({"method": "getAppInfo", "params": ["v"], "timeoutMs": 30000}));
    dev.send(tether_tests::reply_to(&req, call)).await;
}

#[tokio::test]
async fn replay_re_runs_a_recording_and_reports_each_difference() {
    let relay = Relay::start().await;
    let r = url(&relay);
    let mut dev = device(&relay, "rep", "Pixel 8").await;
    let me = json!({"status": 200, "body": {"uid": 42, "time": 1}});
    let info = json!({"v": "7.2"});

    // Record a post and a call.
    let pending =
        tether(&r, "rep", SECRET, &["post", "-X", "GET", "-H", "X-Trace: 7", "https://api.example/v1/me"]);
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, me.clone())).await;
    assert_eq!(pending.await.unwrap().code, 0);
    let pending = tether(&r, "rep", SECRET, &["call", "getAppInfo", r#"["v"]"#]);
    let req = dev.expect("call").await;
    dev.send(tether_tests::reply_to(&req, info.clone())).await;
    assert_eq!(pending.await.unwrap().code, 0);

    let dir = tempfile::tempdir().unwrap();
    let (json_file, har_file, bad_file) =
        (dir.path().join("h.json"), dir.path().join("h.har"), dir.path().join("bad.json"));
    let run = tether(&r, "rep", SECRET, &["history"]).await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::write(&json_file, &run.stdout).unwrap();
    let run = tether(&r, "rep", SECRET, &["history", "--har"]).await.unwrap();
    assert_eq!(run.code, 0, "{}", run.stderr);
    std::fs::write(&har_file, &run.stdout).unwrap();
    let (json_file, har_file) = (json_file.to_str().unwrap(), har_file.to_str().unwrap());

    // The device answers the same: exit 0, oldest first.
    let pending = tether(&r, "rep", SECRET, &["replay", json_file]);
    answer_replay(&mut dev, me.clone(), info.clone()).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!((v["replayed"].as_u64(), v["differing"].as_u64()), (Some(2), Some(0)), "{v}");
    assert_eq!(v["results"][0]["type"], "post");
    assert_eq!(v["results"][1]["target"], "getAppInfo");

    // Differently: exit 1, the difference named by its path.
    let changed = json!({"status": 200, "body": {"uid": 42, "time": 2}});
    let pending = tether(&r, "rep", SECRET, &["replay", json_file]);
    answer_replay(&mut dev, changed.clone(), info.clone()).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    let v = run.json();
    assert_eq!(v["differing"], 1, "{v}");
    assert_eq!(
        v["results"][0]["differences"],
        json!([{"path": "result.body.time", "recorded": 1, "now": 2}])
    );
    assert_eq!(v["results"][1]["same"], true);

    // The short human form.
    let pending = tether(&r, "rep", SECRET, &["--pretty", "replay", json_file]);
    answer_replay(&mut dev, changed.clone(), info.clone()).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("result.body.time: 1 -> 2"), "{}", run.stdout);

    // --ignore lets that field vary.
    let pending = tether(&r, "rep", SECRET, &["replay", "--ignore", "result.body.time", json_file]);
    answer_replay(&mut dev, changed.clone(), info.clone()).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);

    // The HAR form: the same, then a device error where the recording had none.
    let pending = tether(&r, "rep", SECRET, &["replay", "--ignore", "result.body.*", har_file]);
    answer_replay(&mut dev, changed.clone(), info.clone()).await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 0, "{} {}", run.stdout, run.stderr);
    assert_eq!(run.json()["replayed"], 2);
    let pending = tether(&r, "rep", SECRET, &["replay", har_file]);
    let req = dev.expect("post").await;
    dev.send(tether_tests::reply_to(&req, me.clone())).await;
    let req = dev.expect("call").await;
    dev.send(json!({"type": "callCb", "id": req["id"], "msg": {"method": "getAppInfo", "result": null,
        "error": "refused"}}))
        .await;
    let run = pending.await.unwrap();
    assert_eq!(run.code, 1, "{} {}", run.stdout, run.stderr);
    let diffs = run.json()["results"][1]["differences"].clone();
    assert!(
        diffs.as_array().unwrap().contains(&json!({"path": "error", "recorded": null, "now": "refused"})),
        "{diffs}"
    );

    // A file of no known shape: exit 2, naming the entry; nothing is sent.
    std::fs::write(&bad_file, r#"[{"type": "call", "method": "m"}, {"type": "post"}]"#).unwrap();
    let run = tether(&r, "rep", SECRET, &["replay", bad_file.to_str().unwrap()]).await.unwrap();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("entry 1") && run.stdout.is_empty(), "{}", run.stderr);
    relay.stop().await;
}
