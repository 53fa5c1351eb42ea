//! A device's inspector ring (#18): what the page's inspector captured, waiting for a PC to
//! watch, then sent in `inspect` batches at a pace the relay accepts.
//!
//! The inspector (the second wasm module) hands each event over as one JSON object's text
//! (`{k, at, n, …}`, already capped and filtered). The ring keeps the latest
//! [`InspectOutbox::ring_bytes`] of them, oldest evicted first, and counts what it evicted by
//! kind; those counts travel once, in the next batch (`dropped`, `droppedBytes`). Nothing
//! leaves while no PC watches (the gate is the session's: [`InspectOutbox::set_watching`]).
//! Batches go when the oldest event has waited [`FLUSH_MS`], at once when half a batch waits
//! or the page is being hidden, each at most [`BATCH`] bytes, paced by a token bucket at half
//! the relay's `welcome.inspectRate` so that the relay never has to drop one. They never enter
//! the session's reconnect queue: while the socket is down the ring is the only buffer, and
//! who pays for it is the page, at most `ring_bytes` (default 256 KiB).

use super::Millis;
use super::json::Json;
use std::collections::VecDeque;

/// The ring's size when the page gives none.
pub const RING_DEFAULT: usize = 262_144;
/// The smallest ring a page may ask for.
pub const RING_MIN: usize = 65_536;
/// The largest ring a page may ask for.
pub const RING_MAX: usize = 4_194_304;
/// The most bytes of events one `inspect` frame carries (one event always fits: the
/// inspector caps an event at 32 KiB).
pub const BATCH: usize = 65_536;
/// How long the oldest waiting event may wait for company before its batch goes.
pub const FLUSH_MS: Millis = 100;
/// `--inspect-rate`'s default, for a relay whose `welcome` does not say (it paces at half).
pub const DEFAULT_RATE: u64 = 524_288;
/// Room in a frame for its envelope, the `dropped` counts and `droppedBytes`.
const ENVELOPE: usize = 256;

/// The event kinds, in the order of the counts.
pub const KINDS: [&str; 5] = ["console", "error", "network", "storage", "page"];

/// The index of an event kind in [`KINDS`]; `None` for anything else (such an event is refused).
pub fn kind_index(kind: &str) -> Option<usize> {
    KINDS.iter().position(|k| *k == kind)
}

/// Clamps the page's `ringBytes` to [`RING_MIN`]..=[`RING_MAX`] ([`RING_DEFAULT`] when absent).
pub fn ring_bytes(asked: Option<u64>) -> usize {
    asked.map_or(RING_DEFAULT, |b| b.clamp(RING_MIN as u64, RING_MAX as u64) as usize)
}

/// What a device's inspector is set up with: the `config` handed to the inspector's
/// `start(config, sink)` (without the page's functions, `allow` and `filter`, which the
/// facade adds), and what the device's `hello.inspect` says it captures.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// `{console, network, storage, ringBytes, redactHeaders?, own}`.
    pub config: Json,
    /// `{console, network, storage, allow}`.
    pub captures: Json,
    /// The ring's bound.
    pub ring_bytes: usize,
}

/// The inspector's set-up for `connectDevice`'s `inspect` option (`true`, or an object whose
/// parts `console`, `network`, `storage` are each on unless `false`). `ws` is the room socket's
/// URL: the SDK's own traffic (`/ws`, `/alarms`, `/sdk/`, `/api/` of the relay) is named in
/// `own` so that the inspector never captures it. `has_allow`: the page gave an `allow` hook.
pub fn setup(option: &Json, ws: &str, has_allow: bool) -> Setup {
    let on = |part: &str| option[part].as_bool() != Some(false);
    let ring = ring_bytes(option["ringBytes"].as_u64());
    let ws_base = ws.strip_suffix("/ws").unwrap_or(ws);
    let http = super::session::http_base(ws);
    let own = [
        ws.to_owned(),
        [ws_base, "/alarms"].concat(),
        [http.as_str(), "/sdk/"].concat(),
        [http.as_str(), "/api/"].concat(),
    ];
    let parts = |last: (&str, Json)| {
        let on = |part| (part, on(part).into());
        Json::obj([on("console"), on("network"), on("storage"), last])
    };
    let mut config = parts(("ringBytes", Json::uint(ring as u64)));
    if option["redactHeaders"].as_array().is_some() {
        config.set("redactHeaders", option["redactHeaders"].clone());
    }
    config.set("own", Json::Arr(own.into_iter().map(Json::Str).collect()));
    Setup { config, captures: parts(("allow", has_allow.into())), ring_bytes: ring }
}

struct Entry {
    kind: u8,
    /// When it was pushed (the session's clock), for the flush delay.
    at: Millis,
    text: String,
}

