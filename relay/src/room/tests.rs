//! Direct tests of the rooms' decisions: no socket, no runtime, time moved by hand. Each test
//! plays the socket tasks' part (join, leave, a frame in) and reads what the members' outboxes
//! hold, as their sockets would be written.
//!
//! Over 500 lines: one test per decision of the rooms, kept in one place as their specification.

use super::*;
use crate::token::{device_key, secret_digest, tag};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_protocol::{Kind, OutEnvelope, Role};

pub(super) const SECRET: &str = "0123456789abcdef-room-secret";

/// A hub with the default limits, and the time it started at.
pub(super) fn hub() -> (Hub, Now) {
    hub_with(|_| {})
}

pub(super) fn hub_with(change: impl FnOnce(&mut Limits)) -> (Hub, Now) {
    let mut limits = Limits::from_config(&crate::Config::defaults());
    change(&mut limits);
    let now = Now::read();
    (Hub::new(limits, [7; 32], Arc::default(), None, now), now)
}

pub(super) fn join_as(
    h: &Hub,
    role: Role,
    secret: &str,
    resume: Option<&str>,
    now: Now,
) -> Result<(Joined, Inbox), Refusal> {
    let (out, inbox) = h.outbox();
    let req = JoinRequest {
        room: "r".into(),
        role,
        secret: secret.into(),
        name: None,
        resume: resume.map(str::to_owned),
        cluster_resume: false,
        from: None,
        existing_only: false,
    };
    h.join(req, out, now).map(|j| (j, inbox))
}

fn join(h: &Hub, role: Role, secret: &str, resume: Option<&str>) -> Result<(Joined, Inbox), Refusal> {
    join_as(h, role, secret, resume, Now::read())
}

/// Everything queued for a member, as JSON.
pub(super) fn drain(inbox: &mut Inbox) -> Vec<Value> {
    std::iter::from_fn(|| inbox.try_recv()).map(|f| serde_json::from_str(f.as_str()).unwrap()).collect()
}

/// The `welcome` at the head of a fresh connection's queue.
pub(super) fn welcome(inbox: &mut Inbox) -> Value {
    let f = inbox.try_recv().expect("a welcome");
    let v: Value = serde_json::from_str(f.as_str()).unwrap();
    assert_eq!(v["type"], "welcome");
    v["msg"].clone()
}

/// The last `devices` list in `frames`: (member id, away) pairs.
pub(super) fn last_devices(frames: &[Value]) -> Vec<(String, bool)> {
    let d = frames.iter().rev().find(|f| f["type"] == "devices").expect("a devices list");
    d["msg"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["away"].as_bool().unwrap()))
        .collect()
}

pub(super) fn raw(v: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::RawValue::from_string(v.to_string()).unwrap()
}

/// PC `pc` posts `url` with id `id` to `to` (every device when `None`).
pub(super) fn post(
    h: &Hub,
    pc: &Joined,
    id: &str,
    to: Option<&str>,
    timeout_ms: u64,
    now: Now,
) -> Vec<Refusal> {
    let msg = raw(json!({"url": "https://x/"}));
    let timeout = Duration::from_millis(timeout_ms);
    h.request(pc, Kind::Post, Some(id), to, &msg, "https://x/".into(), timeout, now).1
}

/// Device `dev` answers request `wire_id` as the socket task and the history writer would,
/// without a store: the pending entry is taken, then the reply forwarded.
pub(super) fn answer(dev: &Joined, wire_id: &str, now: Now) -> Result<(), Refusal> {
    let msg = raw(json!({"result": 1}));
    let mut room = crate::util::lock(&dev.room);
    let (p, _record) = room.take_reply(&dev.member, Kind::PostCb, wire_id, &msg, now)?;
    let frame: Frame = OutEnvelope {
        kind: Kind::PostCb,
        id: Some(&p.pc_id),
        to: Some(&p.pc),
        from: Some(&dev.member),
        msg: Some(&msg),
    }
    .to_text()
    .into();
    room.forward_reply(&p.pc, frame, &dev.member, wire_id, now);
    Ok(())
}

