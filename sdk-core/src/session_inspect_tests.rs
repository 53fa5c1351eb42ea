//! The session's part in inspecting the page (#18): a device's ring, its gate and pacing; a
//! PC's `hello.inspect`, its batches and the `storage`/`eval` replies. Time moves by hand.

use super::tests::run_until;
use super::*;
use crate::outbox::{BATCH, FLUSH_MS, RING_MIN};
use serde_json::{Value, json};

const RATE: u64 = 524_288;

fn opts(role: Role) -> Options {
    Options {
        url: "ws://relay.test/ws".into(),
        room: "r".into(),
        secret: "s".into(),
        role,
        name: None,
        policy: Policy { retries: 3, base_ms: 1_000, max_ms: 60_000 },
        timeout_ms: 5_000,
        connect_timeout_ms: 3_000,
    }
}

fn welcome(member: &str, resumed: bool, rate: u64) -> String {
    json!({"type": "welcome", "msg": {"member": member, "room": "r", "role": "device", "resume": "T",
        "resumed": resumed, "heartbeatMs": 2000, "maxFrame": 1_048_576, "inspectRate": rate}})
    .to_string()
}

fn captures() -> Json {
    Json::parse(r#"{"console":true,"network":true,"storage":true,"allow":false}"#).unwrap()
}

/// A device with a ring of `ring` bytes, linked at t=0 (nobody watching yet), actions drained.
fn device(ring: usize, rate: u64) -> Session {
    let mut s = Session::new(opts(Role::Device), 0, 7).unwrap();
    s.inspect_start(0, ring, captures());
    s.handle_text(0, &welcome("d-1", false, rate));
    sent(&mut s);
    s
}

/// Frames sent since the last call, parsed.
fn sent(s: &mut Session) -> Vec<Value> {
    std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Send(f) => Some(serde_json::from_str(&f).unwrap()),
            _ => None,
        })
        .collect()
}

fn batches(frames: &[Value]) -> Vec<&Value> {
    frames.iter().filter(|f| f["type"] == "inspect").collect()
}

/// The `n` of every event in these frames' batches, in order.
fn numbers(frames: &[Value]) -> Vec<u64> {
    batches(frames)
        .iter()
        .flat_map(|b| b["msg"]["events"].as_array().unwrap().iter().map(|e| e["n"].as_u64().unwrap()))
        .collect()
}

/// An event of about `size` bytes.
fn event(kind: &str, n: u64, size: usize) -> String {
    let head = json!({"k": kind, "at": 1_700_000_000_000u64, "n": n, "args": [""]}).to_string();
    let pad = size.saturating_sub(head.len());
    json!({"k": kind, "at": 1_700_000_000_000u64, "n": n, "args": ["x".repeat(pad)]}).to_string()
}

fn members(list: Value) -> String {
    json!({"type": "devices", "msg": {"members": list}}).to_string()
}

fn pc(inspect: Value, away: bool) -> Value {
    json!({"id": "p-1", "role": "pc", "name": null, "appInfo": null, "since": 1, "away": away, "inspect": inspect})
}

fn me() -> Value {
    json!({"id": "d-1", "role": "device", "name": null, "appInfo": null, "since": 1, "away": false,
        "inspect": {"console": true, "network": true, "storage": true, "allow": false}})
}

#[test]
fn nothing_leaves_until_a_watching_pc_is_listed_then_everything_does() {
    let mut s = device(RING_MIN, RATE);
    for n in 1..=5 {
        s.inspect_push(10, "console", event("console", n, 200));
    }
    // Nobody; a PC that did not ask; a PC that asked but is away; another device (itself).
    for list in [json!([me()]), json!([me(), pc(Value::Null, false)]), json!([me(), pc(json!("live"), true)])]
    {
        s.handle_text(20, &members(list));
        run_until(&mut s, 5_000);
        assert!(batches(&sent(&mut s)).is_empty());
        assert_eq!(s.poll_timeout(), None, "no timer while the gate is closed");
    }
    assert_eq!(s.inspect_outbox().unwrap().waiting().0, 5);
    // A watching PC: the waiting events go at once (they waited long enough), in order.
    s.handle_text(5_000, &members(json!([me(), pc(json!("keep"), false)])));
    let frames = sent(&mut s);
    assert_eq!(numbers(&frames), [1, 2, 3, 4, 5]);
    assert_eq!(batches(&frames).len(), 1);
    assert!(batches(&frames)[0]["msg"].get("dropped").is_none(), "nothing was dropped");
    assert_eq!(s.inspect_outbox().unwrap().waiting(), (0, 0));
}

