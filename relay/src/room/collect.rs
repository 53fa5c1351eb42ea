//! The answers to one HTTP API request: which devices owe one, what each said, and when the
//! request is answered. Sans-IO, like the rooms: it is fed the frames its API member's queue
//! receives and the time ([`Collect::on_frame`]), and says when the answer is ready
//! ([`Collect::answer`]) and until when to wait ([`Collect::deadline`]); the edge
//! (`http/api.rs`) owns the queue, the timer and the HTTP response.
//!
//! Which devices count: those the request went to when it was sent ([`Dispatched::sent`]),
//! and those refused then (each an entry with its refusal). A device that joins later is not
//! asked. A device that leaves before replying is an entry with the relay's `no_target` error
//! about it (the room says which device an `error` is about: `msg.device`). Nothing waits past
//! the deadline: then every device still silent is a `timeout` entry.

use super::{Dispatched, Now};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::{Duration, Instant};
use tether_protocol::msg::Devices;
use tether_protocol::{Envelope, Kind};

/// How the request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// With the first reply (or, when every device failed, the first failure).
    First,
    /// With every device's entry, once each has one (`all: true`).
    All,
}

/// What one device did with the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It replied: the reply's kind and its `msg` as the device sent it, `ms` after the
    /// request was sent.
    Replied {
        /// `postCb` or `callCb`.
        kind: Kind,
        /// The reply body, raw JSON.
        msg: String,
        /// Milliseconds from the request to the reply.
        ms: u64,
    },
    /// It did not: the relay's error code (or `timeout`) and why.
    Failed {
        /// A protocol error code, or `timeout`.
        code: String,
        /// For a person.
        message: String,
    },
}

/// One device the request went to (or was refused for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its member id.
    pub device: String,
    /// Its name, as the room's latest member list had it.
    pub name: Option<String>,
    /// What it did; `None` while it owes a reply.
    pub outcome: Option<Outcome>,
}

