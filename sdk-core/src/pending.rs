//! Requests awaiting replies, keyed by id. A duplicate id is refused; every entry leaves on
//! its first reply, its error, its deadline, or the final disconnect.

use super::Millis;
use tether_protocol::Kind;

/// One request awaiting its reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `post` or `call`.
    pub kind: Kind,
    /// When it was sent (or queued).
    pub sent_at: Millis,
    /// When it times out.
    pub deadline: Millis,
}

/// Pending requests. A `Vec`: there are rarely more than a few, and a map type would cost the
/// wasm build several KB.
#[derive(Debug, Default)]
pub struct Pending {
    list: Vec<(String, Entry)>,
}

/// An id already in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateId(pub String);

impl Pending {
    /// Starts waiting for `id`.
    pub fn insert(&mut self, id: &str, entry: Entry) -> Result<(), DuplicateId> {
        if self.contains(id) {
            return Err(DuplicateId(id.to_owned()));
        }
        self.list.push((id.to_owned(), entry));
        Ok(())
    }

    /// The first reply (or error) for `id` takes the entry out.
    pub fn take(&mut self, id: &str) -> Option<Entry> {
        let i = self.list.iter().position(|(k, _)| k == id)?;
        Some(self.list.remove(i).1)
    }

    /// Whether `id` is awaited.
    pub fn contains(&self, id: &str) -> bool {
        self.list.iter().any(|(k, _)| k == id)
    }

    /// Entries whose deadline is at or before `now`, taken out, oldest first.
    pub fn expire(&mut self, now: Millis) -> Vec<(String, Entry)> {
        let (due, keep) = std::mem::take(&mut self.list).into_iter().partition(|(_, e)| e.deadline <= now);
        self.list = keep;
        due
    }

    /// Every entry, taken out (the connection is gone for good), oldest first.
    pub fn drain(&mut self) -> Vec<(String, Entry)> {
        std::mem::take(&mut self.list)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.list.iter().map(|(_, e)| e.deadline).min()
    }

    /// How many are awaited.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is awaited.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(deadline: Millis) -> Entry {
        Entry { kind: Kind::Post, sent_at: 0, deadline }
    }

    #[test]
    fn duplicate_ids_are_refused_and_every_entry_leaves_once() {
        let mut p = Pending::default();
        p.insert("1", e(100)).unwrap();
        assert_eq!(p.insert("1", e(200)), Err(DuplicateId("1".into())));
        p.insert("2", e(50)).unwrap();
        p.insert("3", e(300)).unwrap();
        assert_eq!(p.next_deadline(), Some(50));
        assert_eq!(p.take("1"), Some(e(100)));
        assert_eq!(p.take("1"), None, "a second reply finds nothing");
        assert_eq!(p.expire(49), vec![]);
        assert_eq!(p.expire(50).len(), 1);
        assert_eq!(p.next_deadline(), Some(300));
        assert_eq!(p.drain().len(), 1);
        assert!(p.is_empty());
        // The id is free again once its entry left.
        p.insert("1", e(10)).unwrap();
    }
}