#[test]
fn a_new_event_waits_for_company_at_most_the_flush_delay() {
    let mut s = device(RING_MIN, RATE);
    s.handle_text(0, &members(json!([me(), pc(json!("live"), false)])));
    s.inspect_push(1_000, "error", event("error", 1, 100));
    s.inspect_push(1_040, "network", event("network", 2, 100));
    assert!(sent(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), Some(1_000 + FLUSH_MS));
    s.handle_timeout(1_000 + FLUSH_MS);
    assert_eq!(numbers(&sent(&mut s)), [1, 2], "one batch with both");
    assert_eq!(s.poll_timeout(), None);
    // Half a batch waiting goes at once.
    for n in 3..=6 {
        s.inspect_push(2_000, "console", event("console", n, BATCH / 8));
    }
    assert_eq!(numbers(&sent(&mut s)), [3, 4, 5, 6]);
}

#[test]
fn the_ring_keeps_the_newest_bytes_and_counts_what_it_dropped_once() {
    let mut s = device(RING_MIN, RATE);
    // 100 events of 1 KB into a 64 KiB ring: the oldest go first.
    for n in 1..=100 {
        let kind = if n % 10 == 0 { "network" } else { "console" };
        s.inspect_push(n, kind, event(kind, n, 1_000));
    }
    let (kept, bytes) = s.inspect_outbox().unwrap().waiting();
    assert!(bytes <= RING_MIN, "{bytes}");
    assert_eq!(kept, 65, "as many of the newest as fit");
    s.handle_text(200, &members(json!([me(), pc(json!("live"), false)])));
    let frames = sent(&mut s);
    assert_eq!(numbers(&frames), (36..=100).collect::<Vec<_>>(), "the newest, in order, none twice");
    let first = batches(&frames)[0];
    // 35 dropped: 1..=35, of which 10, 20, 30 were network events.
    assert_eq!(first["msg"]["dropped"], json!({"console": 32, "network": 3}));
    assert_eq!(first["msg"]["droppedBytes"], 35_000);
    for later in &batches(&frames)[1..] {
        assert!(later["msg"].get("dropped").is_none(), "counts travel once");
    }
    // The next batch says nothing of them either.
    s.inspect_push(300, "console", event("console", 101, 100));
    run_until(&mut s, 1_000);
    let frames = sent(&mut s);
    assert_eq!(numbers(&frames), [101]);
    assert!(batches(&frames)[0]["msg"].get("dropped").is_none());
}

#[test]
fn counts_of_events_dropped_while_nobody_watched_come_with_the_next_batch() {
    let mut s = device(RING_MIN, RATE);
    s.inspect_missed([0, 0, 0, 0, 1], 40);
    s.inspect_push(0, "page", event("page", 2, 100));
    s.handle_text(500, &members(json!([me(), pc(json!("live"), false)])));
    let frames = sent(&mut s);
    let b = batches(&frames)[0];
    assert_eq!(
        (b["msg"]["dropped"].clone(), b["msg"]["droppedBytes"].clone()),
        (json!({"page": 1}), json!(40))
    );
}

#[test]
fn batches_stay_under_the_cap() {
    let mut s = device(1 << 20, RATE);
    for n in 1..=200 {
        s.inspect_push(0, "console", event("console", n, 3_000));
    }
    s.handle_text(1_000, &members(json!([me(), pc(json!("live"), false)])));
    run_until(&mut s, 10_000);
    let frames = sent(&mut s);
    assert_eq!(numbers(&frames), (1..=200).collect::<Vec<_>>());
    assert!(batches(&frames).len() >= 10, "{}", batches(&frames).len());
    for b in batches(&frames) {
        let events = b["msg"]["events"].to_string().len();
        assert!(events <= BATCH, "{events}");
    }
}

