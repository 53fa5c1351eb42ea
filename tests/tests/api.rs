//! The HTTP API (#19): a room driven from a program, against a real relay and scripted devices
//! over real WebSockets: post, call, `all`, timeouts, refusals, a client that goes away
//! mid-request, the history as JSON and as HAR 1.2 (checked by a maintained validator).
//!
//! Over 500 lines: one test per behaviour of the API a script relies on, with the few helpers
//! they share.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tether_tests::{Client, Relay, WAIT, http_get_with, http_post, metric, post_json, wait_metric};
use tokio::io::AsyncWriteExt;

const SECRET: &str = "api-secret-0123456789abcdef";

/// `GET {path}` with the secret as a Bearer token (`None`: without one): status, JSON, headers.
async fn get(addr: SocketAddr, path: &str, secret: Option<&str>) -> (u16, Value, Vec<(String, String)>) {
    let auth = secret.map(|s| format!("Bearer {s}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, head, body) = http_get_with(addr, path, &headers).await;
    let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
    (status, v, head)
}

/// `POST /api/rooms/{room}/{what}` with `body`, as the room's PC secret's holder.
async fn api(addr: SocketAddr, room: &str, what: &str, body: Value) -> (u16, Value) {
    let (status, v, _) = post_json(addr, &format!("/api/rooms/{room}/{what}"), Some(SECRET), &body).await;
    (status, v)
}

/// The same, under way in a task while the test plays the devices.
fn api_task(addr: SocketAddr, room: &str, what: &str, body: Value) -> tokio::task::JoinHandle<(u16, Value)> {
    let (room, what) = (room.to_owned(), what.to_owned());
    tokio::spawn(async move { api(addr, &room, &what, body).await })
}

fn header<'a>(head: &'a [(String, String)], name: &str) -> Option<&'a str> {
    head.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Polls until `check` holds; panics after [`WAIT`] saying `what`.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The room's history (JSON), newest first.
async fn history(addr: SocketAddr, room: &str) -> Vec<Value> {
    let (status, v, _) = get(addr, &format!("/api/rooms/{room}/history"), Some(SECRET)).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().expect("an array").clone()
}

/// Checks `doc` against the HAR 1.2 JSON schema (`tests/har/validate.mjs`: Ajv and
/// `har-schema`, from the root package.json): `Ok` with the validator's line, `Err` with its
/// errors.
async fn validate_har(doc: &str) -> Result<String, String> {
    let mut child = tokio::process::Command::new("node")
        .arg("har/validate.mjs")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node runs (scripts/setup.sh installs it)");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(doc.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output()).await.expect("in time").unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    match out.status.code() {
        Some(0) => Ok(text(&out.stdout)),
        Some(1) => Err(text(&out.stderr)),
        _ => panic!("the HAR validator cannot run (npm ci at the repository root): {}", text(&out.stderr)),
    }
}

/// A device of `room` that said its name.
async fn device(relay: &Relay, room: &str, name: &str) -> Client {
    let mut d = relay.join(room, "device", SECRET).await;
    d.send(json!({"type": "hello", "msg": {"name": name}})).await;
    d
}