// ---- refusals ----

#[test]
fn refusals_a_full_room_a_wrong_secret_and_a_device_key_offered_by_a_pc() {
    let (h, now) = hub_with(|l| l.max_members = 2);
    let (_pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let key = welcome(&mut pc_inbox)["deviceKey"].as_str().unwrap().to_owned();
    let e = join_as(&h, Role::Device, "wrong-secret-but-long-enough", None, now).err().unwrap();
    assert_eq!((e.code, e.message.as_str()), (ErrorCode::Unauthorized, "wrong secret for this room"));
    let e = join_as(&h, Role::Pc, &key, None, now).err().unwrap();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("device only"), "{}", e.message);
    let (_dev, _i) = join_as(&h, Role::Device, &key, None, now).unwrap();
    let e = join_as(&h, Role::Device, &key, None, now).err().unwrap();
    assert_eq!((e.code, e.message.as_str()), (ErrorCode::RoomFull, "room already has 2 members"));
    let e = join_as(&h, Role::Device, SECRET, None, now).map(|_| ()).unwrap_err();
    assert_eq!(e.code, ErrorCode::RoomFull, "the PC secret does not make room either");
    // A refused join into a room it created does not leave the room behind.
    let mut req = JoinRequest {
        room: "other".into(),
        role: Role::Pc,
        secret: key,
        name: None,
        resume: None,
        cluster_resume: false,
        from: None,
        existing_only: false,
    };
    assert!(h.join(req.clone(), h.outbox().0, now).is_err());
    req.room = "bad/name".into();
    assert_eq!(h.join(req, h.outbox().0, now).err().unwrap().code, ErrorCode::BadFrame);
    assert_eq!(h.room_count(), 1);
}

// ---- presence ----

#[test]
fn a_lost_member_is_away_and_removed_when_its_grace_window_ends() {
    let (h, t0) = hub();
    let grace = h.limits().grace;
    let (pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, t0).unwrap();
    let (dev, _dev_inbox) = join_as(&h, Role::Device, SECRET, None, t0).unwrap();
    let dev_id = dev.member.to_string();
    drain(&mut pc_inbox);
    let lost_at = t0.after(Duration::from_secs(1));
    h.leave(&dev, dev.conn, Leave::Lost, lost_at);
    let seen = drain(&mut pc_inbox);
    assert!(last_devices(&seen).contains(&(dev_id.clone(), true)), "listed away: {seen:?}");
    assert_eq!(h.metrics.away.load(Relaxed), 1);
    // A moment before its window ends it is still there; at the end it is gone.
    h.sweep(lost_at.after(grace - Duration::from_millis(1)));
    assert!(drain(&mut pc_inbox).is_empty(), "nothing changed yet");
    h.sweep(lost_at.after(grace));
    let seen = drain(&mut pc_inbox);
    assert!(last_devices(&seen).iter().all(|(id, _)| *id != dev_id), "removed: {seen:?}");
    assert_eq!(h.metrics.away.load(Relaxed), 0);
    // A clean leave removes at once; the last one out closes the room.
    let (pc2, _i) = join_as(&h, Role::Pc, SECRET, None, lost_at).unwrap();
    h.leave(&pc2, pc2.conn, Leave::Clean, lost_at);
    assert_eq!(h.room_count(), 1);
    h.leave(&pc, pc.conn, Leave::Kicked, lost_at);
    assert_eq!(h.room_count(), 0);
}

#[test]
fn a_late_leave_of_a_connection_already_replaced_changes_nothing() {
    let (h, now) = hub();
    let (_pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, mut inbox) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let token = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
    let (again, _inbox) = join_as(&h, Role::Device, SECRET, Some(&token), now).unwrap();
    assert!(again.resumed);
    drain(&mut pc_inbox);
    h.leave(&dev, dev.conn, Leave::Clean, now);
    assert!(drain(&mut pc_inbox).is_empty(), "the old connection's leave is ignored");
    assert_eq!(h.metrics.away.load(Relaxed), 0);
}