#[test]
fn the_gate_closes_when_the_pc_goes_away_or_stops_and_opens_when_it_is_back() {
    let mut s = device(RING_MIN, RATE);
    let watching = members(json!([me(), pc(json!("live"), false)]));
    s.handle_text(0, &watching);
    s.inspect_push(0, "console", event("console", 1, 100));
    run_until(&mut s, 200);
    assert_eq!(numbers(&sent(&mut s)), [1]);

    s.handle_text(300, &members(json!([me(), pc(json!("live"), true)])));
    s.inspect_push(400, "console", event("console", 2, 100));
    run_until(&mut s, 5_000);
    assert!(sent(&mut s).is_empty(), "away: kept, not sent");
    s.handle_text(5_000, &watching);
    assert_eq!(numbers(&sent(&mut s)), [2], "back: sent at once");

    s.handle_text(6_000, &members(json!([me(), pc(Value::Null, false)])));
    s.inspect_push(6_000, "console", event("console", 3, 100));
    run_until(&mut s, 9_000);
    assert!(sent(&mut s).is_empty(), "said off: kept, not sent");
    s.handle_text(9_000, &watching);
    assert_eq!(numbers(&sent(&mut s)), [3]);
}

#[test]
fn batches_never_wait_in_the_reconnect_queue_and_go_after_the_relink_once_a_pc_is_listed() {
    let mut s = device(RING_MIN, RATE);
    s.handle_text(0, &members(json!([me(), pc(json!("live"), false)])));
    s.handle_close(100, None);
    for n in 1..=3 {
        s.inspect_push(200, "console", event("console", n, 100));
    }
    run_until(&mut s, 900);
    assert!(sent(&mut s).is_empty(), "no socket: nothing is sent");
    let retry = s.poll_timeout().unwrap();
    assert!(retry > 900, "only the retry is scheduled, not the ring: {retry}");
    s.handle_timeout(retry);
    s.handle_text(retry, &welcome("d-1", true, RATE));
    let frames = sent(&mut s);
    assert_eq!(frames.iter().map(|f| f["type"].as_str().unwrap()).collect::<Vec<_>>(), ["hello"]);
    assert_eq!(
        frames[0]["msg"]["inspect"],
        json!({"console": true, "network": true, "storage": true, "allow": false})
    );
    // The relay's member list after the join opens the gate again.
    s.handle_text(retry + 1, &members(json!([me(), pc(json!("live"), false)])));
    assert_eq!(numbers(&sent(&mut s)), [1, 2, 3]);
}

/// The relay's byte bucket for `inspect` frames (relay/src/ratelimit.rs): a frame passes while
/// the bucket is not in debt, and then takes its bytes.
struct RelayBucket {
    rate: f64,
    tokens: f64,
    last: Millis,
    sent: Vec<(Millis, usize)>,
}

impl RelayBucket {
    fn take(&mut self, now: Millis, frames: Vec<Value>) {
        for f in batches(&frames) {
            self.tokens = (self.tokens + (now - self.last) as f64 / 1000.0 * self.rate).min(self.rate);
            self.last = now;
            assert!(self.tokens > 0.0, "the relay would drop a batch at {now} ms");
            let bytes = f.to_string().len();
            self.tokens -= bytes as f64;
            self.sent.push((now, bytes));
        }
    }
}

