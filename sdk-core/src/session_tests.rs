use super::*;
use serde_json::{Value, json};

/// A `Json` from a `serde_json` literal.
fn j(v: Value) -> Json {
    Json::parse(&v.to_string()).unwrap()
}

const BASE: Millis = 1000;

fn opts(role: Role) -> Options {
    Options {
        url: "ws://relay.test/ws".into(),
        room: "demo room".into(),
        secret: "s/1".into(),
        role,
        name: Some("Pixel".into()),
        policy: Policy { retries: 3, base_ms: BASE, max_ms: 60_000 },
        timeout_ms: 5_000,
        connect_timeout_ms: 3_000,
    }
}

fn welcome(member: &str, token: &str, resumed: bool) -> String {
    json!({"type": "welcome", "msg": {
        "member": member, "room": "demo room", "role": "pc", "resume": token,
        "resumed": resumed, "heartbeatMs": 2000
    }})
    .to_string()
}

fn actions(s: &mut Session) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn statuses(s: &mut Session) -> Vec<Status> {
    events(s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Status(st) => Some(st),
            _ => None,
        })
        .collect()
}

fn rejections(evs: &[Event]) -> Vec<(String, String)> {
    evs.iter()
        .filter_map(|e| match e {
            Event::Rejected(id, err) => Some((id.clone(), err.code.clone())),
            _ => None,
        })
        .collect()
}

/// A session linked at t=0 as member p-1 with token T1.
fn linked(role: Role) -> Session {
    let mut s = Session::new(opts(role), 0, 99).unwrap();
    s.handle_open(0);
    s.handle_text(0, &welcome("p-1", "T1", false));
    assert_eq!(s.status(), Status::Linked);
    actions(&mut s);
    events(&mut s);
    s
}

/// Fires every timer up to `t` in order (the inspector's tests use it too).
pub(super) fn run_until(s: &mut Session, t: Millis) {
    while let Some(at) = s.poll_timeout() {
        if at > t {
            break;
        }
        s.handle_timeout(at);
    }
}

#[test]
fn the_first_open_names_room_role_secret_and_name() {
    let mut s = Session::new(opts(Role::Pc), 0, 1).unwrap();
    assert_eq!(
        actions(&mut s),
        [Action::Open("ws://relay.test/ws?room=demo%20room&role=pc&secret=s%2F1&name=Pixel".into())]
    );
    assert_eq!(statuses(&mut s), [Status::Connecting]);
    s.handle_text(5, &welcome("p-1", "T1", false));
    assert_eq!(statuses(&mut s), [Status::Linked]);
    assert_eq!(s.member(), Some("p-1"));
}

#[test]
fn three_retries_with_backoff_and_jitter_then_unlink() {
    let mut s = linked(Role::Pc);
    let id = s.request(0, Kind::Post, None, j(json!({"url": "u"})), Some(600_000)).unwrap();
    actions(&mut s);
    let mut now = 10;
    s.handle_close(now, Some(1006));
    assert_eq!(statuses(&mut s), [Status::Reconnecting]);
    for attempt in 1..=3u32 {
        let at = s.poll_timeout().unwrap();
        let full = BASE << (attempt - 1);
        assert!((now + full / 2..=now + full).contains(&at), "retry {attempt} at {at}, lost at {now}");
        s.handle_timeout(at);
        let acts = actions(&mut s);
        assert_eq!(acts.len(), 1);
        let Action::Open(url) = &acts[0] else { panic!("{acts:?}") };
        assert!(url.ends_with("&resume=T1"), "the resume token is reused: {url}");
        now = at + 50;
        s.handle_close(now, None); // refused again
    }
    let evs = events(&mut s);
    assert!(evs.contains(&Event::Status(Status::Unlink)), "{evs:?}");
    assert_eq!(rejections(&evs), [(id, "disconnected".to_owned())]);
    assert!(evs.iter().any(|e| matches!(e, Event::Error(err) if err.code == "disconnected")));
    assert_eq!(s.poll_timeout(), None, "nothing more is scheduled");
    assert!(s.request(now, Kind::Post, None, j(json!({"url": "u"})), None).is_err());
}

