//! The restart snapshot: what a relay stopping on SIGTERM leaves in its store for the next
//! process ([`save`]), and what that process restores at start ([`load`]): every room with its
//! key, its members (away, with the frames buffered for them) and the requests awaiting
//! replies. Not in cluster mode, where members resume on the other nodes.

use super::core::Room;
use super::hub::Hub;
use super::member::{Link, Member, ResumeBuffer};
use super::pending::{Pending, PendingTable};
use super::{Budget, Frame, Now};
use crate::history::Store;
use crate::token::{device_key, secret_digest, tag};
use crate::util::lock;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tether_protocol::{Kind, Role, limits};

/// The `meta` key of the restart snapshot in the store.
const SNAPSHOT_KEY: &str = "snapshot";

/// What a relay stopping on SIGTERM leaves in its store for the next process: see
/// [`Hub::snapshot`] and [`Hub::restore`].
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken, ms since the epoch.
    saved_at: u64,
    rooms: Vec<SnapRoom>,
}

impl Snapshot {
    /// How many rooms it holds.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapRoom {
    name: String,
    /// The PC secret's digest: what relays before device keys saved (still restored).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    digest: Vec<u8>,
    /// The device key's digest.
    #[serde(default)]
    key: Vec<u8>,
    /// The PC secret's history tag, when the room knows it.
    #[serde(default)]
    tag: Option<String>,
    members: Vec<SnapMember>,
    pending: Vec<SnapPending>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapMember {
    id: String,
    role: Role,
    name: Option<String>,
    app_info: Option<serde_json::Value>,
    /// Its `hello.inspect` (absent from relays before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inspect: Option<tether_protocol::msg::Inspection>,
    since: u64,
    buffer: Vec<String>,
    /// The nonces of the tokens it may resume with (see `Member::nonce`).
    #[serde(default)]
    nonce: Option<u64>,
    #[serde(default)]
    prev_nonce: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SnapPending {
    device: String,
    id: String,
    pc: String,
    pc_id: String,
    kind: Kind,
    target: String,
    request: String,
    sent_at: u64,
    left_ms: u64,
    /// The asking PC's history tag; the room's when absent.
    #[serde(default)]
    tag: Option<String>,
}

/// After every socket closed on shutdown: the rooms go into `store`, for the next process.
pub async fn save(hub: &Hub, store: &Store, now: Now) {
    let snap = hub.snapshot(now);
    let rooms = snap.rooms();
    match serde_json::to_vec(&snap) {
        Ok(bytes) => match store.put_meta(SNAPSHOT_KEY, bytes).await {
            Ok(()) => tracing::info!(rooms, "rooms saved for a restart within the grace window"),
            Err(e) => tracing::error!(error = %e, "cannot save the rooms for a restart"),
        },
        Err(e) => tracing::error!(error = %e, "cannot save the rooms for a restart"),
    }
}

/// At start: what the previous process saved on SIGTERM, if its grace window is still open.
pub async fn load(hub: &Hub, store: &Store, now: Now) {
    match store.take_meta(SNAPSHOT_KEY).await {
        Ok(Some(bytes)) => match serde_json::from_slice::<Snapshot>(&bytes) {
            Ok(snap) => {
                let members = hub.restore(snap, now);
                tracing::info!(
                    members,
                    rooms = hub.room_count(),
                    "restored the rooms of the previous process"
                );
            }
            Err(e) => tracing::warn!(error = %e, "the saved rooms are unreadable; starting empty"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the saved rooms; starting empty"),
    }
}

impl Hub {
    /// Everything a member resuming after a restart needs: every room with its key's digest,
    /// its members (with the frames buffered for them) and the requests awaiting replies.
    /// Taken on SIGTERM once every socket has closed (every member is then away).
    pub fn snapshot(&self, now: Now) -> Snapshot {
        let rooms: Vec<Arc<Mutex<Room>>> = lock(&self.rooms).values().cloned().collect();
        let rooms = rooms
            .iter()
            .map(|r| {
                let room = lock(r);
                let members = room
                    .members
                    .iter()
                    .map(|m| SnapMember {
                        id: m.id.to_string(),
                        role: m.role,
                        name: m.name.clone(),
                        app_info: m.app_info.clone(),
                        inspect: m.inspect,
                        since: m.since,
                        buffer: match &m.link {
                            Link::Away { buffer, .. } => {
                                buffer.frames().map(|f| f.as_str().to_owned()).collect()
                            }
                            Link::Live(_) => Vec::new(),
                        },
                        nonce: m.nonce,
                        prev_nonce: m.prev_nonce,
                    })
                    .collect();
                let pending = room
                    .pending
                    .iter()
                    .map(|((device, id), p)| SnapPending {
                        device: device.to_string(),
                        id: id.clone(),
                        pc: p.pc.to_string(),
                        pc_id: p.pc_id.clone(),
                        kind: p.kind,
                        target: p.target.clone(),
                        request: p.request.to_string(),
                        sent_at: p.sent_at,
                        left_ms: p.deadline.saturating_duration_since(now.at).as_millis() as u64,
                        tag: Some(p.tag.to_string()),
                    })
                    .collect();
                SnapRoom {
                    name: room.name.to_string(),
                    digest: Vec::new(),
                    key: room.key.to_vec(),
                    tag: room.tag.as_deref().map(str::to_owned),
                    members,
                    pending,
                }
            })
            .filter(|r| !r.members.is_empty())
            .collect();
        Snapshot { saved_at: now.ms, rooms }
    }

    /// Restores what [`Hub::snapshot`] saved: every member away for what is left of its grace
    /// window at `now` (the time the relay was down counts), with its buffer; requests keep what
    /// is left of their timeouts. Gives how many members came back; none once the window is over.
    pub fn restore(&self, snap: Snapshot, now: Now) -> usize {
        let down = now.ms.saturating_sub(snap.saved_at);
        let Some(grace_left) = self.limits.grace.checked_sub(Duration::from_millis(down)) else { return 0 };
        let mut restored = 0;
        let budget = Budget::new(self.limits.max_buffered_bytes, self.metrics.clone());
        let mut rooms = lock(&self.rooms);
        for r in snap.rooms {
            let (key, room_tag) = if let Ok(key) = <[u8; 32]>::try_from(r.key.as_slice()) {
                (key, r.tag.map(Arc::<str>::from))
            } else if let Ok(pc) = <[u8; 32]>::try_from(r.digest.as_slice()) {
                (secret_digest(&r.name, &device_key(&pc)), Some(tag(&pc).into()))
            } else {
                continue;
            };
            if !limits::valid_room(&r.name) || rooms.contains_key(r.name.as_str()) {
                continue;
            }
            let members: Vec<Member> = r
                .members
                .into_iter()
                .take(self.limits.max_members)
                .map(|m| {
                    let buffer = ResumeBuffer::holding(m.buffer.into_iter().map(Frame::from), budget.clone());
                    Member {
                        nonce: m.nonce,
                        prev_nonce: m.prev_nonce,
                        id: m.id.into(),
                        role: m.role,
                        name: m.name,
                        app_info: m.app_info,
                        inspect: m.inspect,
                        since: m.since,
                        attached: m.since,
                        // conn 0 is never a live connection's: no late leave applies to it.
                        link: Link::Away { conn: 0, until: now.at + grace_left, buffer, slot: None },
                    }
                })
                .collect();
            let mut pending = PendingTable::new(budget.clone());
            for p in r.pending {
                if p.left_ms <= down || !members.iter().any(|m| *m.id == *p.device) {
                    continue;
                }
                let entry = Pending {
                    pc: p.pc.into(),
                    pc_id: p.pc_id,
                    kind: p.kind,
                    target: p.target,
                    request: p.request.into(),
                    sent_at: p.sent_at,
                    deadline: now.at + Duration::from_millis(p.left_ms - down),
                    tag: p.tag.map(Arc::from).or_else(|| room_tag.clone()).unwrap_or_else(|| "".into()),
                };
                pending.insert((p.device.into(), p.id), entry);
            }
            restored += members.len();
            self.metrics.away.fetch_add(members.len() as i64, Relaxed);
            let name: Arc<str> = r.name.into();
            let mut room = Room::new(name.clone(), key, self.limits.clone(), self.metrics.clone(), None);
            room.tag = room_tag;
            room.members = members;
            room.pending = pending;
            rooms.insert(name, Arc::new(Mutex::new(room)));
        }
        self.metrics.rooms.store(rooms.len() as i64, Relaxed);
        restored
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::hub;
    use super::*;
    use crate::token::digests_match;
    use serde_json::json;

    fn saved(now: Now, ms_ago: u64, left_ms: u64) -> Snapshot {
        serde_json::from_value(json!({
            "saved_at": now.ms - ms_ago,
            "rooms": [{
                "name": "r", "digest": secret_digest("r", "s").to_vec(),
                "members": [
                    {"id": "p-1", "role": "pc", "name": null, "app_info": null, "since": 1, "buffer": ["{\"type\":\"x\"}"]},
                    {"id": "d-1", "role": "device", "name": "phone", "app_info": {"v": 1}, "since": 1, "buffer": []}
                ],
                "pending": [{"device": "d-1", "id": "p-1:7", "pc": "p-1", "pc_id": "7", "kind": "post",
                             "target": "https://x/", "request": "{}", "sent_at": 1, "left_ms": left_ms}]
            }]
        }))
        .unwrap()
    }

    #[test]
    fn a_snapshot_restores_away_members_their_buffers_and_what_is_left_of_timeouts() {
        let (h, now) = hub();
        assert_eq!(h.restore(saved(now, 1_000, 60_000), now), 2);
        assert_eq!(h.metrics.away.load(Relaxed), 2);
        let room = lock(&h.rooms).get("r").cloned().unwrap();
        let room = lock(&room);
        // An older relay's snapshot: the PC secret's digest becomes the room's key and tag.
        let pc_digest = secret_digest("r", "s");
        assert!(digests_match(&room.key, &secret_digest("r", &device_key(&pc_digest))));
        assert_eq!(room.tag.as_deref(), Some(tag(&pc_digest).as_str()));
        let pc = &room.members[room.index_of("p-1").unwrap()];
        assert!(matches!(&pc.link, Link::Away { buffer, conn: 0, .. } if buffer.len() == 1));
        let key = (Arc::<str>::from("d-1"), "p-1:7".to_owned());
        let p = room.pending.get(&key).expect("the request still awaits its reply");
        assert_eq!(p.deadline - now.at, Duration::from_millis(59_000), "the time down counts");
        // And it saves the same way.
        drop(room);
        let again = serde_json::to_value(h.snapshot(now)).unwrap();
        assert_eq!(again["rooms"][0]["members"].as_array().unwrap().len(), 2);
        assert_eq!(again["rooms"][0]["pending"][0]["pc_id"], "7");
        assert_eq!(again["rooms"][0]["pending"][0]["left_ms"], 59_000);
        assert_eq!(again["rooms"][0]["key"].as_array().unwrap().len(), 32);
        assert_eq!(again["rooms"][0]["pending"][0]["tag"], tag(&pc_digest));
        assert!(again["rooms"][0].get("digest").is_none(), "the PC secret's digest is not saved");
    }

    #[test]
    fn nothing_comes_back_once_the_grace_window_is_over_and_spent_requests_stay_gone() {
        let (h, now) = hub();
        let grace = h.limits.grace.as_millis() as u64;
        assert_eq!(h.restore(saved(now, grace + 1, 60_000), now), 0);
        assert_eq!(h.room_count(), 0);
        let (h, now) = hub();
        assert_eq!(h.restore(saved(now, 2_000, 1_500), now), 2, "members come back");
        let room = lock(&h.rooms).get("r").cloned().unwrap();
        assert_eq!(lock(&room).pending.len(), 0, "a request whose timeout passed while down does not");
    }

    #[tokio::test]
    async fn what_is_saved_in_the_store_is_restored_once() {
        let (store, _) = Store::open("sqlite::memory:", crate::history::Budget::UNLIMITED).await.unwrap();
        let (h, now) = hub();
        h.restore(saved(now, 0, 60_000), now);
        save(&h, &store, now).await;
        let (fresh, _) = hub();
        load(&fresh, &store, now.after(Duration::from_millis(500))).await;
        assert_eq!(fresh.room_count(), 1);
        assert_eq!(fresh.metrics.away.load(Relaxed), 2);
        let (again, _) = hub();
        load(&again, &store, now).await;
        assert_eq!(again.room_count(), 0, "taken once");
    }
}