// ---- resume ----

#[test]
fn a_resumed_member_keeps_its_id_and_gets_what_was_buffered_in_order_and_its_token_is_spent() {
    let (h, t0) = hub();
    let (pc, _pc_inbox) = join_as(&h, Role::Pc, SECRET, None, t0).unwrap();
    let (dev, mut inbox) = join_as(&h, Role::Device, SECRET, None, t0).unwrap();
    let token = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
    drop(inbox); // the socket task ended: its queue is closed
    let t1 = t0.after(Duration::from_secs(1));
    h.leave(&dev, dev.conn, Leave::Lost, t1);
    for id in ["1", "2", "3"] {
        assert!(post(&h, &pc, id, Some(&dev.member), 30_000, t1).is_empty());
    }
    let t2 = t1.after(h.limits().grace - Duration::from_millis(1));
    h.sweep(t2);
    let (back, mut inbox) = join_as(&h, Role::Device, SECRET, Some(&token), t2).unwrap();
    assert!(back.resumed);
    assert_eq!(back.member, dev.member, "same id");
    let frames = drain(&mut inbox);
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["welcome", "post", "post", "post", "devices"]);
    let ids: Vec<&str> = frames[1..4].iter().map(|f| f["id"].as_str().unwrap()).collect();
    let pc_id = &pc.member;
    assert_eq!(ids, [format!("{pc_id}:1"), format!("{pc_id}:2"), format!("{pc_id}:3")]);
    assert_eq!(frames[0]["msg"]["resumed"], true);
    // Once the new connection is heard from, the token it used is spent.
    h.confirm(&back);
    let e = join_as(&h, Role::Device, SECRET, Some(&token), t2).err().unwrap();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("already used"), "{}", e.message);
}

#[test]
fn a_member_whose_grace_window_ended_cannot_resume_and_joins_afresh() {
    let (h, t0) = hub();
    let (_pc, _pc_inbox) = join_as(&h, Role::Pc, SECRET, None, t0).unwrap();
    let (dev, mut inbox) = join_as(&h, Role::Device, SECRET, None, t0).unwrap();
    let token = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
    h.leave(&dev, dev.conn, Leave::Lost, t0);
    let late = t0.after(h.limits().grace);
    h.sweep(late);
    let (again, _i) = join_as(&h, Role::Device, SECRET, Some(&token), late).unwrap();
    assert!(!again.resumed && again.member != dev.member, "a new member");
}

// ---- pending expiry ----

#[test]
fn a_request_past_its_deadline_is_forgotten_and_a_late_reply_is_refused_to_its_device() {
    let (h, t0) = hub();
    let (pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, t0).unwrap();
    let (dev, mut dev_inbox) = join_as(&h, Role::Device, SECRET, None, t0).unwrap();
    assert!(post(&h, &pc, "1", None, 1_000, t0).is_empty());
    let wire_id = format!("{}:1", pc.member);
    drain(&mut pc_inbox);
    assert_eq!(drain(&mut dev_inbox).last().unwrap()["id"], wire_id.as_str());
    h.sweep(t0.after(Duration::from_millis(999)));
    assert_eq!(crate::util::lock(&pc.room).pending.len(), 1, "not yet");
    h.sweep(t0.after(Duration::from_secs(1)));
    assert_eq!(crate::util::lock(&pc.room).pending.len(), 0, "forgotten at its deadline");
    // As today: the PC is not told (its own timeout fired); the device is, when it answers.
    assert!(drain(&mut pc_inbox).is_empty());
    let e = answer(&dev, &wire_id, t0.after(Duration::from_secs(2))).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoTarget);
    assert!(e.message.contains("timed out"), "{}", e.message);
    assert!(drain(&mut pc_inbox).is_empty(), "and the PC gets no late reply");
}