#[test]
fn a_success_resets_the_count() {
    let mut s = linked(Role::Pc);
    s.handle_close(0, None);
    let first_retry = s.poll_timeout().unwrap();
    run_until(&mut s, first_retry);
    s.handle_close(2_000, None); // retry 1 failed
    let at = s.poll_timeout().unwrap();
    s.handle_timeout(at);
    s.handle_text(at + 1, &welcome("p-1", "T1", true)); // retry 2 worked
    events(&mut s);
    assert_eq!(s.status(), Status::Linked);
    // Lost again: three fresh retries, not the one left over.
    let mut now = at + 100;
    for _ in 0..3 {
        s.handle_close(now, None);
        assert_ne!(s.status(), Status::Unlink);
        let t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        now = t + 1;
    }
    s.handle_close(now, None);
    assert_eq!(s.status(), Status::Unlink);
}

#[test]
fn waking_up_starts_a_fresh_round() {
    let mut s = linked(Role::Device);
    let mut now = 0;
    s.handle_close(now, None);
    for _ in 0..3 {
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
        s.handle_close(now, None);
    }
    assert_eq!(s.status(), Status::Unlink);
    actions(&mut s);
    events(&mut s);
    // visibilitychange → visible: reconnect now, with the token, and 3 retries again.
    s.handle_wake(now + 5);
    assert_eq!(statuses(&mut s), [Status::Reconnecting]);
    assert!(matches!(&actions(&mut s)[..], [Action::Open(u)] if u.contains("resume=T1")));
    for _ in 0..3 {
        s.handle_close(now, None);
        assert_eq!(s.status(), Status::Reconnecting);
        now = s.poll_timeout().unwrap();
        s.handle_timeout(now);
    }
    // While linked, a wake does nothing.
    s.handle_text(now, &welcome("p-1", "T1", true));
    actions(&mut s);
    s.handle_wake(now + 1);
    assert!(actions(&mut s).is_empty());
    // A wake while a retry is waiting skips the wait.
    s.handle_close(now + 2, None);
    s.handle_wake(now + 3);
    assert!(matches!(&actions(&mut s)[..], [Action::Open(_)]));
}

#[test]
fn a_refused_join_does_not_retry() {
    let mut s = Session::new(opts(Role::Pc), 0, 1).unwrap();
    actions(&mut s);
    s.handle_text(
        1,
        r#"{"type":"error","msg":{"code":"unauthorized","message":"wrong secret for this room"}}"#,
    );
    s.handle_close(1, Some(4401));
    let evs = events(&mut s);
    assert!(evs.contains(&Event::Status(Status::Unlink)));
    assert!(evs.iter().any(|e| matches!(e, Event::Error(err) if err.code == "unauthorized")));
    assert_eq!(s.poll_timeout(), None);
    assert!(actions(&mut s).is_empty());
}

#[test]
fn requests_time_out_and_late_replies_still_show() {
    let mut s = linked(Role::Pc);
    let a = s.request(100, Kind::Post, None, j(json!({"url": "a"})), Some(1_000)).unwrap();
    let b = s.request(100, Kind::Call, Some("d-1"), j(json!({"method": "m", "params": []})), None).unwrap();
    let acts = actions(&mut s);
    let Action::Send(frame) = &acts[1] else { panic!() };
    let frame: Value = serde_json::from_str(frame).unwrap();
    assert_eq!(frame["to"], "d-1");
    assert_eq!(frame["msg"]["timeoutMs"], 5_000, "the default timeout travels with the request");
    assert_eq!(s.poll_timeout(), Some(1_100));
    s.handle_timeout(1_100);
    assert_eq!(rejections(&events(&mut s)), [(a.clone(), "timeout".to_owned())]);
    // A reply after the timeout resolves nothing but is still reported.
    s.handle_text(
        1_200,
        &json!({"type": "postCb", "id": a, "from": "d-1", "msg": {"result": 1}}).to_string(),
    );
    let evs = events(&mut s);
    assert!(matches!(&evs[..], [Event::Reply(r)] if r.ms == 1_100));
    s.handle_text(
        1_300,
        &json!({"type": "callCb", "id": b, "from": "d-1", "msg": {"result": 2}}).to_string(),
    );
    let evs = events(&mut s);
    assert!(matches!(&evs[..], [Event::Resolved(r), Event::Reply(_)] if r.ms == 1_200 && r.device == "d-1"));
}