#[test]
fn the_pace_is_half_the_relay_s_rate_and_the_relay_never_drops_a_batch() {
    // A relay with --inspect-rate 40000: our pace is 20,000 B/s, batches at most that big.
    let rate = 40_000u64;
    let pace = 20_000usize;
    let mut s = device(1 << 20, rate);
    s.handle_text(0, &members(json!([me(), pc(json!("live"), false)])));
    let mut relay = RelayBucket { rate: rate as f64, tokens: rate as f64, last: 0, sent: Vec::new() };
    // The page logs 5,000 B every 50 ms for 10 s: 100,000 B/s, five times the pace.
    let (mut t, mut n) = (0, 0);
    while t < 10_000 {
        n += 1;
        s.inspect_push(t, "console", event("console", n, 5_000));
        relay.take(t, sent(&mut s));
        while let Some(at) = s.poll_timeout().filter(|at| *at < t + 50) {
            s.handle_timeout(at);
            relay.take(at, sent(&mut s));
        }
        t += 50;
    }
    for (_, bytes) in &relay.sent {
        assert!(*bytes <= pace + 256, "a batch is at most a second of the pace: {bytes}");
    }
    // Over any second: at most a full bucket, a second's refill and one batch into debt.
    for &(at, _) in &relay.sent {
        let window: usize =
            relay.sent.iter().filter(|(t2, _)| (at..at + 1_000).contains(t2)).map(|(_, b)| b).sum();
        assert!(window <= 3 * pace + 512, "{window} B in the second from {at} ms");
    }
    let total: usize = relay.sent.iter().map(|(_, b)| b).sum();
    assert!((10 * pace..=12 * pace + 512).contains(&total), "about {pace} B/s for 10 s: {total}");
    // The rest waits in the ring, in order, for the pace to allow it.
    let (waiting, _) = s.inspect_outbox().unwrap().waiting();
    assert!(waiting > 100, "{waiting}");
}

#[test]
fn the_page_being_hidden_sends_what_waits_at_once() {
    let mut s = device(RING_MIN, RATE);
    s.handle_text(0, &members(json!([me(), pc(json!("live"), false)])));
    s.inspect_push(1_000, "console", event("console", 1, 100));
    assert!(sent(&mut s).is_empty());
    s.inspect_hide(1_001);
    assert_eq!(numbers(&sent(&mut s)), [1]);
    // Hidden with nobody watching: still nothing leaves.
    s.handle_text(2_000, &members(json!([me()])));
    s.inspect_push(2_000, "console", event("console", 2, 100));
    s.inspect_hide(2_001);
    assert!(sent(&mut s).is_empty());
}

#[test]
fn close_clears_the_ring_and_nothing_more_is_kept() {
    let mut s = device(RING_MIN, RATE);
    s.inspect_push(0, "console", event("console", 1, 100));
    s.close();
    assert_eq!(s.inspect_outbox().unwrap().waiting(), (0, 0));
    s.inspect_push(1, "console", event("console", 2, 100));
    assert_eq!(s.inspect_outbox().unwrap().waiting(), (0, 0));
    assert!(batches(&sent(&mut s)).is_empty());
}

#[test]
fn an_older_relay_that_does_not_know_inspect_stops_the_batches_quietly() {
    let mut s = device(RING_MIN, RATE);
    s.handle_text(0, &members(json!([me(), pc(json!("live"), false)])));
    s.inspect_push(0, "console", event("console", 1, 100));
    run_until(&mut s, 200);
    assert_eq!(numbers(&sent(&mut s)), [1]);
    s.handle_text(
        210,
        r#"{"type":"error","msg":{"code":"unknown_type","message":"unknown type \"inspect\""}}"#,
    );
    assert!(
        !std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Error(_))),
        "not the page's concern"
    );
    s.inspect_push(300, "console", event("console", 2, 100));
    run_until(&mut s, 1_000);
    assert!(sent(&mut s).is_empty());
    let mut pc = Session::new(opts(Role::Pc), 0, 7).unwrap();
    pc.watch("live");
    pc.handle_text(0, &welcome("p-1", false, RATE));
    pc.handle_text(
        1,
        r#"{"type":"error","msg":{"code":"unknown_type","message":"unknown type \"inspect\""}}"#,
    );
    assert!(!std::iter::from_fn(|| pc.poll_event()).any(|e| matches!(e, Event::Error(_))));
    // A member that does not inspect still hears of it (it sent something the relay did not know).
    let mut plain = Session::new(opts(Role::Device), 0, 7).unwrap();
    plain.handle_text(0, &welcome("d-2", false, RATE));
    plain.handle_text(1, r#"{"type":"error","msg":{"code":"unknown_type","message":"unknown type \"x\""}}"#);
    assert!(std::iter::from_fn(|| plain.poll_event()).any(|e| matches!(e, Event::Error(_))));
}