#[tokio::test]
async fn post_and_call_answer_with_the_devices_reply_as_a_pc_member_and_reach_history() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "drive", "Pixel 8").await;
    let (status, v, head) = get(relay.addr, "/api/rooms/drive/devices", Some(SECRET)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(header(&head, "cache-control"), Some("no-store"));
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (members[0]["id"].as_str(), members[0]["role"].as_str()),
        (Some(dev.member.as_str()), Some("device"))
    );

    let body = json!({"url": "https://api.example/v1/me?x=1", "method": "GET",
                      "headers": {"X-Trace": "7"}, "body": {"n": 1}});
    let pending = api_task(relay.addr, "drive", "post", body);
    // The API is a PC member named "api" while its request is under way ...
    let members = dev.devices_until(|m| m.iter().any(|x| x["name"] == "api")).await;
    let api_member = members.iter().find(|x| x["name"] == "api").unwrap();
    assert_eq!(api_member["role"], "pc");
    // ... and the device gets the request as a PC's, the timeout in force included.
    let req = dev.expect("post").await;
    assert_eq!(req["from"], api_member["id"]);
    assert_eq!(
        req["msg"],
        json!({"url": "https://api.example/v1/me?x=1", "method": "GET", "headers": {"X-Trace": "7"},
               "body": {"n": 1}, "timeoutMs": 30000})
    );
    dev.send(json!({"type": "postCb", "id": req["id"], "msg": {
        "method": "post", "result": {"status": 200, "body": {"uid": 42}}, "cookie": "uid=42", "appInfo": {"v": "7.2"}}}))
    .await;
    let (status, post_reply) = pending.await.unwrap();
    let reply = &post_reply;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["type"], "postCb");
    assert_eq!(
        (reply["device"].as_str(), reply["deviceName"].as_str()),
        (Some(dev.member.as_str()), Some("Pixel 8"))
    );
    assert_eq!(
        (reply["result"]["body"]["uid"].as_u64(), reply["cookie"].as_str()),
        (Some(42), Some("uid=42"))
    );
    assert!(reply["ms"].as_u64().is_some(), "{reply}");
    // It left the room with its answer.
    dev.devices_until(|m| m.iter().all(|x| x["name"] != "api")).await;

    // A call, to the device by id; the device's own error is its reply, passed through.
    let pending =
        api_task(relay.addr, "drive", "call", json!({"method": "login", "params": ["qq"], "to": dev.member}));
    let req = dev.expect("call").await;
    assert_eq!(req["msg"], json!({"method": "login", "params": ["qq"], "timeoutMs": 30000}));
    dev.send(json!({"type": "callCb", "id": req["id"], "msg": {"method": "login", "result": null, "error": "refused: login is not allowed"}}))
        .await;
    let (status, reply) = pending.await.unwrap();
    assert_eq!((status, reply["type"].as_str()), (200, Some("callCb")), "{reply}");
    assert_eq!(reply["error"], "refused: login is not allowed");

    // Both pairs are in history, asked by the API's member, as a PC's would be.
    let rows = history(relay.addr, "drive").await;
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["type"].as_str(), rows[0]["method"].as_str()), (Some("call"), Some("login")));
    assert_eq!(
        (rows[1]["type"].as_str(), rows[1]["url"].as_str()),
        (Some("post"), Some("https://api.example/v1/me?x=1"))
    );
    assert_eq!(rows[1]["pc"], api_member["id"]);
    assert_eq!(rows[1]["reqId"], post_reply["id"], "the answer's id is the pair's reqId");
    assert_eq!(metric(relay.addr, "tether_api_requests_total").await, Some(2));
    relay.stop().await;
}

#[tokio::test]
async fn with_all_every_device_answers_a_slow_one_is_waited_for_and_a_leaver_is_an_error_entry() {
    let relay = Relay::start().await;
    let mut fast = device(&relay, "all", "iPhone").await;
    let mut slow = device(&relay, "all", "Android").await;
    let mut leaver = device(&relay, "all", "Tablet").await;
    let pending = api_task(relay.addr, "all", "post", json!({"url": "https://x/who", "all": true}));
    let req = fast.expect("post").await;
    fast.send(tether_tests::reply_to(&req, json!("ios"))).await;
    let slow_req = slow.expect("post").await;
    leaver.expect("post").await;
    let leaver_id = leaver.member.clone();
    leaver.close().await;
    // The fast device's pair is stored (its reply reached the API's member): the answer still
    // waits for the slow one.
    until("the fast reply is in history", || async { history(relay.addr, "all").await.len() == 1 }).await;
    assert!(!pending.is_finished(), "answered before every device did");
    slow.send(tether_tests::reply_to(&slow_req, json!("android"))).await;
    let (status, v) = pending.await.unwrap();
    assert_eq!(status, 200, "{v}");
    let replies = v["replies"].as_array().unwrap();
    let got: Vec<(&str, &str)> =
        replies.iter().map(|r| (r["deviceName"].as_str().unwrap(), r["type"].as_str().unwrap())).collect();
    assert_eq!(got, [("iPhone", "postCb"), ("Android", "postCb"), ("Tablet", "error")]);
    assert_eq!(
        (replies[0]["result"].as_str(), replies[1]["result"].as_str()),
        (Some("ios"), Some("android"))
    );
    assert_eq!(replies[2]["error"]["code"], "no_target", "{}", replies[2]);
    assert_eq!(replies[2]["device"], leaver_id);
    relay.stop().await;
}