#[test]
fn a_device_that_leaves_or_does_not_come_back_fails_its_requests_toward_their_pc() {
    let (h, t0) = hub();
    let (pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, t0).unwrap();
    let (dev, _i) = join_as(&h, Role::Device, SECRET, None, t0).unwrap();
    assert!(post(&h, &pc, "1", Some(&dev.member), 60_000, t0).is_empty());
    h.leave(&dev, dev.conn, Leave::Lost, t0);
    drain(&mut pc_inbox);
    h.sweep(t0.after(h.limits().grace));
    let seen = drain(&mut pc_inbox);
    let e = seen.iter().find(|f| f["type"] == "error").expect("an error for the request");
    assert_eq!((e["id"].as_str(), e["msg"]["code"].as_str()), (Some("1"), Some("no_target")));
    assert!(e["msg"]["message"].as_str().unwrap().contains("did not come back"));
}

// ---- routing ----

#[test]
fn a_request_goes_to_the_device_named_or_to_every_device_and_nowhere_else() {
    let (h, now) = hub();
    let (pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (d1, mut i1) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let (d2, mut i2) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    for i in [&mut pc_inbox, &mut i1, &mut i2] {
        drain(i);
    }
    assert!(post(&h, &pc, "1", Some(&d1.member), 30_000, now).is_empty());
    let got = drain(&mut i1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "post");
    assert_eq!(got[0]["from"], &*pc.member);
    assert_eq!(got[0]["id"], format!("{}:1", pc.member));
    assert!(drain(&mut i2).is_empty(), "only the device named");
    assert!(post(&h, &pc, "2", None, 30_000, now).is_empty());
    assert_eq!(drain(&mut i1).len(), 1);
    assert_eq!(drain(&mut i2).len(), 1);
    assert!(drain(&mut pc_inbox).is_empty(), "never back to the PC");
    // No such device, a PC as target, a request id already awaiting a reply.
    let r = post(&h, &pc, "3", Some("d-nobody"), 30_000, now);
    assert_eq!((r[0].code, r[0].message.as_str()), (ErrorCode::NoTarget, "no device d-nobody in this room"));
    let r = post(&h, &pc, "3", Some(&pc.member), 30_000, now);
    assert_eq!(r[0].code, ErrorCode::NoTarget);
    assert!(r[0].message.contains("is not a device"));
    let r = post(&h, &pc, "1", Some(&d1.member), 30_000, now);
    assert_eq!(r[0].code, ErrorCode::BadFrame, "{r:?}");
    // With no device at all.
    h.leave(&d1, d1.conn, Leave::Clean, now);
    h.leave(&d2, d2.conn, Leave::Clean, now);
    let r = post(&h, &pc, "4", None, 30_000, now);
    assert_eq!((r[0].code, r[0].message.as_str()), (ErrorCode::NoTarget, "no device in this room"));
}

#[test]
fn a_reply_reaches_only_the_pc_that_asked() {
    let (h, now) = hub();
    let (a, mut a_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (b, mut b_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, _i) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    // Both PCs use id "1": the device sees two distinct ids.
    assert!(post(&h, &a, "1", None, 30_000, now).is_empty());
    assert!(post(&h, &b, "1", None, 30_000, now).is_empty());
    drain(&mut a_inbox);
    drain(&mut b_inbox);
    answer(&dev, &format!("{}:1", a.member), now).unwrap();
    let got = drain(&mut a_inbox);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0]["type"].as_str(), got[0]["id"].as_str()), (Some("postCb"), Some("1")));
    assert_eq!(got[0]["from"], &*dev.member);
    assert!(drain(&mut b_inbox).is_empty(), "B never sees A's reply");
    // Answered once only; and a reply of the wrong kind keeps the request waiting.
    assert_eq!(answer(&dev, &format!("{}:1", a.member), now).unwrap_err().code, ErrorCode::NoTarget);
    let msg = raw(json!({}));
    let wire_b = format!("{}:1", b.member);
    let e = crate::util::lock(&dev.room).take_reply(&dev.member, Kind::CallCb, &wire_b, &msg, now).err();
    assert_eq!(e.unwrap().code, ErrorCode::BadFrame);
    answer(&dev, &wire_b, now).unwrap();
    assert_eq!(drain(&mut b_inbox).len(), 1);
    assert!(drain(&mut a_inbox).is_empty());
}

