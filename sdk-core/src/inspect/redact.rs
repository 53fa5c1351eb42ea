//! What an event goes through before the inspector hands it to the base SDK, in this order
//! (the one function [`Recorder::finish`]):
//!
//! 1. **caps**: the [`Writer`](super::Writer) wrote it within `DEPTH`, `KEYS`, `ITEMS`,
//!    `STRING` and `EVENT`, so the page's filter is never handed a 5 MB string;
//! 2. **built-in masks**: header values named in `redactHeaders` ([`Masks`]) are written masked
//!    (network events; console, error and page events carry nothing the SDK knows to be secret);
//! 3. **the page's `filter`**: it gets the event as a plain object and returns it (edited or
//!    not) to send it, or `null`/`undefined` to drop it. A filter that throws drops the event:
//!    the page asked for redaction, so nothing unredacted may leave (fail closed). That is
//!    counted, and its `n` is spent, so the PC sees the loss as a gap; a deliberate drop is not;
//! 4. **size again**: a filter's output over `EVENT` is sent as the event's stub
//!    (`{"k","at","n","$":"cut"}`).
//!
//! Never recorded at all: the SDK's own traffic ([`Own`]), and whatever happens while the
//! inspector's own code runs (the shim's re-entrancy flag: a filter or sink that logs).

use super::EVENT;
use super::writer::{Draft, utf16_len};
use crate::num;

/// What the page's `filter` made of an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filtered {
    /// Its output, as JSON text (`JSON.stringify` of what it returned).
    Keep(String),
    /// It returned `null` or `undefined` (or nothing JSON can write).
    Drop,
    /// It threw (or what it returned could not be written as JSON).
    Threw,
}

/// Numbers the events of one inspector session and puts each through the order above.
#[derive(Debug, Default)]
pub struct Recorder {
    n: u64,
    filtered: u64,
    threw: u64,
}

impl Recorder {
    /// The `n` the next event carries: from 1, one more per event sent (or lost to a
    /// throwing filter).
    pub fn next(&self) -> u64 {
        self.n + 1
    }

    /// Events the page's filter dropped on purpose.
    pub fn filtered(&self) -> u64 {
        self.filtered
    }

    /// Events dropped because the page's filter threw.
    pub fn threw(&self) -> u64 {
        self.threw
    }

    /// Steps 3 and 4 of the order (the draft was written with [`next`](Self::next) as its `n`,
    /// capped and masked): the text to hand on, or `None` when the event is dropped.
    pub fn finish(
        &mut self,
        draft: Draft,
        filter: Option<&mut dyn FnMut(&str) -> Filtered>,
    ) -> Option<String> {
        let text = match filter.map(|f| f(&draft.text)) {
            None => draft.text,
            // An event is an object; anything else the filter returned is no event.
            Some(Filtered::Keep(out)) if out.starts_with('{') => {
                if out.len() > EVENT {
                    draft.stub()
                } else {
                    out
                }
            }
            Some(Filtered::Keep(_) | Filtered::Drop) => {
                self.filtered += 1;
                return None;
            }
            Some(Filtered::Threw) => {
                self.threw += 1;
                self.n += 1;
                return None;
            }
        };
        self.n += 1;
        Some(text)
    }
}

/// The SDK's own URLs (the relay's `/ws`, `/alarms`, `/sdk/`, `/api/`, as the base lists them
/// in the config's `own`), each as the browser writes it (the inspector normalises them with
/// the page's `URL`, as the URLs it compares them with are: a host in lower case, no default
/// port): what is one of them is never recorded.
#[derive(Debug, Default, Clone)]
pub struct Own(pub Vec<String>);

impl Own {
    /// Whether `url` is the SDK's own: it starts with one of them, which ends there, at its
    /// query or its fragment, or is a folder (`…/sdk/`). So `…/ws?room=r` is the SDK's and a
    /// page's own `…/ws-chat` on the same host is not.
    pub fn contains(&self, url: &str) -> bool {
        self.0.iter().any(|p| {
            !p.is_empty()
                && url.starts_with(p.as_str())
                && (p.ends_with('/') || matches!(url.as_bytes().get(p.len()), None | Some(b'?' | b'#')))
        })
    }
}

/// The headers masked when no `redactHeaders` is given.
pub const REDACT_HEADERS: [&str; 4] = ["authorization", "cookie", "set-cookie", "proxy-authorization"];

/// The built-in masks: header values whose names the page's `redactHeaders` lists (by
/// default [`REDACT_HEADERS`]), compared without case.
#[derive(Debug, Clone)]
pub struct Masks {
    headers: Vec<String>,
}

impl Default for Masks {
    fn default() -> Masks {
        Masks::new(None)
    }
}

impl Masks {
    /// From the config's `redactHeaders` (`None`: the default list; an empty list masks none).
    pub fn new(headers: Option<Vec<String>>) -> Masks {
        // Compared without case, so kept as given (no second list made in lower case).
        Masks { headers: headers.unwrap_or_else(|| REDACT_HEADERS.map(String::from).into()) }
    }