#[test]
fn the_first_reply_resolves_and_every_reply_is_reported() {
    let mut s = linked(Role::Pc);
    let id = s.request(0, Kind::Post, None, j(json!({"url": "u"})), None).unwrap();
    for (t, dev) in [(10, "d-1"), (20, "d-2")] {
        s.handle_text(
            t,
            &json!({"type": "postCb", "id": id, "from": dev, "msg": {"result": dev}}).to_string(),
        );
    }
    let evs = events(&mut s);
    let resolved: Vec<_> = evs.iter().filter(|e| matches!(e, Event::Resolved(_))).collect();
    let replies: Vec<_> = evs.iter().filter(|e| matches!(e, Event::Reply(_))).collect();
    assert_eq!((resolved.len(), replies.len()), (1, 2));
    assert!(matches!(resolved[0], Event::Resolved(r) if r.device == "d-1" && r.ms == 10));
    assert!(matches!(replies[1], Event::Reply(r) if r.device == "d-2" && r.ms == 20));
}

#[test]
fn duplicate_ids_are_refused() {
    let mut s = linked(Role::Pc);
    s.request_with_id(0, "x", Kind::Post, None, &mut j(json!({"url": "u"})), None).unwrap();
    let err = s.request_with_id(0, "x", Kind::Call, None, &mut j(json!({"method": "m"})), None).unwrap_err();
    assert_eq!(err.code, "bad_frame");
    assert_eq!(s.pending(), 1);
    // Only a PC sends requests.
    let mut d = linked(Role::Device);
    assert_eq!(d.request(0, Kind::Post, None, j(json!({"url": "u"})), None).unwrap_err().code, "bad_frame");
}