/// The request's answer, once it is ready.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// [`Mode::First`]: the first reply.
    Reply(&'a Entry),
    /// [`Mode::First`]: every device failed; the first of them.
    Failed(&'a Entry),
    /// [`Mode::First`]: the deadline passed and no device replied.
    TimedOut,
    /// [`Mode::All`]: every device's entry, in the order the request went to them.
    All(&'a [Entry]),
}

/// The answers to one request, as they come.
#[derive(Debug)]
pub struct Collect {
    /// The request id the PC side uses (the relay's `rN`): replies and errors carry it.
    id: String,
    /// The reply kind that answers it.
    reply: Kind,
    mode: Mode,
    sent_at: Now,
    timeout: Duration,
    entries: Vec<Entry>,
    /// Mode::First: the entry that replied first.
    first: Option<usize>,
}

/// The parts of an `error` body read here.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    device: Option<String>,
}

impl Collect {
    /// The answers to request `id` of kind `kind`, sent at `sent_at` with `timeout`, as
    /// `dispatched` says where it went. Refusals about the whole request (no device) are not
    /// entries: the caller answers them before there is anything to collect.
    pub fn new(
        id: String,
        kind: Kind,
        mode: Mode,
        dispatched: Dispatched,
        sent_at: Now,
        timeout: Duration,
    ) -> Self {
        let mut entries: Vec<Entry> =
            dispatched.sent.into_iter().map(|device| Entry { device, name: None, outcome: None }).collect();
        for (device, r) in dispatched.refused {
            let Some(device) = device else { continue };
            let outcome = Some(Outcome::Failed { code: r.code.as_str().to_owned(), message: r.message });
            entries.push(Entry { device, name: None, outcome });
        }
        Collect { id, reply: kind.reply_kind().unwrap_or(kind), mode, sent_at, timeout, entries, first: None }
    }

    /// When to stop waiting.
    pub fn deadline(&self) -> Instant {
        self.sent_at.at + self.timeout
    }

    /// The request id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether some device still owes a reply (a request answered with its first reply keeps
    /// its member in the room until the others have answered, so their pairs reach history).
    pub fn waiting(&self) -> bool {
        self.entries.iter().any(|e| e.outcome.is_none())
    }

    /// A frame the API member received, at `now`: a reply or an `error` for this request, or
    /// a member list (for the devices' names). Anything else is not for it.
    pub fn on_frame(&mut self, text: &str, now: Now) {
        let Ok(env) = Envelope::parse(text) else { return };
        let Some(kind) = Kind::parse(&env.kind) else { return };
        if kind == Kind::Devices {
            if let Some(list) = env.msg.and_then(|m| serde_json::from_str::<Devices>(m.get()).ok()) {
                for e in &mut self.entries {
                    if let Some(m) = list.members.iter().find(|m| m.id == e.device) {
                        e.name.clone_from(&m.name);
                    }
                }
            }
            return;
        }
        if env.id.as_deref() != Some(self.id.as_str()) {
            return;
        }
        if kind == self.reply {
            let Some(i) = env.from.as_deref().and_then(|f| self.waiting_index(f)) else { return };
            let msg = env.msg.map_or("null", RawValue::get).to_owned();
            let ms = now.ms.saturating_sub(self.sent_at.ms);
            self.entries[i].outcome = Some(Outcome::Replied { kind, msg, ms });
            if self.first.is_none() {
                self.first = Some(i);
            }
        } else if kind == Kind::Error {
            let Some(body) = env.msg.and_then(|m| serde_json::from_str::<ErrorBody>(m.get()).ok()) else {
                return;
            };
            let failed = || Outcome::Failed { code: body.code.clone(), message: body.message.clone() };
            match body.device.as_deref() {
                Some(device) => {
                    if let Some(i) = self.waiting_index(device) {
                        self.entries[i].outcome = Some(failed());
                    }
                }
                // About the whole request: every device still owing a reply is done.
                None => {
                    for e in self.entries.iter_mut().filter(|e| e.outcome.is_none()) {
                        e.outcome = Some(failed());
                    }
                }
            }
        }
    }

    fn waiting_index(&self, device: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.device == device && e.outcome.is_none())
    }

    /// The answer at `now`, if it is ready. Past the deadline it always is: devices still
    /// silent become `timeout` entries ([`Mode::All`]), or the request timed out
    /// ([`Mode::First`], when none replied).
    pub fn answer(&mut self, now: Now) -> Option<Answer<'_>> {
        let late = now.at >= self.deadline();
        match self.mode {
            Mode::First => {
                if let Some(i) = self.first {
                    return Some(Answer::Reply(&self.entries[i]));
                }
                if !self.waiting() {
                    return self.entries.first().map(Answer::Failed).or(Some(Answer::TimedOut));
                }
                late.then_some(Answer::TimedOut)
            }
            Mode::All => {
                if late {
                    let message = format!("no reply within {} ms (timeoutMs)", self.timeout.as_millis());
                    for e in self.entries.iter_mut().filter(|e| e.outcome.is_none()) {
                        e.outcome =
                            Some(Outcome::Failed { code: "timeout".into(), message: message.clone() });
                    }
                }
                (!self.waiting()).then_some(Answer::All(&self.entries))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::Refusal;
    use serde_json::json;
    use tether_protocol::ErrorCode;

    fn sent(devices: &[&str]) -> Dispatched {
        Dispatched { sent: devices.iter().map(|d| d.to_string()).collect(), refused: Vec::new() }
    }

    fn reply(id: &str, from: &str, result: serde_json::Value) -> String {
        json!({"type": "postCb", "id": id, "from": from, "msg": {"method": "post", "result": result}})
            .to_string()
    }

    fn error(id: &str, code: &str, device: Option<&str>) -> String {
        let mut msg = json!({"code": code, "message": format!("{code} happened")});
        if let Some(d) = device {
            msg["device"] = json!(d);
        }
        json!({"type": "error", "id": id, "msg": msg}).to_string()
    }

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn the_first_reply_answers_and_the_others_are_still_awaited_for_history() {
        let t0 = Now::read();
        let mut c = Collect::new("r1".into(), Kind::Post, Mode::First, sent(&["d-1", "d-2"]), t0, T);
        assert_eq!(c.answer(t0), None, "nothing yet");
        // Not this request's, not from a device it went to, not the kind that answers it.
        c.on_frame(&reply("r9", "d-1", json!(0)), t0);
        c.on_frame(&reply("r1", "d-3", json!(0)), t0);
        c.on_frame(&json!({"type": "callCb", "id": "r1", "from": "d-1", "msg": {}}).to_string(), t0);
        c.on_frame("not json", t0);
        assert_eq!(c.answer(t0), None);
        let later = t0.after(Duration::from_millis(38));
        c.on_frame(&reply("r1", "d-2", json!({"ok": true})), later);
        let Some(Answer::Reply(e)) = c.answer(later) else { panic!("answered") };
        let Some(Outcome::Replied { kind, msg, ms }) = &e.outcome else { panic!("a reply") };
        assert_eq!((e.device.as_str(), *kind, *ms), ("d-2", Kind::PostCb, 38));
        assert_eq!(msg, r#"{"method":"post","result":{"ok":true}}"#, "the body as the device sent it");
        assert!(c.waiting(), "d-1 still owes its reply");
        c.on_frame(&reply("r1", "d-1", json!(1)), later);
        assert!(!c.waiting());
        let Some(Answer::Reply(e)) = c.answer(later) else { panic!("still the first") };
        assert_eq!(e.device, "d-2");
    }

    #[test]
    fn all_waits_for_every_device_a_leaver_is_an_error_entry_and_the_deadline_ends_it() {
        let t0 = Now::read();
        let mut c = Collect::new("r2".into(), Kind::Call, Mode::All, sent(&["d-1", "d-2", "d-3"]), t0, T);
        c.on_frame(
            &json!({"type": "devices", "msg": {"members": [
                {"id": "d-1", "role": "device", "name": "iPhone", "appInfo": null, "since": 1, "away": false},
                {"id": "d-2", "role": "device", "name": "Pixel", "appInfo": null, "since": 2, "away": false}
            ]}})
            .to_string(),
            t0,
        );
        let cb = json!({"type": "callCb", "id": "r2", "from": "d-1", "msg": {"method": "m", "result": 1}});
        c.on_frame(&cb.to_string(), t0);
        assert_eq!(c.answer(t0), None, "two still owe");
        c.on_frame(&error("r2", "no_target", Some("d-2")), t0);
        assert_eq!(c.answer(t0.after(T - Duration::from_millis(1))), None, "d-3 is slow, not late");
        // The deadline: d-3 becomes a timeout entry, and the answer is ready, in sent order.
        let Some(Answer::All(entries)) = c.answer(t0.after(T)) else { panic!("answered at the deadline") };
        let got: Vec<(&str, Option<&str>, &str)> = entries
            .iter()
            .map(|e| {
                let what = match e.outcome.as_ref().unwrap() {
                    Outcome::Replied { .. } => "replied",
                    Outcome::Failed { code, .. } => code.as_str(),
                };
                (e.device.as_str(), e.name.as_deref(), what)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("d-1", Some("iPhone"), "replied"),
                ("d-2", Some("Pixel"), "no_target"),
                ("d-3", None, "timeout")
            ]
        );
    }

    #[test]
    fn refusals_at_send_are_entries_and_when_every_device_failed_the_first_failure_answers() {
        let t0 = Now::read();
        let d = Dispatched {
            sent: vec!["d-1".into()],
            refused: vec![(Some("d-2".into()), Refusal::new(ErrorCode::BufferFull, "d-2 is reconnecting"))],
        };
        let mut all = Collect::new("r3".into(), Kind::Post, Mode::All, d, t0, T);
        all.on_frame(&reply("r3", "d-1", json!(1)), t0);
        let Some(Answer::All(entries)) = all.answer(t0) else { panic!("every device has an entry") };
        assert_eq!(
            entries[1].outcome,
            Some(Outcome::Failed { code: "buffer_full".into(), message: "d-2 is reconnecting".into() })
        );
        let mut first = Collect::new("r4".into(), Kind::Post, Mode::First, sent(&["d-1", "d-2"]), t0, T);
        first.on_frame(&error("r4", "no_target", Some("d-2")), t0);
        assert_eq!(first.answer(t0), None, "d-1 may still reply");
        first.on_frame(&error("r4", "slow_consumer", Some("d-1")), t0);
        let Some(Answer::Failed(e)) = first.answer(t0) else { panic!("every device failed") };
        assert_eq!(e.device, "d-1", "the first entry");
        // An error about the whole request ends every device's wait.
        let mut whole = Collect::new("r5".into(), Kind::Post, Mode::All, sent(&["d-1", "d-2"]), t0, T);
        whole.on_frame(&error("r5", "internal", None), t0);
        assert!(!whole.waiting());
        assert!(matches!(whole.answer(t0), Some(Answer::All(e)) if e.len() == 2));
    }

    #[test]
    fn first_mode_times_out_at_the_deadline_and_never_before() {
        let t0 = Now::read();
        let mut c = Collect::new("r6".into(), Kind::Post, Mode::First, sent(&["d-1"]), t0, T);
        assert_eq!(c.deadline(), t0.at + T);
        assert_eq!(c.answer(t0.after(T - Duration::from_millis(1))), None);
        assert_eq!(c.answer(t0.after(T)), Some(Answer::TimedOut));
        // A reply after the deadline is still a reply (the edge stops listening by then).
        c.on_frame(&reply("r6", "d-1", json!(1)), t0.after(T * 2));
        assert!(matches!(c.answer(t0.after(T * 2)), Some(Answer::Reply(_))));
    }
}