#[tokio::test]
async fn the_first_reply_answers_and_the_api_member_leaves_at_once() {
    let relay = Relay::start().await;
    let mut a = device(&relay, "first", "A").await;
    let mut b = device(&relay, "first", "B").await;
    let pending = api_task(relay.addr, "first", "call", json!({"method": "getAppInfo"}));
    let (ra, rb) = (a.expect("call").await, b.expect("call").await);
    b.send(tether_tests::reply_to(&rb, json!({"os": "android"}))).await;
    let (status, v) = pending.await.unwrap();
    assert_eq!((status, v["deviceName"].as_str()), (200, Some("B")), "{v}");
    // Answered: the API's member leaves at once, as a PC that closed (it would otherwise hold
    // a place in the room, and every reply's body, for as long as its timeout): A's late
    // reply finds no request and is stored nowhere. `all: true` waits for every device.
    a.devices_until(|m| m.iter().all(|x| x["name"] != "api")).await;
    wait_metric(relay.addr, "tether_api_requests 0").await;
    wait_metric(relay.addr, "tether_pending_requests 0").await;
    a.send(tether_tests::reply_to(&ra, json!({"os": "ios"}))).await;
    let (err, _) = a.expect_error().await;
    assert_eq!(err["code"], "no_target");
    assert_eq!(history(relay.addr, "first").await.len(), 1, "B's pair only");
    relay.stop().await;
}

#[tokio::test]
async fn a_device_that_does_not_answer_times_out_and_its_late_reply_finds_no_request() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "slow", "P").await;
    let t = Instant::now();
    let pending = api_task(relay.addr, "slow", "post", json!({"url": "https://x/", "timeoutMs": 300}));
    let req = dev.expect("post").await;
    assert_eq!(req["msg"]["timeoutMs"], 300);
    let (status, v) = pending.await.unwrap();
    let took = t.elapsed();
    assert_eq!((status, v["error"]["code"].as_str()), (504, Some("timeout")), "{v}");
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(5), "{took:?}");
    dev.devices_until(|m| m.iter().all(|x| x["name"] != "api")).await;
    dev.send(tether_tests::reply_to(&req, json!(1))).await;
    let (err, _) = dev.expect_error().await;
    assert_eq!(err["code"], "no_target");
    assert!(history(relay.addr, "slow").await.is_empty(), "an unanswered request is no pair");
    relay.stop().await;
}

#[tokio::test]
async fn a_client_that_goes_away_mid_request_leaves_nothing_pending() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "gone", "P").await;
    // A raw HTTP request, dropped once the device has it.
    let mut tcp = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let body = json!({"url": "https://x/slow"}).to_string();
    let head = format!(
        "POST /api/rooms/gone/post HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body.as_bytes()).await.unwrap();
    let req = dev.expect("post").await;
    assert_eq!(metric(relay.addr, "tether_pending_requests").await, Some(1));
    assert_eq!(metric(relay.addr, "tether_api_requests").await, Some(1));
    drop(tcp);
    // Its member leaves the room at once, and its request with it.
    dev.devices_until(|m| m.iter().all(|x| x["name"] != "api")).await;
    wait_metric(relay.addr, "tether_pending_requests 0").await;
    wait_metric(relay.addr, "tether_api_requests 0").await;
    dev.send(tether_tests::reply_to(&req, json!(1))).await;
    assert_eq!(dev.expect_error().await.0["code"], "no_target", "nothing awaits the reply");
    relay.stop().await;
}