#[test]
fn relay_errors_reject_the_request_they_name() {
    let mut s = linked(Role::Pc);
    let id = s.request(0, Kind::Post, None, j(json!({"url": "u"})), None).unwrap();
    s.handle_text(
        1,
        &json!({"type": "error", "id": id, "msg": {"code": "no_target", "message": "no device"}}).to_string(),
    );
    s.handle_text(2, r#"{"type":"error","msg":{"code":"bad_frame","message":"x"}}"#);
    let evs = events(&mut s);
    assert_eq!(rejections(&evs), [(id, "no_target".to_owned())]);
    assert!(evs.iter().any(|e| matches!(e, Event::Error(err) if err.code == "bad_frame")));
    assert_eq!(s.pending(), 0);
}

#[test]
fn requests_made_while_reconnecting_are_sent_on_relink_in_order() {
    let mut s = linked(Role::Pc);
    s.hello(Some("PC".into()), None);
    actions(&mut s);
    s.handle_close(0, None);
    s.request(1, Kind::Post, None, j(json!({"url": "1"})), None).unwrap();
    s.request(2, Kind::Post, None, j(json!({"url": "2"})), None).unwrap();
    assert!(actions(&mut s).is_empty(), "nothing is sent without a socket");
    let t = s.poll_timeout().unwrap();
    s.handle_timeout(t);
    actions(&mut s);
    s.handle_text(t, &welcome("p-1", "T1", true));
    let sent: Vec<Value> = actions(&mut s)
        .into_iter()
        .map(|a| match a {
            Action::Send(f) => serde_json::from_str(&f).unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    let kinds: Vec<_> = sent.iter().map(|f| f["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["hello", "post", "post"], "hello first, then the queue in order");
    assert_eq!(sent[1]["msg"]["url"], "1");
}

#[test]
fn a_rejoin_that_lost_its_place_fails_what_was_pending() {
    let mut s = linked(Role::Pc);
    let id = s.request(0, Kind::Post, None, j(json!({"url": "u"})), Some(600_000)).unwrap();
    s.handle_close(1, None);
    let t = s.poll_timeout().unwrap();
    s.handle_timeout(t);
    s.handle_text(t, &welcome("p-2", "T2", false));
    let evs = events(&mut s);
    assert_eq!(rejections(&evs), [(id, "disconnected".to_owned())]);
    assert_eq!(s.member(), Some("p-2"));
    // The next reconnect uses the new token.
    s.handle_close(t + 1, None);
    let t = s.poll_timeout().unwrap();
    s.handle_timeout(t);
    assert!(matches!(&actions(&mut s)[..], [.., Action::Open(u)] if u.ends_with("resume=T2")));
}

#[test]
fn a_join_that_hangs_times_out_and_retries() {
    let mut s = Session::new(opts(Role::Device), 0, 3).unwrap();
    actions(&mut s);
    assert_eq!(s.poll_timeout(), Some(3_000));
    s.handle_timeout(3_000);
    assert_eq!(actions(&mut s), [Action::Close]);
    assert_eq!(s.status(), Status::Connecting, "still trying: it never linked");
    let t = s.poll_timeout().unwrap();
    assert!(t > 3_000);
}

#[test]
fn devices_and_commands_become_events() {
    let mut d = linked(Role::Device);
    d.handle_text(1, r#"{"type":"devices","msg":{"members":[{"id":"p-1","role":"pc","name":null,"appInfo":null,"since":5,"away":false}]}}"#);
    d.handle_text(2, r#"{"type":"call","id":"p-1:4","from":"p-1","msg":{"method":"login","params":["qq"]}}"#);
    let evs = events(&mut d);
    assert!(matches!(&evs[0], Event::Devices(m) if m.as_array().unwrap().len() == 1 && m[0]["id"] == "p-1"));
    assert!(
        matches!(&evs[1], Event::Command(c) if c.id == "p-1:4" && c.kind == Kind::Call && c.msg["params"][0] == "qq")
    );
    d.reply("p-1:4", Kind::CallCb, j(json!({"method": "login", "result": true}))).unwrap();
    assert!(
        matches!(&actions(&mut d)[..], [Action::Send(f)] if f.contains("\"callCb\"") && f.contains("p-1:4"))
    );
    // Garbage from a relay is ignored, not fatal.
    d.handle_text(3, "not json");
    d.handle_text(3, r#"{"type":"fromTheFuture"}"#);
    assert!(events(&mut d).is_empty());
}

#[test]
fn close_is_final() {
    let mut s = linked(Role::Pc);
    let id = s.request(0, Kind::Post, None, j(json!({"url": "u"})), None).unwrap();
    s.close();
    assert_eq!(actions(&mut s).last(), Some(&Action::Close));
    let evs = events(&mut s);
    assert_eq!(rejections(&evs), [(id, "disconnected".to_owned())]);
    s.handle_close(1, None);
    s.handle_wake(2);
    assert!(actions(&mut s).is_empty());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn urls() {
    for (given, want) in [
        ("ws://h:8080/ws", "ws://h:8080/ws"),
        ("ws://h:8080", "ws://h:8080/ws"),
        ("http://h:8080", "ws://h:8080/ws"),
        ("http://h:8080/", "ws://h:8080/ws"),
        ("https://h/tether/", "wss://h/tether/ws"),
        ("HTTPS://h/ws", "wss://h/ws"),
        ("wss://h/custom", "wss://h/custom"),
    ] {
        assert_eq!(ws_url(given).unwrap(), want, "{given}");
    }
    for bad in ["h:8080", "ftp://h", "ws://"] {
        assert!(ws_url(bad).is_err(), "{bad}");
    }
    assert_eq!(http_base("wss://h/tether/ws"), "https://h/tether");
    assert_eq!(
        device_link("http://10.0.0.5:8080/", "新闻 1", "a&b"),
        "http://10.0.0.5:8080/d/%E6%96%B0%E9%97%BB%201?secret=a%26b"
    );
    assert_eq!(
        history_url("http://h", "r", Some(5), Some(9), None),
        "http://h/api/rooms/r/history?limit=5&before=9"
    );
    assert_eq!(history_url("http://h/", "r", None, Some(9), None), "http://h/api/rooms/r/history?before=9");
    assert_eq!(history_url("http://h", "r", None, None, Some("")), "http://h/api/rooms/r/history");
    assert_eq!(
        history_url("http://h", "r", None, None, Some("inspect&x=1")),
        "http://h/api/rooms/r/history?type=inspect%26x%3D1"
    );
}
