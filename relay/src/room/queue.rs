//! One connection's bounded outbound queue: the room side pushes into its [`Outbox`], the
//! connection's task reads its [`Inbox`]; and the [`Kick`] that ends the connection.

use super::{Budget, Frame, Refusal};
use crate::util::lock;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use tether_protocol::ErrorCode;
use tokio_util::sync::CancellationToken;

/// Tells a connection's task to end, and why.
#[derive(Default)]
pub struct Kick {
    token: CancellationToken,
    reason: OnceLock<Refusal>,
}

impl Kick {
    /// Ends the connection with this reason (the first reason given wins).
    pub fn fire(&self, code: ErrorCode, message: impl Into<String>) {
        let _ = self.reason.set(Refusal::new(code, message));
        self.token.cancel();
    }

    /// Whether it has been fired.
    pub fn is_fired(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once fired.
    pub async fn fired(&self) {
        self.token.cancelled().await;
    }

    /// Why it was fired.
    pub fn reason(&self) -> Refusal {
        self.reason.get().cloned().unwrap_or_else(|| Refusal::new(ErrorCode::Internal, "connection ended"))
    }
}

/// One connection's bounded outbound queue: frames in order, at most `max_frames` of them and
/// `max_bytes` in all. A plain deque under a lock with a wake-up, rather than a channel: a
/// connection that is idle holds no more than this struct (a channel keeps a block of slots
/// allocated per connection, which thousands of idle phones pay for).
struct Queue {
    state: Mutex<QueueState>,
    ready: tokio::sync::Notify,
    /// The relay's budget: every queued byte is taken from it and given back when the frame
    /// leaves the queue.
    budget: Budget,
}

struct QueueState {
    frames: VecDeque<Frame>,
    /// Their total size.
    bytes: usize,
    /// The reading side is gone: nothing more is accepted.
    closed: bool,
}

/// The start of every `devices` frame (the relay's own; `OutEnvelope` writes `type` first, and
/// no member may send that kind).
const DEVICES: &str = r#"{"type":"devices","#;

/// The sending side of one connection's bounded outbound queue.
#[derive(Clone)]
pub struct Outbox {
    queue: Arc<Queue>,
    max_frames: usize,
    max_bytes: usize,
    /// Ends the connection that reads this queue.
    pub kick: Arc<Kick>,
    /// Identifies the connection, so a stale task cannot detach a member that resumed elsewhere.
    pub conn: u64,
}

/// The receiving side, read by the connection's task. Dropping it closes the queue (and
/// frees what it held): later pushes see [`Push::Closed`].
pub struct Inbox {
    queue: Arc<Queue>,
}

/// A fresh queue for connection `conn`, holding at most `max_frames` frames and `max_bytes`,
/// its bytes taken from `budget`.
pub fn channel(max_frames: usize, max_bytes: usize, conn: u64, budget: Budget) -> (Outbox, Inbox) {
    let queue = Arc::new(Queue {
        state: Mutex::new(QueueState { frames: VecDeque::new(), bytes: 0, closed: false }),
        ready: tokio::sync::Notify::new(),
        budget,
    });
    let out = Outbox { queue: queue.clone(), max_frames, max_bytes, kick: Arc::new(Kick::default()), conn };
    (out, Inbox { queue })
}

impl Inbox {
    /// The next frame to write to the socket; waits until there is one.
    pub async fn recv(&mut self) -> Frame {
        loop {
            if let Some(f) = self.try_recv() {
                return f;
            }
            // A push after the check above leaves a permit, so this wakes at once then.
            self.queue.ready.notified().await;
        }
    }

