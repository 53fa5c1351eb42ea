//! Requests awaiting replies in one room, keyed by (device, request id as the device sees
//! it), bounded in count and in the bytes their bodies hold. An entry leaves on its reply, on
//! its deadline ([`PendingTable::expire`]) or when its device or its PC leaves the room. The
//! entries of every room together are the `tether_pending_requests` gauge.

use super::Budget;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tether_protocol::Kind;

/// (device, the request id the device sees).
pub(super) type Key = (Arc<str>, String);

/// Requests awaiting replies, with the bytes their bodies hold: the room pays for both, up to
/// `Limits::max_pending` and `Limits::max_pending_bytes` (past them a new request is refused
/// `rate_limited`), and the bodies' bytes are taken from the relay's [`Budget`] too.
pub(super) struct PendingTable {
    map: HashMap<Key, Pending>,
    pub(super) bytes: usize,
    budget: Budget,
}

/// One request awaiting one device's reply.
pub(super) struct Pending {
    pub(super) pc: Arc<str>,
    /// The id the PC gave; devices see `{pc}:{id}`, so two PCs may both use "1".
    pub(super) pc_id: String,
    pub(super) kind: Kind,
    pub(super) target: String,
    /// The request body, shared by every device of a broadcast.
    pub(super) request: Arc<str>,
    pub(super) sent_at: u64,
    pub(super) deadline: Instant,
    /// The history tag of the asking PC's secret: the pair is stored under it.
    pub(super) tag: Arc<str>,
}

impl PendingTable {
    /// An empty table whose bodies are paid for from `budget`.
    pub(super) fn new(budget: Budget) -> PendingTable {
        PendingTable { map: HashMap::new(), bytes: 0, budget }
    }

    /// Whether a request whose bodies come to `bytes` fits the relay's budget now.
    pub(super) fn has_room(&self, bytes: usize) -> bool {
        self.budget.has_room(bytes)
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn contains(&self, key: &Key) -> bool {
        self.map.contains_key(key)
    }

    /// Counts `n` entries more (or fewer) in the `tether_pending_requests` gauge.
    fn count(&self, n: i64) {
        self.budget.metrics().pending.fetch_add(n, Relaxed);
    }

    pub(super) fn insert(&mut self, key: Key, p: Pending) {
        self.bytes += p.request.len();
        self.budget.take(p.request.len());
        match self.map.insert(key, p) {
            Some(old) => {
                self.bytes -= old.request.len();
                self.budget.give(old.request.len());
            }
            None => self.count(1),
        }
    }

    pub(super) fn remove(&mut self, key: &Key) -> Option<Pending> {
        let p = self.map.remove(key)?;
        self.bytes -= p.request.len();
        self.budget.give(p.request.len());
        self.count(-1);
        Some(p)
    }

    /// Keeps the entries `keep` says to; returns the keys of the others.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&Key, &Pending) -> bool) -> Vec<Key> {
        let mut gone = Vec::new();
        let (bytes, budget) = (&mut self.bytes, &self.budget);
        self.map.retain(|k, p| {
            let kept = keep(k, p);
            if !kept {
                *bytes -= p.request.len();
                budget.give(p.request.len());
                gone.push(k.clone());
            }
            kept
        });
        self.count(-(gone.len() as i64));
        gone
    }

    /// Forgets the requests whose deadline has passed at `now`, and returns their keys. Nobody
    /// is told: the PC's own timeout has fired by then, and a late reply is refused to its
    /// device (`no_target`).
    pub(super) fn expire(&mut self, now: Instant) -> Vec<Key> {
        self.retain(|_, p| p.deadline > now)
    }

    pub(super) fn keys_for(&self, device: &str) -> Vec<Key> {
        self.map.keys().filter(|(dev, _)| &**dev == device).cloned().collect()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&Key, &Pending)> {
        self.map.iter()
    }

    #[cfg(test)]
    pub(super) fn get(&self, key: &Key) -> Option<&Pending> {
        self.map.get(key)
    }
}

impl Drop for PendingTable {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
        self.count(-(self.map.len() as i64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pending(body: &str, deadline: Instant) -> Pending {
        Pending {
            pc: "p-1".into(),
            pc_id: "1".into(),
            kind: Kind::Post,
            target: "https://x/".into(),
            request: body.into(),
            sent_at: 0,
            deadline,
            tag: "".into(),
        }
    }

    #[test]
    fn the_bytes_held_follow_every_insert_replace_removal_and_expiry() {
        let t0 = Instant::now();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let budget = Budget::new(0, metrics.clone());
        let mut t = PendingTable::new(budget.clone());
        let gauge = || metrics.pending.load(Relaxed);
        let key = |d: &str, id: &str| (Arc::<str>::from(d), id.to_owned());
        t.insert(key("d-1", "p:1"), pending("12345", t0 + Duration::from_secs(1)));
        t.insert(key("d-2", "p:1"), pending("123", t0 + Duration::from_secs(5)));
        assert_eq!((t.len(), t.bytes, budget.used(), gauge()), (2, 8, 8, 2));
        t.insert(key("d-2", "p:1"), pending("1", t0 + Duration::from_secs(5)));
        assert_eq!((t.len(), t.bytes, gauge()), (2, 6, 2), "a replaced entry's bytes are given back");
        assert_eq!(t.keys_for("d-1"), vec![key("d-1", "p:1")]);
        assert_eq!(t.expire(t0 + Duration::from_secs(1)), vec![key("d-1", "p:1")]);
        assert!(!t.contains(&key("d-1", "p:1")), "gone at its deadline");
        assert_eq!((t.len(), t.bytes, budget.used(), gauge()), (1, 1, 1, 1));
        assert!(t.remove(&key("d-2", "p:1")).is_some());
        assert_eq!((t.len(), t.bytes, budget.used(), gauge()), (0, 0, 0, 0));
        t.insert(key("d-3", "p:2"), pending("12", t0 + Duration::from_secs(5)));
        assert_eq!(gauge(), 1);
        drop(t);
        assert_eq!((budget.used(), gauge()), (0, 0), "a room's table gives back all it held when it goes");
    }
}
