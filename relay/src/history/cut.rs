//! A record as it is stored: its reply split into columns, and its bodies cut to
//! `--history-max-record` bytes.
//!
//! Who pays: a device may answer with replies as large as `--max-frame` (1 MiB), as often as
//! its rate allows; stored whole, two such pairs a second grew the database by megabytes a
//! second. The PC still gets every reply whole (live forwarding is never cut); only the stored
//! copy is cut, and says so. A cut body stays valid JSON: it becomes a JSON string holding the
//! start of the original JSON text, and the row's `cut` marker names every cut field with its
//! original size in bytes, e.g. `{"result": 1048576}`.

use super::{Record, ReplyParts};
use tether_protocol::Kind;

/// A record ready to be written: what the backends insert.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) room: String,
    pub(crate) tag: String,
    pub(crate) kind: Kind,
    pub(crate) req_id: String,
    pub(crate) pc: String,
    pub(crate) device: String,
    pub(crate) device_name: Option<String>,
    pub(crate) target: String,
    pub(crate) request: String,
    pub(crate) result: String,
    pub(crate) cookie: Option<String>,
    pub(crate) app_info: Option<String>,
    pub(crate) error: Option<String>,
    /// `{"field": original bytes, …}` when a body was cut, else `None`.
    pub(crate) cut: Option<String>,
    pub(crate) sent_at: u64,
    pub(crate) replied_at: u64,
}

/// How a field is kept when it is cut.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A JSON value (raw JSON text): cut, it becomes a JSON string of the text's start.
    Json,
    /// Plain text (the URL or method, the cookie): cut, it is its own start.
    Text,
}

impl Stored {
    /// Roughly the bytes it holds (its text fields): what it costs the write queue.
    pub(crate) fn bytes(&self) -> usize {
        let opt = |v: &Option<String>| v.as_ref().map_or(0, String::len);
        [
            &self.room,
            &self.tag,
            &self.req_id,
            &self.pc,
            &self.device,
            &self.target,
            &self.request,
            &self.result,
        ]
        .iter()
        .map(|v| v.len())
        .sum::<usize>()
            + opt(&self.device_name)
            + opt(&self.cookie)
            + opt(&self.app_info)
            + opt(&self.error)
            + opt(&self.cut)
    }

    /// `rec`, its reply split into columns, its bodies cut so that together they take at most
    /// `max_record` bytes (0: never cut).
    pub(crate) fn of(rec: Record, max_record: usize) -> Stored {
        let ReplyParts { result, cookie, app_info, error } = ReplyParts::of(&rec.reply);
        let target_name = if rec.kind == Kind::Post { "url" } else { "method" };
        let mut s = Stored {
            room: rec.room,
            tag: rec.tag,
            kind: rec.kind,
            req_id: rec.req_id,
            pc: rec.pc,
            device: rec.device,
            device_name: rec.device_name,
            target: rec.target,
            request: rec.request,
            result,
            cookie,
            app_info,
            error,
            cut: None,
            sent_at: rec.sent_at,
            replied_at: rec.replied_at,
        };
        let mut fields: [(&str, Form, Option<&mut String>); 6] = [
            (target_name, Form::Text, Some(&mut s.target)),
            ("request", Form::Json, Some(&mut s.request)),
            ("result", Form::Json, Some(&mut s.result)),
            ("cookie", Form::Text, s.cookie.as_mut()),
            ("appInfo", Form::Json, s.app_info.as_mut()),
            ("error", Form::Json, s.error.as_mut()),
        ];
        let sizes: Vec<usize> = fields.iter().map(|(_, _, v)| v.as_ref().map_or(0, |v| v.len())).collect();
        let Some(shares) = shares(&sizes, max_record) else { return s };
        let mut marker = serde_json::Map::new();
        for ((name, form, value), (share, size)) in fields.iter_mut().zip(shares.into_iter().zip(sizes)) {
            let Some(value) = value.as_deref_mut() else { continue };
            if share < size {
                *value = match form {
                    Form::Json => json_string_prefix(value, share),
                    Form::Text => value[..floor_char_boundary(value, share)].to_owned(),
                };
                marker.insert((*name).to_owned(), size.into());
            }
        }
        s.cut = Some(serde_json::Value::Object(marker).to_string());
        s
    }

    /// The stored bodies' bytes (what `--history-max-record` caps).
    #[cfg(test)]
    pub(crate) fn body_bytes(&self) -> usize {
        let opt = |v: &Option<String>| v.as_ref().map_or(0, String::len);
        self.target.len()
            + self.request.len()
            + self.result.len()
            + opt(&self.cookie)
            + opt(&self.app_info)
            + opt(&self.error)
    }
}

/// How many bytes each field may keep so that all keep at most `max` together: `None` when
/// they fit whole (or `max` is 0). The smaller fields are kept whole and the larger ones share
/// what is left equally (each field's share is at most its size).
fn shares(sizes: &[usize], max: usize) -> Option<Vec<usize>> {
    if max == 0 || sizes.iter().sum::<usize>() <= max {
        return None;
    }
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| sizes[i]);
    let mut out = vec![0; sizes.len()];
    let mut left = max;
    for (k, &i) in order.iter().enumerate() {
        let fair = left / (sizes.len() - k);
        out[i] = sizes[i].min(fair);
        left -= out[i];
    }
    Some(out)
}