#[test]
fn a_pc_says_it_watches_once_keep_stays_and_it_is_said_again_after_a_rejoin() {
    let mut s = Session::new(opts(Role::Pc), 0, 7).unwrap();
    s.watch("live"); // before the link: said with the first hello
    s.handle_text(0, &welcome("p-1", false, RATE));
    let frames = sent(&mut s);
    assert_eq!(frames, [json!({"type": "hello", "msg": {"inspect": "live"}})]);
    s.watch("live");
    assert!(sent(&mut s).is_empty(), "said already");
    s.watch("keep");
    assert_eq!(sent(&mut s), [json!({"type": "hello", "msg": {"inspect": "keep"}})]);
    s.watch("live");
    assert!(sent(&mut s).is_empty(), "keep is not taken back");
    s.hello(Some("PC".into()), None);
    sent(&mut s);
    s.handle_close(10, None);
    let t = s.poll_timeout().unwrap();
    s.handle_timeout(t);
    s.handle_text(t, &welcome("p-1", true, RATE));
    assert_eq!(sent(&mut s), [json!({"type": "hello", "msg": {"inspect": "keep", "name": "PC"}})]);
    // A device cannot watch; a PC has no ring.
    let mut d = device(RING_MIN, RATE);
    d.watch("live");
    assert!(sent(&mut d).is_empty());
    s.inspect_start(t, RING_MIN, captures());
    assert!(s.inspect_outbox().is_none());
}

#[test]
fn a_pc_gets_batches_and_storage_and_eval_replies_a_device_gets_the_commands() {
    let mut s = Session::new(opts(Role::Pc), 0, 7).unwrap();
    s.handle_text(0, &welcome("p-1", false, RATE));
    let batch = json!({"type": "inspect", "from": "d-9", "msg": {"events": [{"k": "console", "n": 1}]}});
    s.handle_text(1, &batch.to_string());
    let st =
        s.request(2, Kind::Storage, Some("d-9"), Json::parse(r#"{"op":"read"}"#).unwrap(), None).unwrap();
    let ev = s.request(2, Kind::Eval, Some("d-9"), Json::parse(r#"{"code":"1+1"}"#).unwrap(), None).unwrap();
    let out = sent(&mut s);
    assert_eq!((out[0]["type"].as_str(), out[1]["msg"]["code"].as_str()), (Some("storage"), Some("1+1")));
    s.handle_text(9, &json!({"type": "evalCb", "id": ev, "from": "d-9", "msg": {"result": 2}}).to_string());
    s.handle_text(
        9,
        &json!({"type": "storageCb", "id": st, "from": "d-9", "msg": {"error": {"code": "x"}}}).to_string(),
    );
    let evs: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(evs.iter().any(|e| matches!(e, Event::Inspect { device, msg } if device == "d-9" && msg["events"][0]["n"] == Json::uint(1))));
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::Resolved(r) if r.id == ev && r.kind == Kind::EvalCb && r.ms == 7))
    );
    assert!(evs.iter().any(|e| matches!(e, Event::Resolved(r) if r.id == st && r.kind == Kind::StorageCb)));
    assert_eq!(s.pending(), 0);

    let mut d = device(RING_MIN, RATE);
    d.handle_text(1, &batch.to_string());
    d.handle_text(2, r#"{"type":"eval","id":"p-1:5","from":"p-1","msg":{"code":"1+1"}}"#);
    let evs: Vec<Event> = std::iter::from_fn(|| d.poll_event()).collect();
    assert!(!evs.iter().any(|e| matches!(e, Event::Inspect { .. })), "a device ignores batches");
    assert!(evs.iter().any(|e| matches!(e, Event::Command(c) if c.kind == Kind::Eval && c.id == "p-1:5")));
    d.reply("p-1:5", Kind::EvalCb, Json::parse(r#"{"result":2}"#).unwrap()).unwrap();
    assert_eq!(sent(&mut d), [json!({"type": "evalCb", "id": "p-1:5", "msg": {"result": 2}})]);
}