/// The ring and its pacing. Owned by the device's `Session`; the session opens and closes the
/// gate and sends what [`InspectOutbox::poll`] gives.
#[derive(Default)]
pub struct InspectOutbox {
    ring: VecDeque<Entry>,
    bytes: usize,
    cap: usize,
    dropped: [u64; 5],
    dropped_bytes: u64,
    watching: bool,
    /// Our pace in bytes per second: half the relay's `--inspect-rate`.
    pace: u64,
    /// The token bucket, in thousandths of a byte (so that each millisecond adds `pace`);
    /// below zero after a batch larger than what was left (the relay's bucket works the same).
    tokens: i64,
    last: Millis,
    max_frame: usize,
    /// The relay does not know `inspect` (an older relay): nothing more is kept or sent.
    off: bool,
}

impl std::fmt::Debug for InspectOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InspectOutbox")
    }
}

impl InspectOutbox {
    /// An empty ring of `ring_bytes` (see [`ring_bytes`]), not watching, paced for the default
    /// rate until a `welcome` says otherwise.
    pub fn new(ring_bytes: usize, now: Millis) -> InspectOutbox {
        let mut o = InspectOutbox { cap: ring_bytes, ..InspectOutbox::default() };
        o.linked(now, None, None);
        o
    }

    /// The ring's bound in bytes.
    pub fn ring_bytes(&self) -> usize {
        self.cap
    }

    /// Events waiting, and their bytes.
    pub fn waiting(&self) -> (usize, usize) {
        (self.ring.len(), self.bytes)
    }

    /// Keeps one event (`kind`, one JSON object's text) pushed at `now`, evicting the oldest
    /// while over the bound; says whether it was kept. Refused: an unknown kind, text that is
    /// not an object, the ring is off; and, counted as dropped, an event over a quarter of the
    /// ring (the inspector caps events at 32 KiB, so only a page's broken filter gets there).
    pub fn push(&mut self, now: Millis, kind: &str, text: String) -> bool {
        let Some(k) = kind_index(kind) else { return false };
        if self.off || !(text.starts_with('{') && text.ends_with('}')) {
            return false;
        }
        if text.len() > self.cap / 4 {
            self.drop_one(k, text.len());
            return false;
        }
        while self.bytes + text.len() > self.cap {
            let Some(old) = self.ring.pop_front() else { break };
            self.bytes -= old.text.len();
            self.drop_one(old.kind.into(), old.text.len());
        }
        self.bytes += text.len();
        self.ring.push_back(Entry { kind: k as u8, at: now, text });
        true
    }

    fn drop_one(&mut self, k: usize, bytes: usize) {
        self.dropped[k] += 1;
        self.dropped_bytes += bytes as u64;
    }

    /// Counts events that were lost before they reached the ring, by kind (in the order of
    /// [`KINDS`]), with their bytes.
    pub fn add_dropped(&mut self, counts: [u64; 5], bytes: u64) {
        for (d, n) in self.dropped.iter_mut().zip(counts) {
            *d += n;
        }
        self.dropped_bytes += bytes;
    }

    /// A new connection's `welcome`: the relay's `inspectRate` and `maxFrame`. Its byte bucket
    /// starts full, so ours does too; nobody watches until a member list says so.
    pub fn linked(&mut self, now: Millis, rate: Option<u64>, max_frame: Option<u64>) {
        self.pace = (rate.unwrap_or(DEFAULT_RATE) / 2).max(1);
        self.tokens = self.full();
        self.last = now;
        self.max_frame = max_frame.map_or(1 << 20, |m| m.min(1 << 30) as usize);
        self.watching = false;
    }

    /// Opens (a PC watches and is not away) or closes the gate.
    pub fn set_watching(&mut self, on: bool) {
        self.watching = on;
    }

    /// Whether the gate is open.
    pub fn watching(&self) -> bool {
        self.watching
    }

    /// The relay does not take `inspect` frames: drop everything, keep nothing more.
    pub fn turn_off(&mut self) {
        self.clear();
        self.off = true;
    }

    /// Forgets every event and count.
    pub fn clear(&mut self) {
        self.ring.clear();
        self.bytes = 0;
        self.dropped = [0; 5];
        self.dropped_bytes = 0;
        self.watching = false;
    }

    fn full(&self) -> i64 {
        self.pace as i64 * 1000
    }

    /// The most event bytes in one frame: [`BATCH`], one second of our pace, and what the
    /// relay's `maxFrame` leaves room for.
    fn batch_cap(&self) -> usize {
        BATCH.min(self.pace as usize).min(self.max_frame.saturating_sub(ENVELOPE)).max(1)
    }

    fn refill(&mut self, now: Millis) {
        let ms = now.saturating_sub(self.last).min(60_000) as i64;
        self.tokens = (self.tokens + ms * self.pace as i64).min(self.full());
        self.last = self.last.max(now);
    }

