//! The `/alarms` feed: connect, pass each alarm on, remember the last seq, and when the
//! connection drops come back with `since=<last seq>` so nothing is missed silently (the relay
//! replays what it holds and says, with `alarmGap`, what it no longer does). It retries for as
//! long as it is open, with backoff: alarms are a stream to keep, not a request to give up on.

use super::Millis;
use super::backoff::{Backoff, Policy};
use super::json::Json;
use super::session::{Action, SdkError, ws_url};
use std::collections::VecDeque;

/// The alarms feed of one relay.
#[derive(Debug)]
pub struct AlarmFeed {
    base: String,
    last: Option<u64>,
    backoff: Backoff,
    attempt: u32,
    retry_at: Option<Millis>,
    connected: bool,
    closed: bool,
    actions: VecDeque<Action>,
    events: VecDeque<Json>,
}

/// The longest wait between retries.
const MAX_DELAY_MS: Millis = 10_000;

impl AlarmFeed {
    /// Starts at `now`; `url` is the room WebSocket's URL (or the relay's `http(s)://` base).
    pub fn new(url: &str, since: Option<u64>, now: Millis, seed: u64) -> Result<AlarmFeed, SdkError> {
        let ws = ws_url(url)?;
        let base = [ws.strip_suffix("/ws").unwrap_or(&ws), "/alarms"].concat();
        let policy = Policy { retries: u32::MAX, base_ms: 500, max_ms: MAX_DELAY_MS };
        let mut f = AlarmFeed {
            base,
            last: since,
            backoff: Backoff::new(policy, seed),
            attempt: 0,
            retry_at: None,
            connected: false,
            closed: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        };
        f.open(now);
        Ok(f)
    }

    fn open(&mut self, _now: Millis) {
        let url = match self.last {
            Some(seq) => [self.base.as_str(), "?since=", &super::num(seq)].concat(),
            None => self.base.clone(),
        };
        self.actions.push_back(Action::Open(url));
    }

    /// The socket opened.
    pub fn handle_open(&mut self) {
        self.connected = true;
        self.attempt = 0;
    }

    /// A frame arrived: an `alarm` (its seq is remembered), an `alarmGap` or an `alarmSource`
    /// (or a kind a newer relay sends); each is passed on as it is, `{type, msg}`.
    pub fn handle_text(&mut self, text: &str) {
        let Ok(frame) = Json::parse(text) else { return };
        match frame["type"].as_str() {
            Some("alarm") => {
                if let Some(seq) = frame["msg"]["seq"].as_u64() {
                    if self.last.is_some_and(|l| seq <= l) {
                        return; // already seen (a replay overlapping what arrived live)
                    }
                    self.last = Some(seq);
                }
                self.events.push_back(frame);
            }
            _ => self.events.push_back(frame),
        }
    }

    /// The socket closed (or failed to open): come back later.
    pub fn handle_close(&mut self, now: Millis) {
        self.connected = false;
        if self.closed {
            return;
        }
        self.attempt = self.attempt.saturating_add(1);
        self.retry_at = Some(now + self.backoff.delay(self.attempt));
    }

    /// The page is back (visible, online): retry now rather than after the backoff.
    pub fn handle_wake(&mut self, now: Millis) {
        if !self.closed && !self.connected && self.retry_at.is_some() {
            self.retry_at = None;
            self.open(now);
        }
    }

    /// Time has reached `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            self.open(now);
        }
    }

    /// When to call [`AlarmFeed::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.retry_at
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next frame for the page.
    pub fn poll_event(&mut self) -> Option<Json> {
        self.events.pop_front()
    }

    /// The last alarm seq seen.
    pub fn last_seq(&self) -> Option<u64> {
        self.last
    }

    /// Stops for good.
    pub fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.retry_at = None;
            self.actions.push_back(Action::Close);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alarm(seq: u64) -> String {
        format!(r#"{{"type":"alarm","msg":{{"seq":{seq},"at":1,"from":"x","data":{{}}}}}}"#)
    }

    #[test]
    fn resumes_from_the_last_seq_seen_and_skips_repeats() {
        let mut f = AlarmFeed::new("http://relay:8080", None, 0, 5).unwrap();
        assert_eq!(f.poll_action(), Some(Action::Open("ws://relay:8080/alarms".into())));
        f.handle_open();
        for s in [1, 2, 3] {
            f.handle_text(&alarm(s));
        }
        f.handle_text(r#"{"type":"alarmGap","msg":{"dropped":4}}"#);
        f.handle_text(r#"{"type":"alarmSource","msg":{"state":"unreachable","service":"a:1"}}"#);
        f.handle_text(&alarm(8));
        let seen: Vec<Json> = std::iter::from_fn(|| f.poll_event()).collect();
        assert_eq!(seen.len(), 6);
        assert_eq!(seen[3]["msg"]["dropped"].as_u64(), Some(4));
        assert_eq!(seen[4]["msg"]["state"].as_str(), Some("unreachable"));
        // Dropped: it comes back after a backoff with since=8.
        f.handle_close(1_000);
        let at = f.poll_timeout().unwrap();
        assert!((1_250..=1_500).contains(&at), "{at}");
        f.handle_timeout(at);
        assert_eq!(f.poll_action(), Some(Action::Open("ws://relay:8080/alarms?since=8".into())));
        // A replay that overlaps what was seen is not passed on twice.
        f.handle_open();
        f.handle_text(&alarm(8));
        f.handle_text(&alarm(9));
        assert_eq!(std::iter::from_fn(|| f.poll_event()).count(), 1);
        assert_eq!(f.last_seq(), Some(9));
    }

    #[test]
    fn it_keeps_retrying_with_capped_delays_until_closed() {
        let mut f = AlarmFeed::new("ws://r/ws", Some(41), 0, 9).unwrap();
        assert_eq!(f.poll_action(), Some(Action::Open("ws://r/alarms?since=41".into())));
        let mut now = 0;
        for _ in 0..40 {
            f.handle_close(now);
            let at = f.poll_timeout().expect("always retrying");
            assert!(at - now <= MAX_DELAY_MS);
            now = at;
            f.handle_timeout(now);
            assert!(matches!(f.poll_action(), Some(Action::Open(_))));
        }
        f.handle_close(now);
        f.handle_wake(now + 1);
        assert!(matches!(f.poll_action(), Some(Action::Open(_))), "a wake retries at once");
        f.close();
        assert_eq!(f.poll_action(), Some(Action::Close));
        f.handle_close(now + 2);
        assert_eq!(f.poll_timeout(), None);
    }
}