#[tokio::test]
async fn no_device_an_unknown_to_and_a_pc_as_to_are_404_no_target() {
    let relay = Relay::start().await;
    // A room nobody has open, whose secret is known (it was open before): 404, not 401.
    relay.join("empty", "pc", SECRET).await.close().await;
    until("the room is closed", || async {
        get(relay.addr, "/api/rooms/empty/devices", Some(SECRET)).await.1["members"] == json!([])
    })
    .await;
    let (status, v) = api(relay.addr, "empty", "post", json!({"url": "https://x/"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("no_target")), "{v}");
    // A room with a PC and no device.
    let pc = relay.join("pc-only", "pc", SECRET).await;
    let (status, v) = api(relay.addr, "pc-only", "call", json!({"method": "m"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("no_target")), "{v}");
    let _dev = device(&relay, "pc-only", "P").await;
    let (status, v) =
        api(relay.addr, "pc-only", "post", json!({"url": "https://x/", "to": "d-nobody"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("no_target")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("d-nobody"), "{v}");
    let (status, v) = api(relay.addr, "pc-only", "post", json!({"url": "https://x/", "to": pc.member})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (404, Some("no_target")), "{v}");
    wait_metric(relay.addr, "tether_pending_requests 0").await;
    relay.stop().await;
}

#[tokio::test]
async fn strangers_get_401_device_keys_403_and_guessing_is_slowed() {
    let relay = Relay::start().await;
    let mut pc = relay.join("locked", "pc", SECRET).await;
    let key = pc.welcome["deviceKey"].as_str().unwrap().to_owned();
    let _dev = relay.join("locked", "device", &key).await;
    pc.devices_until(|m| m.len() == 2).await;
    let path = "/api/rooms/locked/devices";
    let (status, v, _) = get(relay.addr, path, None).await;
    assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    let (status, v, _) = get(relay.addr, path, Some(&key)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "the QR link's key: {v}");
    let (status, v, _) =
        post_json(relay.addr, "/api/rooms/locked/post", Some(&key), &json!({"url": "https://x/"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    // Wrong secrets: refused, and counted against the address.
    for i in 0..tether_relay::strikes::FREE + 1 {
        let guess = format!("guess-{i:02}-0123456789abcdef");
        let (status, v, _) =
            post_json(relay.addr, "/api/rooms/locked/post", Some(&guess), &json!({"url": "https://x/"}))
                .await;
        assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthorized")), "{v}");
    }
    // Now the right secret waits too, with Retry-After; and nothing reached the device.
    let (status, v, head) = get(relay.addr, path, Some(SECRET)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("wrong secrets"), "the strikes refused: {v}");
    let retry: u64 = header(&head, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(metric(relay.addr, "tether_api_requests_total").await, Some(0));
    relay.stop().await;
}

#[tokio::test]
async fn bad_bodies_are_400_and_oversized_ones_413_before_any_device_hears() {
    // (Read only once the secret is right: a wrong one is 401 whatever the body.)
    let relay = Relay::with(|c| c.max_frame = 4096).await;
    let mut dev = device(&relay, "bodies", "P").await;
    for (what, body) in [
        ("post", "{not json"),
        ("post", "{}"),
        ("post", r#"{"url": "https://x/", "timeoutMs": 0}"#),
        ("post", r#"{"url": "https://x/", "timeoutMs": "soon"}"#),
        ("call", r#"{"params": []}"#),
    ] {
        let auth = format!("Bearer {SECRET}");
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let (status, _, text) =
            http_post(relay.addr, &format!("/api/rooms/bodies/{what}"), &headers, body.as_bytes()).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_request")), "{body}: {v}");
    }
    // A body over --max-frame: refused as it is read.
    let big = json!({"url": "https://x/", "body": "x".repeat(8 * 1024)});
    let (status, v) = api(relay.addr, "bodies", "post", big).await;
    assert_eq!((status, v["error"]["code"].as_str()), (413, Some("too_large")), "{v}");
    // A stranger's body is not read at all: the secret is checked first, so a wrong one is
    // answered while the body is still on its way (here it never comes).
    let mut s = tokio::net::TcpStream::connect(relay.addr).await.unwrap();
    let head = format!(
        "POST /api/rooms/bodies/post HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer not-the-secret-0123\r\n\
         Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{\"url\": ",
        relay.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut s, &mut answer))
        .await
        .expect("answered before the body came")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 401") && answer.contains("unauthorized"), "{answer}");
    // Within the HTTP limit, but its frame would not be: refused too.
    let near = json!({"url": "https://x/", "body": "x".repeat(3900)});
    let (status, v) = api(relay.addr, "bodies", "post", near).await;
    assert_eq!((status, v["error"]["code"].as_str()), (413, Some("too_large")), "{v}");
    // The device heard none of them: the next frame it gets is this call.
    let pending = api_task(relay.addr, "bodies", "call", json!({"method": "ping"}));
    let req = dev.expect("call").await;
    dev.send(tether_tests::reply_to(&req, json!("pong"))).await;
    assert_eq!(pending.await.unwrap().1["result"], "pong");
    relay.stop().await;
}

#[tokio::test]
async fn the_api_keeps_the_rooms_limits_room_size_and_pending() {
    let relay = Relay::with(|c| {
        c.max_room_members = 3;
        c.max_pending = 1;
    })
    .await;
    let mut dev = device(&relay, "limits", "P").await;
    let (pc1, pc2) = (relay.join("limits", "pc", SECRET).await, relay.join("limits", "pc", SECRET).await);
    // The room is full (two PCs and a device): the API's member cannot join.
    let (status, v) = api(relay.addr, "limits", "call", json!({"method": "m"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("room_full")), "{v}");
    pc1.close().await;
    pc2.close().await;
    dev.devices_until(|m| m.len() == 1).await;
    // --max-pending 1: a second request while the first awaits its reply is refused.
    let first = api_task(relay.addr, "limits", "call", json!({"method": "a"}));
    let req = dev.expect("call").await;
    let (status, v) = api(relay.addr, "limits", "call", json!({"method": "b"})).await;
    assert_eq!((status, v["error"]["code"].as_str()), (429, Some("rate_limited")), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("--max-pending"),
        "the pending cap refused: {v}"
    );
    dev.send(tether_tests::reply_to(&req, json!(1))).await;
    assert_eq!(first.await.unwrap().0, 200);
    relay.stop().await;
}

#[tokio::test]
async fn an_address_gets_rate_limit_requests_a_second_with_its_burst() {
    let relay = Relay::with(|c| {
        c.rate_limit = 1;
        c.rate_burst = 2;
    })
    .await;
    let _dev = device(&relay, "rate", "P").await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (status, v, head) = get(relay.addr, "/api/rooms/rate/devices", Some(SECRET)).await;
        if status == 429 {
            assert_eq!(
                (v["error"]["code"].as_str(), header(&head, "retry-after")),
                (Some("rate_limited"), Some("1"))
            );
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains("--rate-limit"), "the rate limiter refused: {message}");
        }
        statuses.push(status);
    }
    assert_eq!(statuses[..2], [200, 200], "the burst");
    assert!(statuses.contains(&429), "five in a moment at 1/s with a burst of 2: {statuses:?}");
    relay.stop().await;
}

#[tokio::test]
async fn history_is_json_by_default_and_har_1_2_on_request() {
    let relay = Relay::start().await;
    let mut dev = device(&relay, "har", "Pixel").await;
    let pending = api_task(
        relay.addr,
        "har",
        "post",
        // Not a URI as it is (a space, Chinese in the query): the HAR must write one.
        json!({"url": "https://api.example/v1/share 1?qID=506336&q=你好", "headers": {"Content-Type": "application/json"}, "body": {"a": 1}}),
    );
    let req = dev.expect("post").await;
    dev.send(json!({"type": "postCb", "id": req["id"], "msg": {"method": "post",
        "result": {"status": 201, "headers": {"content-type": "application/json"}, "body": {"ok": true}}, "cookie": "uid=42"}}))
    .await;
    assert_eq!(pending.await.unwrap().0, 200);
    let pending = api_task(relay.addr, "har", "call", json!({"method": "login", "params": ["qq"]}));
    let req = dev.expect("call").await;
    dev.send(tether_tests::reply_to(&req, json!(true))).await;
    assert_eq!(pending.await.unwrap().0, 200);

    // JSON, as before: newest first; `type`, `limit` and `before` still work.
    let rows = history(relay.addr, "har").await;
    assert_eq!(rows.len(), 2);
    let (_, only_posts, _) = get(relay.addr, "/api/rooms/har/history?type=post", Some(SECRET)).await;
    assert_eq!(only_posts.as_array().unwrap().len(), 1);
    let (_, page, head) = get(relay.addr, "/api/rooms/har/history?limit=1", Some(SECRET)).await;
    assert_eq!(page[0]["type"], "call");
    let next = header(&head, "x-next-before").unwrap().to_owned();
    let (_, older, _) =
        get(relay.addr, &format!("/api/rooms/har/history?limit=1&before={next}"), Some(SECRET)).await;
    assert_eq!(older[0]["type"], "post");

    // HAR: oldest first, the post as an HTTP entry, the call as a tether: entry.
    let (status, har, head) = get(relay.addr, "/api/rooms/har/history?format=har", Some(SECRET)).await;
    assert_eq!(status, 200, "{har}");
    assert!(header(&head, "content-type").unwrap().starts_with("application/json"));
    let entries = har["log"]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let post = &entries[0];
    assert_eq!(
        (post["request"]["method"].as_str(), post["request"]["url"].as_str()),
        (Some("POST"), Some("https://api.example/v1/share%201?qID=506336&q=%E4%BD%A0%E5%A5%BD"))
    );
    assert_eq!(
        post["request"]["queryString"],
        json!([{"name": "qID", "value": "506336"}, {"name": "q", "value": "你好"}])
    );
    assert_eq!(post["request"]["postData"]["text"], "{\"a\":1}");
    assert_eq!(
        (post["response"]["status"].as_u64(), post["response"]["content"]["text"].as_str()),
        (Some(201), Some("{\"ok\":true}"))
    );
    assert_eq!(post["_tether"]["cookie"], "uid=42");
    assert_eq!(entries[1]["request"]["url"], "tether:call/login");
    for e in entries {
        for key in e.as_object().unwrap().keys() {
            let standard = [
                "pageref",
                "startedDateTime",
                "time",
                "request",
                "response",
                "cache",
                "timings",
                "serverIPAddress",
                "connection",
                "comment",
            ];
            assert!(
                standard.contains(&key.as_str()) || key.starts_with('_'),
                "HAR's custom fields start with _: {key}"
            );
        }
    }
    let text = har.to_string();
    let ok = validate_har(&text).await.unwrap_or_else(|e| panic!("not valid HAR 1.2: {e}\n{text}"));
    assert!(ok.contains("2 entries"), "{ok}");
    // The validator does fail on what is not HAR (a test that cannot fail proves nothing).
    let mut broken = har.clone();
    broken["log"]["entries"][0]["response"]["status"] = json!("201");
    assert!(validate_har(&broken.to_string()).await.is_err(), "a string status is not HAR");
    // HAR holds requests: inspection rows are for the JSON form; an unknown format is refused.
    let (status, v, _) = get(relay.addr, "/api/rooms/har/history?format=har&type=eval", Some(SECRET)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (400, Some("bad_request")), "{v}");
    let (status, _, _) = get(relay.addr, "/api/rooms/har/history?format=xml", Some(SECRET)).await;
    assert_eq!(status, 400);
    relay.stop().await;
}

#[tokio::test]
async fn no_cors_unless_allow_origin_lists_the_page() {
    let tools = "https://tools.example";
    let relay = Relay::with(|c| c.allow_origin = vec![tools.into()]).await;
    let _dev = device(&relay, "cors", "P").await;
    let auth = format!("Bearer {SECRET}");
    let path = "/api/rooms/cors/devices";
    let (status, head, _) =
        http_get_with(relay.addr, path, &[("Authorization", &auth), ("Origin", tools)]).await;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "access-control-allow-origin"), Some(tools));
    let (status, head, _) = http_get_with(relay.addr, path, &[("Authorization", &auth)]).await;
    assert_eq!((status, header(&head, "access-control-allow-origin")), (200, None), "no Origin: a program");
    let (status, _, _) =
        http_get_with(relay.addr, path, &[("Authorization", &auth), ("Origin", "https://evil.example")])
            .await;
    assert_eq!(status, 403, "an origin not listed");
    // The preflight: answered for the listed origin only.
    let preflight = |addr: SocketAddr, origin: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "OPTIONS /api/rooms/cors/post HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut s, &mut out).await.unwrap();
        out
    };
    let ok = preflight(relay.addr, tools).await;
    assert!(ok.starts_with("HTTP/1.1 204"), "{ok}");
    assert!(
        ok.to_ascii_lowercase().contains("access-control-allow-headers: authorization, content-type"),
        "{ok}"
    );
    assert!(preflight(relay.addr, "https://evil.example").await.starts_with("HTTP/1.1 403"));

    // Without --allow-origin: any page may send, none may read (no CORS headers at all).
    let open = Relay::start().await;
    let _dev = device(&open, "cors", "P").await;
    let (status, head, _) =
        http_get_with(open.addr, path, &[("Authorization", &auth), ("Origin", tools)]).await;
    assert_eq!((status, header(&head, "access-control-allow-origin")), (200, None));
    // and no preflight is answered, so no page can send the Authorization header at all.
    let refused = preflight(open.addr, tools).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(!refused.to_ascii_lowercase().contains("access-control-allow"), "{refused}");
    relay.stop().await;
    open.stop().await;
}
