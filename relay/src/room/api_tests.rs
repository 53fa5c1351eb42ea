//! The rooms' decisions for the HTTP API, tested directly (no socket, time moved by hand): its
//! member enters only a room open here, a request says where it went, an `error` says which
//! device it is about, and the member list is read as `devices` shows it. How the answers are
//! gathered is `collect.rs`'s own tests.

use super::collect::{Answer, Collect, Mode, Outcome};
use super::tests::{SECRET, drain, hub, hub_with, join_as, raw};
use super::*;
use serde_json::json;
use std::time::Duration;
use tether_protocol::{Kind, Role};

fn api_request(existing_only: bool) -> JoinRequest {
    JoinRequest {
        room: "r".into(),
        role: Role::Pc,
        secret: SECRET.into(),
        name: Some("api".into()),
        resume: None,
        cluster_resume: false,
        from: None,
        existing_only,
    }
}

fn post_body() -> Box<serde_json::value::RawValue> {
    raw(json!({"url": "https://x/", "timeoutMs": 5000}))
}

#[test]
fn the_api_member_enters_only_a_room_open_here_and_never_sets_its_secret() {
    let (h, now) = hub();
    let e = h.join(api_request(true), h.outbox().0, now).err().expect("no room to enter");
    assert_eq!(e.code, ErrorCode::NoTarget);
    assert_eq!(h.room_count(), 0, "no room was made");
    assert!(h.members("r").is_none());

    let (_dev, _d) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let (out, mut inbox) = h.outbox();
    let api = h.join(api_request(true), out, now).expect("the room is open");
    let members = h.members("r").expect("open");
    let api_entry = members.iter().find(|m| m.id == *api.member).expect("listed");
    assert_eq!((api_entry.role, api_entry.name.as_deref()), (Role::Pc, Some("api")));
    let frames = drain(&mut inbox);
    assert_eq!(frames[0]["type"], "welcome");
    assert!(frames.iter().any(|f| f["type"] == "devices"), "it gets the member list as any PC");

    // Leaving cleanly takes it out of the list at once.
    h.leave(&api, api.conn, Leave::Clean, now);
    assert!(h.members("r").unwrap().iter().all(|m| m.id != *api.member));
}

#[test]
fn an_emptied_room_is_not_reopened_by_the_api_member() {
    let (h, now) = hub();
    let (dev, _d) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    // The room, as a join found it a moment before its last member left.
    let room = dev.room.clone();
    crate::util::lock(&room).leave(&dev.member, dev.conn, Leave::Clean, Default::default(), None, now);
    assert!(crate::util::lock(&room).is_empty());
    let e = h.join(api_request(true), h.outbox().0, now).err().expect("nobody has it open");
    assert_eq!(e.code, ErrorCode::NoTarget);
}

#[test]
fn a_dispatch_says_which_devices_owe_a_reply_and_which_refusal_is_about_which() {
    let (h, now) = hub_with(|l| l.resume_buffer = 1);
    let (live, mut live_inbox) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let (away, _a) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let api = h.join(api_request(true), h.outbox().0, now).unwrap();
    h.leave(&away, away.conn, Leave::Lost, now);
    // Fill the away device's buffer (one frame).
    let t = Duration::from_secs(5);
    let (_, first) =
        h.dispatch(&api, Kind::Post, Some(&*away.member), &post_body(), "https://x/".into(), t, now);
    assert_eq!(first.sent, [away.member.to_string()], "buffered for it: it owes a reply");
    drain(&mut live_inbox);

    let (id, d) = h.dispatch(&api, Kind::Post, None, &post_body(), "https://x/".into(), t, now);
    assert!(id.starts_with('r'), "the relay's own id: {id}");
    assert_eq!(d.sent, [live.member.to_string()]);
    assert_eq!(d.refused.len(), 1);
    assert_eq!(d.refused[0].0.as_deref(), Some(&*away.member), "about the away device");
    assert_eq!(d.refused[0].1.code, ErrorCode::BufferFull);
    let got = drain(&mut live_inbox);
    let req = got.iter().find(|f| f["type"] == "post").expect("the live device got it");
    assert_eq!(req["id"], format!("{}:{id}", api.member));

    // A `to` that names nobody, or a PC, refuses the whole request.
    let (_, d) = h.dispatch(&api, Kind::Post, Some("d-nobody"), &post_body(), "u".into(), t, now);
    assert!(d.sent.is_empty());
    assert!(matches!(&d.refused[..], [(None, r)] if r.code == ErrorCode::NoTarget));
    let (_, d) = h.dispatch(&api, Kind::Post, Some(&*api.member), &post_body(), "u".into(), t, now);
    assert!(matches!(&d.refused[..], [(None, r)] if r.message.contains("not a device")));
}

#[test]
fn a_device_that_leaves_before_replying_is_named_in_the_error_its_pc_gets() {
    let (h, now) = hub();
    let (d1, _i1) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let (d2, _i2) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let (out, mut api_inbox) = h.outbox();
    let api = h.join(api_request(true), out, now).unwrap();
    let t = Duration::from_secs(5);
    let (id, d) = h.dispatch(&api, Kind::Post, None, &post_body(), "https://x/".into(), t, now);
    let mut c = Collect::new(id.clone(), Kind::Post, Mode::All, d, now, t);
    for f in std::iter::from_fn(|| api_inbox.try_recv()) {
        c.on_frame(f.as_str(), now);
    }
    h.leave(&d2, d2.conn, Leave::Clean, now);
    super::tests::answer(&d1, &format!("{}:{id}", api.member), now).unwrap();
    let frames: Vec<_> = std::iter::from_fn(|| api_inbox.try_recv()).collect();
    let err = frames.iter().find(|f| f.contains(r#""type":"error""#)).expect("an error about d2");
    let v: serde_json::Value = serde_json::from_str(err.as_str()).unwrap();
    assert_eq!((v["id"].as_str(), v["msg"]["device"].as_str()), (Some(id.as_str()), Some(&*d2.member)));
    for f in &frames {
        c.on_frame(f.as_str(), now);
    }
    let Some(Answer::All(entries)) = c.answer(now) else { panic!("both devices are done") };
    assert!(matches!(entries[0].outcome, Some(Outcome::Replied { .. })));
    assert!(matches!(&entries[1].outcome, Some(Outcome::Failed { code, .. }) if code == "no_target"));
}

#[test]
fn when_the_api_member_leaves_its_requests_leave_the_pending_table() {
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let limits = Limits::from_config(&crate::Config::defaults());
    let now = Now::read();
    let h = Hub::new(limits, [7; 32], metrics.clone(), None, now);
    let (dev, _i) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let api = h.join(api_request(true), h.outbox().0, now).unwrap();
    let t = Duration::from_secs(5);
    let (id, d) = h.dispatch(&api, Kind::Call, None, &raw(json!({"method": "m"})), "m".into(), t, now);
    assert_eq!(d.sent.len(), 1);
    let pending = || metrics.pending.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(pending(), 1);
    h.leave(&api, api.conn, Leave::Clean, now);
    assert_eq!(pending(), 0, "gone with its member");
    let late = super::tests::answer(&dev, &format!("{}:{id}", api.member), now).unwrap_err();
    assert_eq!(late.code, ErrorCode::NoTarget, "the late reply has no request to answer");
}
