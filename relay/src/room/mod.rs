//! Rooms: membership, secrets, presence, resume buffers, and routing between members.
//!
//! The decisions are plain, synchronous code in the spirit of a sans-IO core: each takes the
//! time it is made at ([`Now`]) from its caller and never reads the clock, sleeps or touches a
//! socket. What a decision sends goes into the members' bounded [`Outbox`]es (each drained by
//! its connection's task) or, in cluster mode, to [`Peers`]; the socket tasks (`ws.rs`), the
//! sweeper and the cluster bus only feed the rooms and carry out what they queue. So presence,
//! resume, expiry and routing are tested here with time moved by hand ([`tests`]).
//!
//! [`Hub`] owns every room. Each room sits behind its own mutex, held only for short,
//! synchronous sections (never across an `.await`), so a slow member never stalls its room.
//!
//! # Layout
//! - [`budget`]: the relay's budget of bytes held for members (`--max-buffered-bytes`).
//! - [`queue`]: one connection's bounded outbound queue ([`Outbox`] / [`Inbox`]) and its [`Kick`].
//! - [`member`]: a member and how it is reached ([`Link`]: live here, or away with its
//!   [`ResumeBuffer`]).
//! - [`pending`]: requests awaiting replies, bounded in count and bytes per room.
//! - [`peers`]: the seam to other nodes: the [`Peers`] trait cluster mode implements, and the
//!   types that cross nodes ([`RemoteMember`], [`RemoteRequest`]).
//! - [`core`]: one [`Room`]: delivering a frame, the member list, presence and grace expiry.
//! - [`join`]: who may join as whom, and resuming a member with a one-use token.
//! - [`route`]: a PC's `post`/`call`/`storage`/`eval` to devices, and a device's reply to the
//!   PC that asked.
//! - [`collect`]: the answers to one HTTP API request, device by device, and when it is
//!   answered (the first reply, or every device's with `all`; never past its deadline).
//! - [`inspect`]: a device's `inspect` batches to the room's watching PCs, as frames that may
//!   be dropped; whether `storage`/`eval` pairs are kept.
//! - [`remote`]: a room's members and requests on other nodes (cluster mode).
//! - [`hub`]: the map of rooms: finds or makes a room, then lets the room decide.
//! - [`snapshot`]: the rooms saved on SIGTERM and restored by the next process.

#[cfg(test)]
mod api_tests;
pub mod budget;
pub mod collect;
pub mod core;
pub mod hub;
pub mod inspect;
#[cfg(test)]
mod inspect_tests;
pub mod join;
pub mod member;
pub mod peers;
pub mod pending;
pub mod queue;
pub mod remote;
pub mod route;
pub mod snapshot;
#[cfg(test)]
mod tests;

pub use self::core::{Leave, Room};
pub use budget::Budget;
pub use hub::{Hub, Joined};
pub use inspect::Spread;
pub use join::JoinRequest;
pub use member::{Holding, Link, ResumeBuffer};
pub use peers::{Peers, RemoteMember, RemoteRequest};
pub use queue::{Inbox, Kick, Outbox};
pub use route::Dispatched;
pub use snapshot::Snapshot;

use axum::extract::ws::Utf8Bytes;
use std::time::{Duration, Instant};
use tether_protocol::ErrorCode;

/// One frame of text on its way to a member; cheap to clone for broadcasts.
pub type Frame = Utf8Bytes;

/// The time a decision is made at, read once by whoever feeds the rooms (a socket task, the
/// sweeper, the bus) and passed in: nothing else under `room/` reads the clock.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// For deadlines and grace windows.
    pub at: Instant,
    /// Milliseconds since the Unix epoch, for what is shown or stored (`since`, history times).
    pub ms: u64,
}

impl Now {
    /// The clock, now.
    pub fn read() -> Now {
        Now { at: Instant::now(), ms: crate::now_ms() }
    }

    /// The same moment seen `d` later (tests move time by hand).
    pub fn after(self, d: Duration) -> Now {
        Now { at: self.at + d, ms: self.ms + d.as_millis() as u64 }
    }
}

/// A refusal to tell the sender about, as an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The code.
    pub code: ErrorCode,
    /// For a person.
    pub message: String,
}

impl Refusal {
    /// A refusal with this code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into() }
    }

    fn with_note(mut self, note: &str) -> Refusal {
        self.message = format!("{} ({note})", self.message);
        self
    }
}

/// The target is on another relay and the bus between relays is down.
fn unreachable_refusal(who: &str) -> Refusal {
    Refusal::new(
        ErrorCode::ClusterUnavailable,
        format!(
            "{who} is on another relay and the bus between relays (Redis) is down; try again when it is back"
        ),
    )
}

/// What became of a frame given to [`Room::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// In the member's outbound queue.
    Queued,
    /// In the away member's resume buffer.
    Buffered,
    /// The member's queue was full: it is being disconnected as a slow consumer.
    Full,
    /// The away member's buffer was full.
    BufferFull,
    /// The room's away members hold all the room may (`Limits::room_buffered_bytes`).
    RoomFull,
    /// The relay holds all it may for its members (`--max-buffered-bytes`).
    OverBudget,
    /// The member is on another node and the bus between nodes is down.
    Unreachable,
    /// No such member.
    Gone,
}

/// The per-room limits, from the config.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rooms one address may create per minute (0: no cap).
    pub new_rooms_per_ip: u32,
    /// Ping interval.
    pub heartbeat: Duration,
    /// Away grace window.
    pub grace: Duration,
    /// Frames kept for an away member.
    pub resume_buffer: usize,
    /// Bytes kept for an away member (and queued toward a live one).
    pub queue_bytes: usize,
    /// Bytes the whole relay holds for members (0: no cap): see [`Budget`].
    pub max_buffered_bytes: usize,
    /// Bytes one room's away members hold in their resume buffers, together.
    pub room_buffered_bytes: usize,
    /// Frames queued toward a live member.
    pub queue_frames: usize,
    /// Members per room.
    pub max_members: usize,
    /// Requests awaiting replies per room.
    pub max_pending: usize,
    /// Bytes of request bodies held per room while their replies are awaited (each device of
    /// a broadcast counts the body once).
    pub max_pending_bytes: usize,
    /// Largest frame.
    pub max_frame: usize,
    /// Frames per second one connection may send.
    pub rate: u32,
    /// Burst above the rate.
    pub burst: u32,
    /// Bytes of `inspect` frames per second one device may send (`--inspect-rate`).
    pub inspect_rate: u32,
}

impl Limits {
    /// From the relay's config.
    pub fn from_config(c: &crate::Config) -> Limits {
        Limits {
            new_rooms_per_ip: c.max_new_rooms_per_ip,
            heartbeat: c.heartbeat(),
            grace: c.grace(),
            resume_buffer: c.resume_buffer,
            queue_bytes: c.queue_bytes,
            max_buffered_bytes: c.max_buffered_bytes,
            room_buffered_bytes: c.max_room_buffered_bytes,
            // The queue must take the welcome, every buffered frame and a devices list at once.
            queue_frames: (c.queue_frames as usize).max(c.resume_buffer + 8),
            max_members: c.max_room_members.max(1),
            max_pending: c.max_pending.max(1),
            max_pending_bytes: c.max_pending_bytes,
            max_frame: c.max_frame,
            rate: c.rate_limit,
            burst: c.rate_burst,
            inspect_rate: c.inspect_rate,
        }
    }
}
