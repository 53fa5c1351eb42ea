//! The local history: the URLs and methods recently run, newest first, de-duplicated and
//! capped, with what is needed to run each again. Stored as JSON (in localStorage by the web
//! layer); a corrupt or foreign value is ignored rather than breaking the page.

use super::Millis;
use super::json::Json;

/// How many entries are kept by default.
pub const DEFAULT_CAP: usize = 50;

/// One thing run.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `post` or `call` (`type` in JSON).
    pub kind: String,
    /// The URL (post) or method (call).
    pub target: String,
    /// The rest of the request (post: method, body, headers; call: params), to run it again.
    pub options: Json,
    /// When it was last run.
    pub at: Millis,
    /// How many times it was run.
    pub count: u32,
}

impl Entry {
    /// Reads one stored entry.
    fn from_json(v: &Json) -> Option<Entry> {
        Some(Entry {
            kind: v["type"].as_str()?.to_owned(),
            target: v["target"].as_str()?.to_owned(),
            options: v["options"].clone(),
            at: v["at"].as_u64()?,
            count: v["count"].as_u64().map_or(1, |c| c.min(u32::MAX as u64) as u32),
        })
    }

    /// `{type, target, options, at, count}`.
    pub fn to_json(&self) -> Json {
        Json::obj([
            ("type", self.kind.as_str().into()),
            ("target", self.target.as_str().into()),
            ("options", self.options.clone()),
            ("at", Json::uint(self.at)),
            ("count", Json::uint(u64::from(self.count))),
        ])
    }
}

/// Newest first; one entry per (type, target).
#[derive(Debug, Clone, PartialEq)]
pub struct LocalHistory {
    entries: Vec<Entry>,
    cap: usize,
}

impl LocalHistory {
    /// An empty history keeping at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        LocalHistory { entries: Vec::new(), cap: cap.max(1) }
    }

    /// Reads what [`LocalHistory::to_json`] wrote; anything unreadable gives an empty history.
    pub fn from_json(json: Option<&str>, cap: usize) -> Self {
        let mut h = LocalHistory::new(cap);
        if let Some(Json::Arr(items)) = json.and_then(|j| Json::parse(j).ok()) {
            // All or nothing: a list with a foreign entry is not ours.
            if let Some(entries) = items.iter().map(Entry::from_json).collect::<Option<Vec<_>>>() {
                h.entries = entries;
                h.entries.truncate(h.cap);
            }
        }
        h
    }

    /// For storage, and for the page: `[{type, target, options, at, count}]`.
    pub fn to_json(&self) -> Json {
        Json::Arr(self.entries.iter().map(Entry::to_json).collect())
    }

    /// Records a run: an existing (type, target) moves to the front with the new options.
    pub fn record(&mut self, kind: &str, target: &str, options: Json, now: Millis) {
        let count = match self.entries.iter().position(|e| e.kind == kind && e.target == target) {
            Some(i) => self.entries.remove(i).count.saturating_add(1),
            None => 1,
        };
        self.entries.insert(0, Entry { kind: kind.into(), target: target.into(), options, at: now, count });
        self.entries.truncate(self.cap);
    }

    /// Newest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(v: serde_json::Value) -> Json {
        Json::parse(&v.to_string()).unwrap()
    }

    #[test]
    fn de_duplicated_newest_first_and_capped() {
        let mut h = LocalHistory::new(3);
        h.record("post", "https://a", json(serde_json::json!({})), 1);
        h.record("post", "https://b", json(serde_json::json!({})), 2);
        h.record("call", "login", json(serde_json::json!({"params": ["qq"]})), 3);
        h.record("post", "https://a", json(serde_json::json!({"method": "GET"})), 4);
        let t: Vec<_> = h.entries().iter().map(|e| e.target.as_str()).collect();
        assert_eq!(t, ["https://a", "login", "https://b"]);
        assert_eq!(h.entries()[0].count, 2);
        assert_eq!(h.entries()[0].options["method"], "GET", "the latest options are kept");
        h.record("call", "share", json(serde_json::json!({})), 5);
        assert_eq!(h.entries().len(), 3, "capped");
        assert_eq!(h.entries()[2].target, "login", "the oldest fell off");
        // The same target as a post and as a call are two entries.
        let mut h = LocalHistory::new(3);
        h.record("call", "login", json(serde_json::json!({})), 1);
        h.record("post", "login", json(serde_json::json!({})), 2);
        assert_eq!(h.entries().iter().filter(|e| e.target == "login").count(), 2);
    }

    #[test]
    fn survives_storage_and_ignores_garbage() {
        let mut h = LocalHistory::new(10);
        h.record("post", "https://a", json(serde_json::json!({"body": "x"})), 1);
        let back = LocalHistory::from_json(Some(&h.to_json().to_json()), 10);
        assert_eq!(back, h);
        for junk in [None, Some(""), Some("{"), Some("{\"a\":1}"), Some("[1,2]")] {
            assert!(LocalHistory::from_json(junk, 10).entries().is_empty(), "{junk:?}");
        }
        let big: Vec<_> =
            (0..20).map(|i| serde_json::json!({"type": "post", "target": i.to_string(), "at": i})).collect();
        assert_eq!(LocalHistory::from_json(Some(&serde_json::json!(big).to_string()), 5).entries().len(), 5);
    }
}
