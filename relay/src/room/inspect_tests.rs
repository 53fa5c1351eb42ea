//! Direct tests of inspecting the page, the relay's part (`inspect.rs`, and `storage`/`eval`
//! on the request path): who gets a device's `inspect` batches, what a slow or absent PC costs
//! (a dropped frame, never a connection, never a buffered byte), who may say what in
//! `hello.inspect`, and which pairs reach history. As in `tests.rs`, no socket: the test plays
//! the socket tasks and reads the members' outboxes.

use super::tests::{SECRET, drain, hub, hub_with, join_as, last_devices, raw, welcome};
use super::*;
use crate::history::Store;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use tether_protocol::{Kind, Role};

/// Member `j` says `hello` with body `v`.
fn say(h: &Hub, j: &Joined, v: Value, now: Now) -> Result<(), Refusal> {
    h.hello(j, serde_json::from_value(v).expect("a hello"), now)
}

/// An `inspect` body with one console event numbered `n`.
fn batch(n: u64) -> Box<serde_json::value::RawValue> {
    raw(
        json!({"events": [{"k": "console", "at": 1_700_000_000_000u64, "n": n, "level": "log", "args": ["x", n]}]}),
    )
}

/// Device `j`'s batch `msg`, the room's part (history aside: see
/// `batches_reach_history_only_while_a_pc_keeps`).
fn inspect(
    h: &Hub,
    j: &Joined,
    msg: &serde_json::value::RawValue,
    to: Option<&str>,
) -> Result<Spread, Refusal> {
    let _ = h;
    crate::util::lock(&j.room).inspect(&j.member, msg, to)
}

/// The `inspect` frames among `frames`, by their first event's `n`.
fn inspect_ns(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "inspect")
        .map(|f| f["msg"]["events"][0]["n"].as_u64().unwrap())
        .collect()
}

/// The value of `/metrics` line `tether_drops_total{reason="<reason>"}`.
fn drops(h: &Hub, reason: &str) -> u64 {
    let line = format!("tether_drops_total{{reason=\"{reason}\"}} ");
    let text = h.metrics.render();
    text.lines().find_map(|l| l.strip_prefix(&line)).expect("the line").parse().unwrap()
}