    /// A frame already queued, if any (to batch writes).
    pub fn try_recv(&mut self) -> Option<Frame> {
        let mut state = lock(&self.queue.state);
        let f = state.frames.pop_front()?;
        state.bytes -= f.len();
        drop(state);
        self.queue.budget.give(f.len());
        Some(f)
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut state = lock(&self.queue.state);
        state.closed = true;
        state.frames = VecDeque::new();
        self.queue.budget.give(std::mem::take(&mut state.bytes));
    }
}

/// What became of a push.
pub(super) enum Push {
    Queued,
    /// The queue holds its cap: the reader is too slow.
    Full,
    /// The relay's budget has no room for this frame (refused to its sender).
    OverBudget,
    Closed,
}

impl Outbox {
    /// Queues `f`. A `payload` frame (a request or a reply a member sent) must fit the relay's
    /// budget; the relay's own frames are always taken.
    pub(super) fn push(&self, f: Frame, payload: bool) -> Push {
        let len = f.len();
        {
            let mut state = lock(&self.queue.state);
            if state.closed {
                return Push::Closed;
            }
            // One frame always fits in an empty queue, however large: the byte cap bounds a
            // queue's growth, not the largest frame (that is --max-frame's job).
            let before = state.bytes;
            if state.frames.len() >= self.max_frames || (before > 0 && before + len > self.max_bytes) {
                return Push::Full;
            }
            if !payload && f.as_str().starts_with(DEVICES) {
                // A newer member list replaces one still queued, in its place: the connection
                // gets the newest list as early as it would have got the older one, and not
                // the lists in between, which the newest overwrites anyway. (A burst of joins
                // in a room of ten queued up to nine lists per socket: bytes written, and
                // socket write buffers grown to hold them all.)
                if let Some(old) = state.frames.iter_mut().find(|q| q.as_str().starts_with(DEVICES)) {
                    let old_len = old.len();
                    *old = f;
                    state.bytes = state.bytes - old_len + len;
                    drop(state);
                    self.queue.budget.give(old_len);
                    self.queue.budget.take(len);
                    return Push::Queued;
                }
            }
            if !payload {
                self.queue.budget.take(len);
            } else if !self.queue.budget.try_take(len) {
                return Push::OverBudget;
            }
            state.bytes += len;
            state.frames.push_back(f);
        }
        self.queue.ready.notify_one();
        Push::Queued
    }