    /// The next `inspect` frame to send at `now`, if one is due: the gate is open, the bucket
    /// is not in debt, and the oldest event has waited [`FLUSH_MS`], or half a batch waits, or
    /// `now_anyway` (the page is being hidden). Call again until `None`.
    pub fn poll(&mut self, now: Millis, now_anyway: bool) -> Option<String> {
        let front = self.ring.front()?;
        let cap = self.batch_cap();
        let due = now_anyway || front.at + FLUSH_MS <= now || self.bytes >= cap / 2;
        if !self.watching || !due {
            return None;
        }
        self.refill(now);
        if self.tokens <= 0 {
            return None;
        }
        let mut frame = String::from(r#"{"type":"inspect","msg":{"events":["#);
        let mut used = 0;
        while let Some(e) = self.ring.front() {
            let len = e.text.len();
            if used > 0 && used + len + 1 > cap {
                break;
            }
            let e = self.ring.pop_front()?;
            self.bytes -= len;
            if len > cap {
                // Only with a relay of a very small maxFrame or rate: it cannot go, and says so.
                self.drop_one(e.kind.into(), len);
                continue;
            }
            if used > 0 {
                frame.push(',');
            }
            used += len + 1;
            frame.push_str(&e.text);
        }
        frame.push(']');
        let mut sep = r#","dropped":{"#;
        for (kind, n) in KINDS.iter().zip(self.dropped).filter(|(_, n)| *n > 0) {
            frame.push_str(&[sep, "\"", kind, "\":", &super::num(n)].concat());
            sep = ",";
        }
        if sep == "," {
            frame.push_str(&[r#"},"droppedBytes":"#, &super::num(self.dropped_bytes)].concat());
            self.dropped = [0; 5];
            self.dropped_bytes = 0;
        }
        frame.push_str("}}");
        self.tokens -= frame.len() as i64 * 1000;
        Some(frame)
    }

    /// When [`InspectOutbox::poll`] may next give a frame (after a poll that gave `None`):
    /// `None` while the gate is closed or nothing waits.
    pub fn wake_at(&self) -> Option<Millis> {
        let front = self.ring.front().filter(|_| self.watching)?;
        let due = if self.bytes >= self.batch_cap() / 2 { 0 } else { front.at + FLUSH_MS };
        let refilled = if self.tokens > 0 { 0 } else { self.last + (-self.tokens) as u64 / self.pace + 1 };
        Some(due.max(refilled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_size_is_clamped() {
        assert_eq!(ring_bytes(None), RING_DEFAULT);
        assert_eq!(ring_bytes(Some(1)), RING_MIN);
        assert_eq!(ring_bytes(Some(100_000)), 100_000);
        assert_eq!(ring_bytes(Some(u64::MAX)), RING_MAX);
    }

    #[test]
    fn an_event_over_a_quarter_of_the_ring_is_dropped_and_counted() {
        let mut o = InspectOutbox::new(RING_MIN, 0);
        let big = [r#"{"k":"network","at":5,"n":9,"data":""#, &"x".repeat(RING_MIN / 4), r#""}"#].concat();
        let len = big.len();
        assert!(!o.push(0, "network", big));
        assert!(o.push(0, "page", r#"{"k":"page","n":10}"#.into()));
        o.set_watching(true);
        let frame = o.poll(1_000, false).unwrap();
        let want = [
            r#"{"type":"inspect","msg":{"events":[{"k":"page","n":10}],"dropped":{"network":1},"droppedBytes":"#,
            &len.to_string(),
            "}}",
        ];
        assert_eq!(frame, want.concat());
    }

    #[test]
    fn unknown_kinds_and_non_objects_are_refused() {
        let mut o = InspectOutbox::new(RING_MIN, 0);
        assert!(!o.push(0, "secret", r#"{"k":"secret"}"#.into()));
        assert!(!o.push(0, "console", "[1]".into()));
        assert!(!o.push(0, "console", String::new()));
        assert_eq!(o.waiting(), (0, 0));
        o.turn_off();
        assert!(!o.push(0, "console", "{}".into()), "off keeps nothing");
    }

    #[test]
    fn the_setup_names_the_sdk_s_own_traffic_and_what_the_page_captures() {
        let option = Json::parse(r#"{"network":false,"ringBytes":1,"redactHeaders":["x-token"]}"#).unwrap();
        let s = setup(&option, "wss://relay.example/tether/ws", true);
        assert_eq!(
            s.config.to_json(),
            [
                r#"{"console":true,"network":false,"storage":true,"ringBytes":65536,"redactHeaders":["x-token"],"#,
                r#""own":["wss://relay.example/tether/ws","wss://relay.example/tether/alarms","#,
                r#""https://relay.example/tether/sdk/","https://relay.example/tether/api/"]}"#
            ]
            .concat()
        );
        assert_eq!(s.captures.to_json(), r#"{"console":true,"network":false,"storage":true,"allow":true}"#);
        assert_eq!(s.ring_bytes, RING_MIN);
        let all = setup(&Json::Bool(true), "ws://h/ws", false);
        assert_eq!(all.captures.to_json(), r#"{"console":true,"network":true,"storage":true,"allow":false}"#);
        assert_eq!(all.ring_bytes, RING_DEFAULT);
        assert!(all.config.get("redactHeaders").is_none());
    }
}