#[test]
fn an_inspect_batch_goes_only_to_the_watching_pcs_connected_now_and_is_never_buffered() {
    let (h, now) = hub();
    let (live, mut live_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (plain, mut plain_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (keeper, mut keeper_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let keeper_welcome = welcome(&mut keeper_in);
    let keeper_token = keeper_welcome["resume"].as_str().unwrap().to_owned();
    let (dev, mut dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    // A device is told its byte rate, to pace itself; a PC sends no batches.
    assert_eq!(welcome(&mut dev_in)["inspectRate"], 524_288);
    assert!(keeper_welcome.get("inspectRate").is_none());
    say(&h, &live, json!({"inspect": "live"}), now).unwrap();
    say(&h, &keeper, json!({"inspect": "keep"}), now).unwrap();
    say(&h, &dev, json!({"inspect": {"console": true, "network": true}}), now).unwrap();
    // Everyone sees who watches and what the page captures.
    let seen = drain(&mut plain_in);
    let members = &seen.iter().rev().find(|f| f["type"] == "devices").unwrap()["msg"]["members"];
    let inspect_of =
        |id: &str| members.as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()["inspect"].clone();
    assert_eq!(inspect_of(&live.member), "live");
    assert_eq!(inspect_of(&keeper.member), "keep");
    assert_eq!(inspect_of(&plain.member), Value::Null);
    assert_eq!(
        inspect_of(&dev.member),
        json!({"console": true, "network": true, "storage": false, "allow": false})
    );
    // The keeping PC drops away (its socket task ended).
    drop(keeper_in);
    h.leave(&keeper, keeper.conn, Leave::Lost, now);
    for i in [&mut live_in, &mut plain_in, &mut dev_in] {
        drain(i);
    }

    let spread = inspect(&h, &dev, &batch(1), None).unwrap();
    assert_eq!(spread, Spread { sent: 1, dropped: 0 });
    let frame = live_in.try_recv().expect("the batch");
    assert!(super::inspect::is_inspect_frame(&frame), "told apart (kept out of a shutdown's buffers)");
    assert!(!super::inspect::is_inspect_frame(&Frame::from(r#"{"type":"inspectX"}"#)));
    assert!(!super::inspect::is_inspect_frame(&Frame::from(r#"{"type":"postCb","msg":{"type":"inspect"}}"#)));
    assert_eq!(inspect(&h, &dev, &batch(1), None).unwrap(), spread);
    let got = drain(&mut live_in);
    assert_eq!(got.len(), 1);
    assert_eq!((got[0]["type"].as_str(), got[0]["from"].as_str()), (Some("inspect"), Some(&*dev.member)));
    assert!(got[0].get("id").is_none());
    assert_eq!(got[0]["msg"].to_string(), batch(1).get(), "forwarded as sent");
    assert!(drain(&mut plain_in).is_empty(), "a PC that did not ask gets nothing");
    assert!(drain(&mut dev_in).is_empty(), "nothing back to the device");

    // The away PC gets none of it when it comes back: inspect frames are not buffered.
    let (back, mut back_in) = join_as(&h, Role::Pc, SECRET, Some(&keeper_token), now).unwrap();
    assert!(back.resumed);
    let kinds: Vec<String> =
        drain(&mut back_in).iter().map(|f| f["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["welcome", "devices"]);
    // Back and still watching (what it said is kept across the resume).
    assert_eq!(inspect(&h, &dev, &batch(2), None).unwrap(), Spread { sent: 2, dropped: 0 });
    assert_eq!(inspect_ns(&drain(&mut back_in)), [2]);
    assert_eq!(inspect_ns(&drain(&mut live_in)), [2]);

    // `to` picks one watching PC; one that does not watch gets nothing, and nobody else does.
    assert_eq!(inspect(&h, &dev, &batch(3), Some(&live.member)).unwrap().sent, 1);
    assert_eq!(inspect_ns(&drain(&mut live_in)), [3]);
    assert!(drain(&mut back_in).is_empty());
    let nobody = drops(&h, "inspect_nobody");
    assert_eq!(inspect(&h, &dev, &batch(4), Some(&plain.member)).unwrap(), Spread::default());
    assert_eq!(drops(&h, "inspect_nobody"), nobody + 1);
    assert!(inspect_ns(&drain(&mut plain_in)).is_empty() && drain(&mut live_in).is_empty());

    // "off" stops it; with no watcher left the batch goes nowhere, and says so in /metrics.
    say(&h, &live, json!({"inspect": "off"}), now).unwrap();
    say(&h, &back, json!({"inspect": "off"}), now).unwrap();
    assert_eq!(inspect(&h, &dev, &batch(5), None).unwrap(), Spread::default());
    assert_eq!(drops(&h, "inspect_nobody"), nobody + 2);
    assert!(inspect_ns(&drain(&mut live_in)).is_empty());
    assert_eq!(h.metrics.inspect_frames.load(Relaxed), 5, "1 + 1 + 2 + 1 queued");
    assert!(h.metrics.inspect_bytes.load(Relaxed) > 4 * batch(1).get().len() as u64);
}

#[test]
fn a_watching_pc_that_does_not_read_loses_inspect_frames_never_its_connection_nor_its_replies() {
    let (h, now) = hub_with(|l| l.queue_frames = 16);
    let (pc, mut pc_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, mut dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    say(&h, &pc, json!({"inspect": "live"}), now).unwrap();
    drain(&mut pc_in);
    drain(&mut dev_in);
    // The PC reads nothing: the first half of its queue (8 frames) takes inspect frames, the
    // rest are dropped, and nobody is kicked.
    let mut spread = Spread::default();
    for n in 0..20 {
        let s = inspect(&h, &dev, &batch(n), None).unwrap();
        spread.sent += s.sent;
        spread.dropped += s.dropped;
    }
    assert_eq!(spread, Spread { sent: 8, dropped: 12 });
    assert_eq!(drops(&h, "inspect_queue"), 12);
    {
        let room = crate::util::lock(&pc.room);
        let Link::Live(out) = &room.members[room.index_of(&pc.member).unwrap()].link else { panic!("live") };
        assert!(!out.kick.is_fired(), "never a slow consumer for inspect frames");
    }
    // The other half is for what must not be lost: a request's reply and member lists.
    assert!(super::tests::post(&h, &pc, "1", None, 30_000, now).is_empty());
    let wire = format!("{}:1", pc.member);
    assert_eq!(drain(&mut dev_in)[0]["id"], wire.as_str());
    super::tests::answer(&dev, &wire, now).unwrap();
    say(&h, &dev, json!({"name": "phone"}), now).unwrap();
    let got = drain(&mut pc_in);
    assert_eq!(inspect_ns(&got), (0..8).collect::<Vec<_>>(), "the first eight, in order");
    assert!(got.iter().any(|f| f["type"] == "postCb" && f["id"] == "1"), "{got:?}");
    assert!(got.iter().any(|f| f["type"] == "devices"));
    assert_eq!(drops(&h, "slow_consumer"), 0);
    // Read again: inspect frames flow again.
    assert_eq!(inspect(&h, &dev, &batch(99), None).unwrap().sent, 1);
    assert_eq!(inspect_ns(&drain(&mut pc_in)), [99]);
}

#[test]
fn past_the_relays_budget_an_inspect_frame_is_dropped_not_forced_in() {
    let (h, now) = hub_with(|l| l.max_buffered_bytes = 10_000);
    let (pc, mut pc_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, mut dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    say(&h, &pc, json!({"inspect": "live"}), now).unwrap();
    drain(&mut pc_in);
    drain(&mut dev_in);
    assert_eq!(h.metrics.buffered_bytes.load(Relaxed), 0, "every queue written");
    let held = Budget::new(10_000, h.metrics.clone());
    held.take(9_950);
    assert_eq!(inspect(&h, &dev, &batch(1), None).unwrap(), Spread { sent: 0, dropped: 1 });
    assert_eq!(drops(&h, "inspect_budget"), 1);
    assert_eq!(h.metrics.buffered_bytes.load(Relaxed), 9_950, "nothing taken for it");
    held.give(9_950);
    assert_eq!(inspect(&h, &dev, &batch(2), None).unwrap().sent, 1);
    assert_eq!(inspect_ns(&drain(&mut pc_in)), [2]);
}

#[test]
fn only_a_device_sends_inspect_and_each_role_says_only_its_own_kind_of_inspect() {
    let (h, now) = hub();
    let (pc, mut pc_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, _dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    say(&h, &pc, json!({"inspect": "live"}), now).unwrap();
    drain(&mut pc_in);
    let e = inspect(&h, &pc, &batch(1), None).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (ErrorCode::BadFrame, "only a device sends inspect"));
    assert!(drain(&mut pc_in).is_empty(), "and it went nowhere");
    // A device cannot watch; a PC has no captures. The whole hello is refused: its name too.
    let e = say(&h, &dev, json!({"name": "sneaky", "inspect": "keep"}), now).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadFrame);
    assert!(e.message.contains("what its page captures"), "{}", e.message);
    let e = say(&h, &pc, json!({"inspect": {"console": true}}), now).unwrap_err();
    assert!(e.message.contains("\"live\""), "{}", e.message);
    assert!(drain(&mut pc_in).is_empty(), "nothing changed, so no devices push");
    assert!(!crate::util::lock(&pc.room).keeps_inspection());
    // A device saying "off" clears what it said.
    say(&h, &dev, json!({"inspect": {"console": true}}), now).unwrap();
    say(&h, &dev, json!({"inspect": "off"}), now).unwrap();
    let seen = drain(&mut pc_in);
    assert!(last_devices(&seen).iter().any(|(id, _)| *id == *dev.member));
    let last = seen.iter().rev().find(|f| f["type"] == "devices").unwrap();
    let me = last["msg"]["members"].as_array().unwrap().iter().find(|m| m["id"] == *dev.member).unwrap();
    assert_eq!((me["inspect"].clone(), me["name"].clone()), (Value::Null, Value::Null));
}

/// Device `dev` answers request `wire_id` (of kind `kind`) with `body` through the hub, as
/// its socket task does.
async fn reply(
    h: &Hub,
    store: &Store,
    dev: &Joined,
    kind: Kind,
    wire_id: &str,
    body: Value,
) -> Result<(), Refusal> {
    h.reply(store, dev, kind, Some(wire_id), &raw(body), Now::read()).await
}

/// The next frame queued for a member, waiting for the history writer at most 5 s.
async fn next_frame(inbox: &mut Inbox) -> Value {
    let f = tokio::time::timeout(Duration::from_secs(5), inbox.recv()).await.expect("a frame in time");
    serde_json::from_str(f.as_str()).unwrap()
}

#[tokio::test]
async fn storage_and_eval_pairs_reach_only_the_pc_that_asked_and_history_only_while_a_pc_keeps() {
    let (store, _) = Store::open("sqlite::memory:", crate::history::Budget::UNLIMITED).await.unwrap();
    let (h, now) = hub();
    let (a, mut a_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let tag = a.new_room_tag.clone().expect("the first PC names the room's history tag");
    let (b, mut b_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, mut dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let timeout = Duration::from_secs(30);
    let ask = |pc: &Joined, kind: Kind, id: &str, body: Value, target: &str| {
        h.request(pc, kind, Some(id), None, &raw(body), target.into(), timeout, now).1
    };
    for i in [&mut a_in, &mut b_in, &mut dev_in] {
        drain(i);
    }
    // Both go to the device with room-unique ids, like post and call.
    assert!(ask(&a, Kind::Storage, "s1", json!({"op": "read"}), "read").is_empty());
    assert!(ask(&b, Kind::Eval, "1", json!({"code": "1 + 1"}), "1 + 1").is_empty());
    let got = drain(&mut dev_in);
    let heads: Vec<(&str, &str)> =
        got.iter().map(|f| (f["type"].as_str().unwrap(), f["id"].as_str().unwrap())).collect();
    let (wire_a, wire_b) = (format!("{}:s1", a.member), format!("{}:1", b.member));
    assert_eq!(heads, [("storage", wire_a.as_str()), ("eval", wire_b.as_str())]);
    // A reply of the wrong kind is refused and the request still waits.
    let e = reply(&h, &store, &dev, Kind::EvalCb, &wire_a, json!({"result": 2})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BadFrame);
    assert!(e.message.contains("answer it with storageCb"), "{}", e.message);

    // No PC keeps: the storage pair goes to A at once, to nobody else, and not to history.
    let st = json!({"result": {"local": [["theme", "dark"]], "session": [], "cookie": []}});
    reply(&h, &store, &dev, Kind::StorageCb, &wire_a, st.clone()).await.unwrap();
    let got = drain(&mut a_in);
    assert_eq!(got.len(), 1, "forwarded before reply() returned: {got:?}");
    assert_eq!((got[0]["type"].as_str(), got[0]["id"].as_str()), (Some("storageCb"), Some("s1")));
    assert_eq!(got[0]["msg"], st);
    assert!(drain(&mut b_in).is_empty());

    // A PC says "keep": B's eval pair is stored, then forwarded (after its commit).
    say(&h, &a, json!({"inspect": "keep"}), now).unwrap();
    assert!(crate::util::lock(&a.room).keeps_inspection());
    drain(&mut b_in);
    reply(&h, &store, &dev, Kind::EvalCb, &wire_b, json!({"result": 2})).await.unwrap();
    let cb = next_frame(&mut b_in).await;
    assert_eq!(
        (cb["type"].as_str(), cb["id"].as_str(), cb["msg"]["result"].as_i64()),
        (Some("evalCb"), Some("1"), Some(2))
    );
    assert!(drain(&mut a_in).iter().all(|f| f["type"] == "devices"), "A never sees B's reply");
    // "live" is not "keep": the next pair is not stored.
    say(&h, &a, json!({"inspect": "live"}), now).unwrap();
    assert!(ask(&a, Kind::Storage, "s2", json!({"op": "read"}), "read").is_empty());
    reply(&h, &store, &dev, Kind::StorageCb, &format!("{}:s2", a.member), json!({"result": {}}))
        .await
        .unwrap();
    let rows = store.page("r", &tag, 50, None, &Default::default()).await.unwrap();
    let rows: Vec<(&str, Option<&str>)> =
        rows.iter().map(|r| (r.kind.as_str(), r.method.as_deref())).collect();
    assert_eq!(rows, [("eval", Some("1 + 1"))], "only the pair made while a PC kept");
    // A post pair is stored whatever the PCs said, as before.
    assert!(super::tests::post(&h, &a, "p", None, 30_000, now).is_empty());
    let wire_p = format!("{}:p", a.member);
    reply(&h, &store, &dev, Kind::PostCb, &wire_p, json!({"method": "post", "result": 1})).await.unwrap();
    loop {
        let f = next_frame(&mut a_in).await;
        if f["type"] == "postCb" {
            break;
        }
    }
    assert_eq!(store.page("r", &tag, 50, None, &Default::default()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn batches_reach_history_only_while_a_pc_keeps_and_never_wait_for_it() {
    let (store, _) = Store::open("sqlite::memory:", crate::history::Budget::UNLIMITED).await.unwrap();
    let (h, now) = hub();
    let (pc, mut pc_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let tag = pc.new_room_tag.clone().unwrap();
    let (dev, _dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    say(&h, &dev, json!({"name": "Pixel"}), now).unwrap();
    let kept = |types: &str| {
        let (store, tag) = (&store, tag.clone());
        let types = crate::history::Types::parse(types).unwrap();
        async move {
            store.settled().await;
            let rows = store.page("r", &tag, 50, None, &types).await.unwrap();
            rows.iter().map(|r| r.result.get().to_owned()).collect::<Vec<_>>()
        }
    };
    // "live": delivered, not stored.
    say(&h, &pc, json!({"inspect": "live"}), now).unwrap();
    assert_eq!(h.inspect(&store, &dev, &batch(1), None, now).unwrap().sent, 1);
    assert!(kept("inspect").await.is_empty());
    // "keep": delivered and stored, one row per batch, with the device's name.
    say(&h, &pc, json!({"inspect": "keep"}), now).unwrap();
    assert_eq!(h.inspect(&store, &dev, &batch(2), None, now).unwrap().sent, 1);
    assert_eq!(kept("inspect").await, [batch(2).get().to_owned()]);
    let row =
        &store.page("r", &tag, 1, None, &crate::history::Types::parse("inspect").unwrap()).await.unwrap()[0];
    assert_eq!(
        (row.kind.as_str(), row.device.as_str(), row.device_name.as_deref()),
        ("inspect", &*dev.member, Some("Pixel"))
    );
    assert_eq!(
        (row.pc.as_str(), row.request.get(), row.url.is_none(), row.method.is_none()),
        ("", "null", true, true)
    );
    // Not among the pairs a plain history page lists.
    assert!(kept("").await.is_empty());
    // The keeper away still keeps (it will want them when it is back), and a batch nobody
    // live gets is still kept.
    h.leave(&pc, pc.conn, Leave::Lost, now);
    assert_eq!(h.inspect(&store, &dev, &batch(3), None, now).unwrap(), Spread::default());
    assert_eq!(kept("inspect").await.len(), 2);
    drain(&mut pc_in);
    assert_eq!(drops(&h, "inspect_history"), 0);
}

#[test]
fn what_a_member_said_of_inspection_survives_a_restart() {
    let (h, now) = hub();
    let (pc, _pc_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    let (dev, _dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    say(&h, &pc, json!({"inspect": "keep"}), now).unwrap();
    say(&h, &dev, json!({"inspect": {"storage": true}}), now).unwrap();
    let snap = serde_json::to_value(h.snapshot(now)).unwrap();
    let members = snap["rooms"][0]["members"].as_array().unwrap();
    assert_eq!(members.iter().map(|m| m["inspect"].clone()).collect::<Vec<_>>()[0], "keep");
    let (fresh, _) = hub();
    fresh.restore(serde_json::from_value(snap).unwrap(), now);
    let room = crate::util::lock(&fresh.rooms).get("r").cloned().unwrap();
    assert!(crate::util::lock(&room).keeps_inspection());
}

/// Cluster mode's bus, as a room sees it: records what it is asked to send.
#[derive(Default)]
struct Bus {
    sent: std::sync::Mutex<Vec<(String, String, bool)>>,
    full: std::sync::atomic::AtomicBool,
}

impl Peers for Bus {
    fn node(&self) -> &str {
        "here"
    }
    fn is_up(&self) -> bool {
        true
    }
    fn send_frame(&self, node: &str, _room: &str, to: &str, _frame: &str) -> bool {
        self.sent.lock().unwrap().push((node.into(), to.into(), false));
        true
    }
    fn send_droppable(&self, node: &str, _room: &str, to: &str, _frame: &str) -> bool {
        if self.full.load(Relaxed) {
            return false;
        }
        self.sent.lock().unwrap().push((node.into(), to.into(), true));
        true
    }
    fn send_request(&self, _node: &str, _req: RemoteRequest) -> bool {
        true
    }
    fn member_changed(
        &self,
        _room: &str,
        _id: &str,
        _info: Option<(tether_protocol::msg::MemberInfo, u64, Vec<u64>)>,
    ) {
    }
    fn member_departed(&self, _room: &str, _id: &str) {}
}

#[test]
fn in_cluster_mode_a_batch_goes_to_watching_pcs_on_other_relays_as_a_droppable_frame() {
    let bus = Arc::new(Bus::default());
    let mut limits = Limits::from_config(&crate::Config::defaults());
    limits.queue_frames = 4;
    let now = Now::read();
    let h = Hub::new(limits, [7; 32], Arc::default(), Some(bus.clone() as Arc<dyn Peers>), now);
    let (dev, mut dev_in) = join_as(&h, Role::Device, SECRET, None, now).unwrap();
    let (pc, mut pc_in) = join_as(&h, Role::Pc, SECRET, None, now).unwrap();
    drain(&mut dev_in);
    say(&h, &pc, json!({"inspect": "live"}), now).unwrap();
    drain(&mut dev_in);
    drain(&mut pc_in);
    let remote = |id: &str, inspect: Value, away: bool| {
        RemoteMember {
        info: serde_json::from_value(json!({
            "id": id, "role": "pc", "name": null, "appInfo": null, "since": 1, "away": away, "inspect": inspect
        }))
        .unwrap(),
        node: "there".into(),
        attached: 1,
        nonces: Vec::new(),
    }
    };
    h.set_remote(
        "r",
        vec![
            remote("p-watching", json!("keep"), false),
            remote("p-away", json!("live"), true),
            remote("p-not", Value::Null, false),
        ],
        now,
    );
    assert!(crate::util::lock(&pc.room).keeps_inspection(), "a PC on another relay keeps");
    bus.sent.lock().unwrap().clear();
    drain(&mut pc_in);
    drain(&mut dev_in);
    assert_eq!(inspect(&h, &dev, &batch(1), None).unwrap(), Spread { sent: 2, dropped: 0 });
    assert_eq!(*bus.sent.lock().unwrap(), [("there".to_owned(), "p-watching".to_owned(), true)]);
    assert_eq!(inspect_ns(&drain(&mut pc_in)), [1]);
    // A bus with no room to spare drops it, counted.
    bus.full.store(true, Relaxed);
    assert_eq!(inspect(&h, &dev, &batch(2), None).unwrap(), Spread { sent: 1, dropped: 1 });
    assert_eq!(drops(&h, "inspect_bus"), 1);
    assert_eq!(inspect_ns(&drain(&mut pc_in)), [2]);
    // Arriving from another relay: queued only within half the PC's queue, never kicking;
    // for a PC that does not watch (any more), dropped.
    let frame = |n: u64| format!(r#"{{"type":"inspect","from":"d-far","msg":{}}}"#, batch(n).get());
    for n in 10..14 {
        h.bus_frame("r", &pc.member, frame(n), true, now);
    }
    assert_eq!(inspect_ns(&drain(&mut pc_in)), [10, 11], "2 of a 4-frame queue");
    assert_eq!(drops(&h, "inspect_queue"), 2);
    say(&h, &pc, json!({"inspect": "off"}), now).unwrap();
    h.bus_frame("r", &pc.member, frame(20), true, now);
    assert!(inspect_ns(&drain(&mut pc_in)).is_empty());
}