    /// The value to write for header `name`: itself, or `‹redacted N chars›` (`N`: its
    /// length in UTF-16 units, JS's `length`).
    pub fn header<'a>(&self, name: &str, value: &'a str) -> std::borrow::Cow<'a, str> {
        if self.headers.iter().any(|h| h.eq_ignore_ascii_case(name)) {
            // Its length as JS counts it (`chars().count()` would bring core's large counter).
            ["‹redacted ", &num(utf16_len(value) as u64), " chars›"].concat().into()
        } else {
            value.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::writer::{Text, Writer};
    use crate::inspect::{EVENT, STRING};

    fn draft(r: &Recorder, token: &str) -> Draft {
        let mut w = Writer::event("console", 1, r.next());
        w.field("args");
        w.string(&Text::from(token));
        w.finish()
    }

    #[test]
    fn without_a_filter_events_are_numbered_and_sent() {
        let mut r = Recorder::default();
        let a = r.finish(draft(&r, "a"), None).unwrap();
        let b = r.finish(draft(&r, "b"), None).unwrap();
        assert_eq!(a, r#"{"k":"console","at":1,"n":1,"args":"a"}"#);
        assert_eq!(b, r#"{"k":"console","at":1,"n":2,"args":"b"}"#);
    }

    #[test]
    fn the_filter_sees_the_capped_event_and_what_it_returns_is_sent() {
        let mut r = Recorder::default();
        let long = "x".repeat(STRING * 3);
        let mut seen = String::new();
        let mut filter = |e: &str| {
            seen = e.to_owned();
            Filtered::Keep(e.replace("xxxx", "y"))
        };
        let out = r.finish(draft(&r, &long), Some(&mut filter)).unwrap();
        // The filter was handed the capped event, not the 24 KiB string.
        assert!(seen.len() < STRING + 100, "{} bytes", seen.len());
        assert!(seen.contains(r#""$":"str""#));
        assert!(!out.contains("xxxx") && out.contains("yy"));
    }

    #[test]
    fn the_filter_may_drop_and_a_filter_that_throws_drops_too_counted_with_a_gap() {
        let mut r = Recorder::default();
        assert_eq!(r.finish(draft(&r, "1"), Some(&mut |_: &str| Filtered::Drop)), None);
        // Not JSON objects: no event either.
        assert_eq!(r.finish(draft(&r, "2"), Some(&mut |_: &str| Filtered::Keep("null".into()))), None);
        assert_eq!(r.finish(draft(&r, "3"), Some(&mut |_: &str| Filtered::Keep("\"x\"".into()))), None);
        assert_eq!((r.filtered(), r.threw(), r.next()), (3, 0, 1), "deliberate drops spend no n");
        assert_eq!(r.finish(draft(&r, "secret"), Some(&mut |_: &str| Filtered::Threw)), None);
        assert_eq!((r.filtered(), r.threw(), r.next()), (3, 1, 2), "a throw spends its n: the PC sees a gap");
        let sent = r.finish(draft(&r, "5"), Some(&mut |e: &str| Filtered::Keep(e.to_owned()))).unwrap();
        assert!(sent.contains(r#""n":2"#), "{sent}");
    }

    #[test]
    fn a_filter_output_over_the_event_cap_is_sent_as_the_stub() {
        let mut r = Recorder::default();
        let big = ["{\"k\":\"console\",\"pad\":\"", &"p".repeat(EVENT), "\"}"].concat();
        let out = r.finish(draft(&r, "a"), Some(&mut |_: &str| Filtered::Keep(big.clone()))).unwrap();
        assert_eq!(out, r#"{"k":"console","at":1,"n":1,"$":"cut"}"#);
        // Exactly at the cap is fine.
        let exact = ["{\"p\":\"", &"p".repeat(EVENT - 8), "\"}"].concat();
        assert_eq!(exact.len(), EVENT);
        let out = r.finish(draft(&r, "b"), Some(&mut |_: &str| Filtered::Keep(exact.clone()))).unwrap();
        assert_eq!(out, exact);
    }

    #[test]
    fn the_sdks_own_urls() {
        let own =
            Own(vec!["https://relay.example/sdk/".into(), "wss://relay.example/ws".into(), String::new()]);
        assert!(own.contains("https://relay.example/sdk/tether_inspect_bg.wasm"));
        assert!(own.contains("wss://relay.example/ws?room=a"));
        assert!(!own.contains("https://relay.example/app.js"));
        assert!(!own.contains("https://other.example/sdk/x.js"));
        assert!(!Own::default().contains("https://relay.example/sdk/"));
    }

    #[test]
    fn header_masks() {
        let m = Masks::default();
        assert_eq!(m.header("Authorization", "Bearer abc"), "‹redacted 10 chars›");
        assert_eq!(m.header("set-cookie", "é"), "‹redacted 1 chars›");
        assert_eq!(m.header("accept", "text/html"), "text/html");
        let m = Masks::new(Some(vec!["X-Token".into()]));
        assert_eq!(m.header("x-token", "t"), "‹redacted 1 chars›");
        assert_eq!(m.header("authorization", "a"), "a", "a list of the page's own replaces the default");
        assert_eq!(Masks::new(Some(vec![])).header("cookie", "c"), "c");
    }
}