#[test]
fn a_reply_for_a_pc_that_left_is_refused_to_the_device() {
    let (h, now) = hub();
    let (pc, _pc_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (_pc2, _keep_room_open) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, mut dev_inbox) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    assert!(post(&h, &pc, "1", None, 30_000, now).is_empty());
    drain(&mut dev_inbox);
    // The pending entry goes with its PC: the device hears so when it answers.
    h.leave(&pc, pc.conn, Leave::Clean, now);
    let e = answer(&dev, &format!("{}:1", pc.member), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::NoTarget);
}

// ---- joining, secrets and tokens (from the socket-level tests before the split) ----

#[test]
fn the_device_key_joins_as_a_device_only_and_only_a_pc_is_told_it() {
    let (h, _) = hub();
    let (_pc, mut inbox) = join(&h, Role::Pc, SECRET, None).unwrap();
    let w = welcome(&mut inbox);
    let key = w["deviceKey"].as_str().expect("a PC is told the device key").to_owned();
    assert_eq!(key, device_key(&secret_digest("r", SECRET)));
    let (_dev, mut inbox) = join(&h, Role::Device, &key, None).unwrap();
    assert!(welcome(&mut inbox).get("deviceKey").is_none(), "a device is not told it");
    // Never as a PC, not even with a PC's resume token.
    let e = join(&h, Role::Pc, &key, w["resume"].as_str()).err().unwrap();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("device only"), "{}", e.message);
    // The PC secret still works for a device (old links), and a wrong key does not.
    assert!(join(&h, Role::Device, SECRET, None).is_ok());
    let wrong = device_key(&secret_digest("r", "another-secret-of-16+"));
    assert_eq!(join(&h, Role::Device, &wrong, None).err().unwrap().code, ErrorCode::Unauthorized);
    // Too short a secret is refused, and says why.
    let e = join(&h, Role::Device, "s3cret", None).err().unwrap();
    assert!(e.message.contains("16 to 256 bytes"), "{}", e.message);
}

#[test]
fn a_room_opened_by_its_device_key_takes_its_pc_and_learns_the_history_tag_then() {
    let (h, _) = hub();
    let key = device_key(&secret_digest("r", SECRET));
    let (dev, _inbox) = join(&h, Role::Device, &key, None).unwrap();
    assert!(dev.new_room_tag.is_none(), "a device key tells no history tag");
    assert_eq!(
        join(&h, Role::Pc, "wrong-secret-but-long-enough", None).err().unwrap().code,
        ErrorCode::Unauthorized
    );
    let (pc, _inbox) = join(&h, Role::Pc, SECRET, None).unwrap();
    assert_eq!(pc.new_room_tag, Some(tag(&secret_digest("r", SECRET))));
    assert_eq!(h.live_secret_matches("r", &secret_digest("r", SECRET)), Some(true));
    assert_eq!(h.live_secret_matches("r", &secret_digest("r", &key)), Some(false));
}