/// A JSON string literal (quotes included) of at most `max` bytes holding the start of `text`.
fn json_string_prefix(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(max.min(text.len() + 2));
    out.push('"');
    let room = max.saturating_sub(2);
    let mut used = 0;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        let escaped: &str = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => {
                // Not in valid JSON text outside strings, but cheap to get right.
                let e = format!("\\u{:04x}", c as u32);
                if used + e.len() > room {
                    break;
                }
                used += e.len();
                out.push_str(&e);
                continue;
            }
            c => c.encode_utf8(&mut buf),
        };
        if used + escaped.len() > room {
            break;
        }
        used += escaped.len();
        out.push_str(escaped);
    }
    out.push('"');
    out
}

/// The largest index `<= i` on a char boundary of `s`.
fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn record(request: &str, reply: &str) -> Record {
        Record {
            room: "r".into(),
            tag: "t".into(),
            kind: Kind::Post,
            req_id: "1".into(),
            pc: "p".into(),
            device: "d".into(),
            device_name: None,
            target: "https://x/".into(),
            request: request.into(),
            reply: reply.into(),
            sent_at: 1,
            replied_at: 2,
        }
    }

    #[test]
    fn a_pair_within_the_limit_is_kept_whole() {
        let s = Stored::of(record(r#"{"url":"https://x/"}"#, r#"{"result":[1,2],"cookie":"a=b"}"#), 1024);
        assert_eq!((s.result.as_str(), s.cookie.as_deref(), s.cut), ("[1,2]", Some("a=b"), None));
        let big = format!(r#"{{"result":"{}"}}"#, "x".repeat(5000));
        assert!(Stored::of(record("{}", &big), 0).cut.is_none(), "0: never cut");
    }

    #[test]
    fn a_large_reply_is_cut_to_a_json_string_and_marked_with_its_size() {
        let result = json!({"data": "q\"\\".repeat(200_000), "n": 1}).to_string();
        let reply = format!(r#"{{"method":"post","result":{result},"cookie":"c=1","appInfo":{{"v":1}}}}"#);
        let s = Stored::of(record(r#"{"url":"https://x/"}"#, &reply), 4096);
        assert!(s.body_bytes() <= 4096, "{}", s.body_bytes());
        // Valid JSON still: a string that starts like the original text.
        let kept: Value = serde_json::from_str(&s.result).expect("the cut result is JSON");
        let kept = kept.as_str().expect("a JSON string");
        assert!(result.starts_with(kept), "a prefix of the original");
        assert!(kept.len() > 1000, "most of the budget is the big field's: {}", kept.len());
        let marker: Value = serde_json::from_str(s.cut.as_deref().unwrap()).unwrap();
        assert_eq!(marker, json!({"result": result.len()}));
        // The small fields are whole.
        assert_eq!((s.cookie.as_deref(), s.app_info.as_deref()), (Some("c=1"), Some(r#"{"v":1}"#)));
        assert_eq!(s.request, r#"{"url":"https://x/"}"#);
    }

    #[test]
    fn two_large_fields_share_the_budget_and_text_is_cut_on_a_char_boundary() {
        let cookie = "é".repeat(10_000);
        let reply = json!({"result": "y".repeat(50_000), "cookie": cookie}).to_string();
        let request = json!({"url": "https://x/", "body": "z".repeat(30_000)}).to_string();
        let s = Stored::of(record(&request, &reply), 8192);
        assert!(s.body_bytes() <= 8192, "{}", s.body_bytes());
        let marker: Value = serde_json::from_str(s.cut.as_deref().unwrap()).unwrap();
        assert_eq!(
            marker,
            json!({"request": request.len(), "result": json!("y".repeat(50_000)).to_string().len(), "cookie": cookie.len()})
        );
        let c = s.cookie.unwrap();
        assert!(cookie.starts_with(&c) && c.len() > 2000, "{}", c.len());
        for v in [&s.request, &s.result] {
            let v: Value = serde_json::from_str(v).unwrap();
            assert!(v.as_str().unwrap().len() > 2000);
        }
    }

    #[test]
    fn a_cut_target_is_named_as_the_history_api_shows_it() {
        let long = "k".repeat(5000);
        for (kind, name) in
            [(Kind::Post, "url"), (Kind::Call, "method"), (Kind::Storage, "method"), (Kind::Eval, "method")]
        {
            let s = Stored::of(Record { kind, target: long.clone(), ..record("{}", "{}") }, 1024);
            let marker: Value = serde_json::from_str(s.cut.as_deref().unwrap()).unwrap();
            assert_eq!(marker, json!({name: 5000}), "{kind}");
        }
    }

    #[test]
    fn shares_keep_small_fields_whole() {
        assert_eq!(shares(&[10, 20, 30], 100), None);
        assert_eq!(shares(&[10, 1000, 5000], 1000), Some(vec![10, 495, 495]));
        assert_eq!(shares(&[0, 0, 9000], 1000), Some(vec![0, 0, 1000]));
    }

    #[test]
    fn json_prefixes_escape_and_stay_within_the_budget() {
        for max in [2, 3, 10, 11, 64] {
            let s = json_string_prefix("a\"b\\c\nd\u{1}éè中", max);
            assert!(s.len() <= max, "{max}: {s}");
            let v: Value = serde_json::from_str(&s).unwrap();
            assert!("a\"b\\c\nd\u{1}éè中".starts_with(v.as_str().unwrap()));
        }
    }
}