    /// Queues `f`, a frame that may be dropped (an `inspect` batch): only while the queue holds
    /// less than half its caps in frames and bytes (one frame still fits an empty queue), and
    /// only if it fits the relay's budget. Else it is dropped ([`Push::Full`],
    /// [`Push::OverBudget`]) and nobody is kicked: the other half of the queue stays for what
    /// must not be lost (replies, requests, member lists).
    pub(super) fn push_droppable(&self, f: Frame) -> Push {
        let len = f.len();
        {
            let mut state = lock(&self.queue.state);
            if state.closed {
                return Push::Closed;
            }
            let before = state.bytes;
            if state.frames.len() >= self.max_frames / 2 || (before > 0 && before + len > self.max_bytes / 2)
            {
                return Push::Full;
            }
            if !self.queue.budget.try_take(len) {
                return Push::OverBudget;
            }
            state.bytes += len;
            state.frames.push_back(f);
        }
        self.queue.ready.notify_one();
        Push::Queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_member_list_replaces_one_still_queued_in_its_place() {
        let budget = Budget::new(0, Arc::default());
        let (out, mut inbox) = channel(8, 10_000, 1, budget.clone());
        let list = |n: usize| {
            Frame::from(format!(r#"{{"type":"devices","msg":{{"members":[{}]}}}}"#, "1,".repeat(n)))
        };
        let reply = Frame::from(r#"{"type":"postCb","id":"1","msg":{}}"#);
        assert!(matches!(out.push(list(1), false), Push::Queued));
        assert!(matches!(out.push(reply.clone(), true), Push::Queued));
        assert!(matches!(out.push(list(2), false), Push::Queued));
        assert!(matches!(out.push(list(9), false), Push::Queued));
        assert_eq!(budget.used(), list(9).len() + reply.len(), "the replaced lists' bytes are given back");
        assert_eq!(inbox.try_recv(), Some(list(9)), "the newest, where the first one was");
        assert_eq!(inbox.try_recv(), Some(reply));
        assert_eq!(inbox.try_recv(), None);
        assert_eq!(budget.used(), 0);
        // Written already: the next list is queued anew. A member's own frame that merely
        // mentions devices is not a list.
        assert!(matches!(out.push(list(3), false), Push::Queued));
        let other = Frame::from(r#"{"type":"post","msg":{"url":"{\"type\":\"devices\","}}"#);
        assert!(matches!(out.push(other.clone(), true), Push::Queued));
        assert!(matches!(out.push(list(4), false), Push::Queued));
        assert_eq!(inbox.try_recv(), Some(list(4)));
        assert_eq!(inbox.try_recv(), Some(other));
    }

    #[tokio::test]
    async fn an_outbound_queue_is_bounded_in_frames_and_bytes_keeps_order_and_closes_with_its_reader() {
        let budget = Budget::new(0, Arc::default());
        let (out, mut inbox) = channel(3, 100, 1, budget.clone());
        let frame = |n: usize| Frame::from("x".repeat(n));
        // One frame always fits in an empty queue, however large.
        assert!(matches!(out.push(frame(500), true), Push::Queued));
        assert_eq!(budget.used(), 500);
        assert!(matches!(out.push(frame(1), true), Push::Full), "over the byte cap");
        assert_eq!(inbox.recv().await.len(), 500);
        for n in [10, 20, 30] {
            assert!(matches!(out.push(frame(n), true), Push::Queued));
        }
        assert!(matches!(out.push(frame(1), true), Push::Full), "over the frame cap");
        assert_eq!([10, 20, 30].map(|_| inbox.try_recv().unwrap().len()), [10, 20, 30]);
        assert!(inbox.try_recv().is_none());
        // A reader waiting on an empty queue wakes for the next push.
        let waiting = tokio::spawn(async move {
            let f = inbox.recv().await;
            (f, inbox)
        });
        tokio::task::yield_now().await;
        assert!(matches!(out.push(frame(7), true), Push::Queued));
        let (f, inbox) = waiting.await.unwrap();
        assert_eq!(f.len(), 7);
        assert!(matches!(out.push(frame(3), true), Push::Queued));
        assert_eq!(budget.used(), 3, "what was written is given back");
        drop(inbox);
        assert_eq!(budget.used(), 0, "what was queued is given back with the reader");
        assert!(matches!(out.push(frame(1), true), Push::Closed), "its reader is gone");
    }

    #[test]
    fn a_droppable_frame_takes_only_the_first_half_of_a_queue_and_the_budget_and_never_kicks() {
        let budget = Budget::new(1000, Arc::default());
        let (out, mut inbox) = channel(10, 100, 1, budget.clone());
        let frame = |n: usize| Frame::from("x".repeat(n));
        // One always fits an empty queue; then only up to half the bytes (50) ...
        assert!(matches!(out.push_droppable(frame(70)), Push::Queued));
        assert!(matches!(out.push_droppable(frame(1)), Push::Full), "over half the bytes");
        assert!(matches!(out.push(frame(25), true), Push::Queued), "the other half is for the rest");
        assert!(!out.kick.is_fired(), "a dropped frame kicks nobody");
        inbox.try_recv();
        inbox.try_recv();
        // ... and up to half the frames (5).
        for _ in 0..5 {
            assert!(matches!(out.push_droppable(frame(1)), Push::Queued));
        }
        assert!(matches!(out.push_droppable(frame(1)), Push::Full), "over half the frames");
        for _ in 0..5 {
            assert!(matches!(out.push(frame(1), true), Push::Queued), "the other half still takes frames");
        }
        while inbox.try_recv().is_some() {}
        // Past the relay's budget it is dropped, not forced in like the relay's own frames.
        budget.take(990);
        assert!(matches!(out.push_droppable(frame(20)), Push::OverBudget));
        assert_eq!(budget.used(), 990, "nothing taken for it");
        budget.give(990);
        drop(inbox);
        assert!(matches!(out.push_droppable(frame(1)), Push::Closed));
    }

    #[test]
    fn a_payload_frame_must_fit_the_relays_budget_the_relays_own_frames_always_go() {
        let budget = Budget::new(100, Arc::default());
        let (a, _a) = channel(10, 1000, 1, budget.clone());
        let (b, _b) = channel(10, 1000, 2, budget.clone());
        let frame = |n: usize| Frame::from("x".repeat(n));
        assert!(matches!(a.push(frame(80), true), Push::Queued));
        assert!(
            matches!(b.push(frame(30), true), Push::OverBudget),
            "the budget is the relay's, not the queue's"
        );
        assert!(matches!(b.push(frame(30), false), Push::Queued), "the relay's own frame");
        assert_eq!(budget.used(), 110);
        drop(_a);
        assert!(matches!(b.push(frame(30), true), Push::Queued), "room again once the first queue let go");
    }
}