#[test]
fn a_resume_token_works_once_and_for_its_role_only() {
    let (h, now) = hub();
    let (_pc, _pc_inbox) = join(&h, Role::Pc, SECRET, None).unwrap();
    let (dev, mut inbox) = join(&h, Role::Device, SECRET, None).unwrap();
    let t1 = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
    h.leave(&dev, dev.conn, Leave::Lost, now);
    // Not as a PC: a device's token never resumes a PC (a new PC joins instead).
    let (other, _i) = join(&h, Role::Pc, SECRET, Some(&t1)).unwrap();
    assert!(!other.resumed && *other.member != *dev.member);
    // Resumed with t1: the welcome carries t2 ...
    let (again, mut inbox) = join(&h, Role::Device, SECRET, Some(&t1)).unwrap();
    assert!(again.resumed && again.member == dev.member);
    let t2 = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
    assert_ne!(t1, t2);
    // ... and once the new connection is heard from, t1 is spent.
    h.confirm(&again);
    let e = join(&h, Role::Device, SECRET, Some(&t1)).err().unwrap();
    assert_eq!(e.code, ErrorCode::Unauthorized);
    assert!(e.message.contains("already used"), "{}", e.message);
    // t2 still resumes (and replaces the live connection).
    let (third, mut inbox) = join(&h, Role::Device, SECRET, Some(&t2)).unwrap();
    assert!(third.resumed && third.member == dev.member);
    let t3 = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
    // A welcome lost with a connection that died before saying anything: the token the
    // member resumed with (t2) still works, once.
    h.leave(&third, third.conn, Leave::Lost, now);
    let (fourth, _i) = join(&h, Role::Device, SECRET, Some(&t2)).unwrap();
    assert!(fourth.resumed);
    h.confirm(&fourth);
    assert!(join(&h, Role::Device, SECRET, Some(&t2)).is_err());
    assert!(join(&h, Role::Device, SECRET, Some(&t3)).is_err(), "t3 was never used and is replaced");
}

// ---- the hub's two locks ----

