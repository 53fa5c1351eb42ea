//! The relay's budget of bytes held for members (`--max-buffered-bytes`): frames in outbound
//! queues and in away members' resume buffers, and request bodies awaiting replies. The count
//! is the `tether_buffered_bytes` gauge; whoever holds bytes takes them here and gives them
//! back when it lets them go (a queue when a frame is written or dropped, a resume buffer when
//! it is drained or dropped, the pending table when an entry leaves).
//!
//! What a sender asks the relay to carry (a request, a reply) must fit ([`Budget::try_take`]),
//! else it is refused to the sender; the relay's own frames (welcome, member lists, errors,
//! and frames already held that move from a queue into a resume buffer) are always taken
//! ([`Budget::take`]): they are small and bounded per queue by `--queue-frames`.

use crate::metrics::Metrics;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

/// A handle on the relay's budget; clones share it.
#[derive(Clone)]
pub struct Budget {
    /// The cap, bytes (0: none).
    cap: usize,
    /// The count lives in the metrics, so `/metrics` shows it as it is.
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Budget({} of {})", self.used(), self.cap)
    }
}

impl Budget {
    /// A budget of `cap` bytes (0: no cap), counted in `metrics.buffered_bytes`.
    pub fn new(cap: usize, metrics: Arc<Metrics>) -> Budget {
        Budget { cap, metrics }
    }

    /// The counters it keeps its count in (the pending table keeps its gauge there too).
    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Bytes held now.
    pub fn used(&self) -> usize {
        self.metrics.buffered_bytes.load(Relaxed)
    }

    /// Takes `n` bytes if they fit under the cap.
    #[must_use]
    pub fn try_take(&self, n: usize) -> bool {
        if self.cap == 0 {
            self.take(n);
            return true;
        }
        self.metrics
            .buffered_bytes
            .fetch_update(Relaxed, Relaxed, |used| used.checked_add(n).filter(|&after| after <= self.cap))
            .is_ok()
    }

    /// Whether `n` more bytes would fit now (a check before several takes that belong
    /// together; the takes themselves may then be forced).
    pub fn has_room(&self, n: usize) -> bool {
        self.cap == 0 || self.used().saturating_add(n) <= self.cap
    }

    /// Takes `n` bytes whether or not they fit.
    pub fn take(&self, n: usize) {
        self.metrics.buffered_bytes.fetch_add(n, Relaxed);
    }

    /// Gives back `n` bytes taken earlier.
    pub fn give(&self, n: usize) {
        // Never below zero, even if a bug gave back more than it took.
        let _ =
            self.metrics.buffered_bytes.fetch_update(Relaxed, Relaxed, |used| Some(used.saturating_sub(n)));
    }

    /// The refusal a sender gets when the relay holds all it may.
    pub(super) fn refusal() -> super::Refusal {
        super::Refusal::new(
            tether_protocol::ErrorCode::BufferFull,
            "the relay is holding all it may for its members right now (--max-buffered-bytes); try again shortly",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_fits_is_taken_what_does_not_is_refused_and_forced_takes_always_count() {
        let b = Budget::new(100, Arc::default());
        assert!(b.try_take(60));
        assert!(!b.try_take(41), "over the cap");
        assert!(b.has_room(40) && !b.has_room(41));
        assert!(b.try_take(40));
        b.take(10); // the relay's own frame: over the cap, still taken
        assert_eq!(b.used(), 110);
        b.give(110);
        assert_eq!(b.used(), 0);
        b.give(5);
        assert_eq!(b.used(), 0, "never below zero");
        let open = Budget::new(0, Arc::default());
        assert!(open.try_take(usize::MAX / 2) && open.has_room(usize::MAX / 4), "0 is no cap");
    }
}