#[test]
fn a_join_racing_the_last_leave_never_lands_in_a_room_the_hub_has_dropped() {
    let (h, now) = hub();
    let h = Arc::new(h);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let h = h.clone();
            std::thread::spawn(move || {
                for _ in 0..300 {
                    let (j, _inbox) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
                    // While it is a member, the room it joined is the one the hub lists.
                    let listed = crate::util::lock(&h.rooms).get("r").cloned().expect("listed");
                    assert!(Arc::ptr_eq(&listed, &j.room), "joined a room the hub had dropped");
                    h.leave(&j, j.conn, Leave::Clean, now);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(h.room_count(), 0);
}

// ---- budgets ----

/// PC `pc` posts a body of about `size` bytes to `to`.
fn post_big(
    h: &Hub,
    pc: &Joined,
    id: &str,
    to: &str,
    size: usize,
    timeout_ms: u64,
    now: Now,
) -> Vec<Refusal> {
    let msg = raw(json!({"url": "https://x/", "body": "b".repeat(size)}));
    let timeout = Duration::from_millis(timeout_ms);
    h.request(pc, Kind::Post, Some(id), Some(to), &msg, "https://x/".into(), timeout, now).1
}

/// Bytes the hub's rooms hold for their members, per the relay's budget.
fn held(h: &Hub) -> usize {
    h.metrics.buffered_bytes.load(Relaxed)
}

#[test]
fn frames_held_for_an_away_device_are_paid_for_and_go_with_their_expired_requests() {
    let (h, now) = hub();
    let (pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, mut dev_inbox) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let token = welcome(&mut dev_inbox)["resume"].as_str().unwrap().to_owned();
    drop(dev_inbox); // the socket is gone: what it had queued is let go with it
    h.leave(&dev, dev.conn, Leave::Lost, now);
    drain(&mut pc_inbox);
    assert_eq!(held(&h), 0, "nothing held once every queue is written");
    // A request with a short timeout for the away device: its body and its frame are held ...
    assert!(post_big(&h, &pc, "1", &dev.member, 10_000, 100, now).is_empty());
    assert!(held(&h) > 20_000, "the body and the buffered frame: {}", held(&h));
    // ... and both are let go when it expires, although the device is still away.
    h.sweep(now.after(Duration::from_millis(200)));
    assert_eq!(held(&h), 0, "an expired request takes its buffered frame with it");
    // One that the device comes back for: the frame moves to its new queue, then is written.
    let later = now.after(Duration::from_millis(300));
    assert!(post_big(&h, &pc, "2", &dev.member, 10_000, 60_000, later).is_empty());
    let (again, mut inbox) = join_as(&h, Role::Device, SECRET, Some(&token), later).unwrap();
    assert!(again.resumed);
    let frames = drain(&mut inbox);
    assert!(frames.iter().any(|f| f["type"] == "post" && f["id"] == format!("{}:2", pc.member)));
    drain(&mut pc_inbox);
    assert!(held(&h) >= 10_000 && held(&h) < 11_000, "only the body awaiting its reply: {}", held(&h));
    answer(&again, &format!("{}:2", pc.member), later).unwrap();
    drain(&mut pc_inbox);
    assert_eq!(held(&h), 0, "answered: nothing held");
}

#[test]
fn past_the_relays_budget_or_the_rooms_a_request_is_refused_and_nothing_else_is_lost() {
    // The relay holds at most 60,000 bytes; one room's away members at most 15,000.
    let (h, now) = hub_with(|l| {
        l.max_buffered_bytes = 60_000;
        l.room_buffered_bytes = 15_000;
    });
    let (pc, mut pc_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let mut away = Vec::new();
    for _ in 0..3 {
        let (d, mut i) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
        welcome(&mut i);
        h.leave(&d, d.conn, Leave::Lost, now);
        away.push(d);
    }
    let (live, mut live_inbox) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    drain(&mut pc_inbox);
    drain(&mut live_inbox);
    // 8 KB frames: the first away device's fits the room; the second's does not.
    assert!(post_big(&h, &pc, "1", &away[0].member, 8_000, 60_000, now).is_empty());
    let r = post_big(&h, &pc, "2", &away[1].member, 8_000, 60_000, now);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, ErrorCode::BufferFull);
    assert!(r[0].message.contains("--max-room-buffered-bytes"), "{}", r[0].message);
    // The live device still gets requests until the relay's budget is spent ...
    assert!(post_big(&h, &pc, "3", &live.member, 15_000, 60_000, now).is_empty());
    let r = post_big(&h, &pc, "4", &live.member, 15_000, 60_000, now);
    assert_eq!(r[0].code, ErrorCode::BufferFull);
    assert!(r[0].message.contains("--max-buffered-bytes"), "{}", r[0].message);
    assert!(held(&h) <= 60_000, "{}", held(&h));
    // ... and what was taken is intact: the device answers, the PC gets the reply.
    let frames = drain(&mut live_inbox);
    let wire = format!("{}:3", pc.member);
    assert!(frames.iter().any(|f| f["id"] == wire));
    answer(&live, &wire, now).unwrap();
    let replies = drain(&mut pc_inbox);
    assert!(replies.iter().any(|f| f["type"] == "postCb" && f["id"] == "3"), "{replies:?}");
    // Budget given back: the refused request goes through now.
    assert!(post_big(&h, &pc, "5", &live.member, 15_000, 60_000, now).is_empty());
    assert!(h.metrics.render().contains("tether_drops_total{reason=\"over_budget\"} 2\n"));
}

#[test]
fn an_away_member_holds_its_connection_slot_until_it_resumes_or_its_grace_ends() {
    struct Slot(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Slot {
        fn drop(&mut self) {
            self.0.store(true, Relaxed);
        }
    }
    let (h, now) = hub();
    let (_pc, _pc_inbox) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, mut inbox) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let token = welcome(&mut inbox)["resume"].as_str().unwrap().to_owned();
    let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slot: Holding = Box::new(Slot(freed.clone()));
    h.leave_with(&dev, dev.conn, Leave::Lost, Default::default(), Some(slot), now);
    h.sweep(now.after(h.limits().grace / 2));
    assert!(!freed.load(Relaxed), "held while away");
    let (again, inbox) = join_as(&h, Role::Device, SECRET, Some(&token), now).unwrap();
    assert!(again.resumed);
    assert!(freed.load(Relaxed), "given back when it resumed (its new connection holds its own)");
    // Lost again: held until the grace window ends.
    drop(inbox);
    let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slot: Holding = Box::new(Slot(freed.clone()));
    h.leave_with(&again, again.conn, Leave::Lost, Default::default(), Some(slot), now);
    h.sweep(now.after(h.limits().grace / 2));
    assert!(!freed.load(Relaxed));
    h.sweep(now.after(h.limits().grace + Duration::from_millis(1)));
    assert!(freed.load(Relaxed), "given back when its grace window ended");
}
