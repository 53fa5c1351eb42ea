//! `tether replay FILE`: what to re-run from a recording, and how a new reply differs from
//! the recorded one. The I/O is in `main.rs`; this module is pure, so it is unit-tested here.
//!
//! FILE is one of:
//! - what `tether history` writes: a JSON array of rows (newest first; replayed by `id`, oldest
//!   first);
//! - what `tether history --har` writes: HAR 1.2, oldest first. Each entry's `_tether` row is
//!   used when present; otherwise a post (or a `CALL tether:call/<method>`) is rebuilt from the
//!   entry's `request` and compared with its `response` (status and body);
//! - a hand-written JSON array, replayed in its order, of
//!   `{"type": "post", "url", "method"?, "body"?, "headers"?, "result"?, "error"?, "cookie"?}` or
//!   `{"type": "call", "method", "params"?, "result"?, "error"?, "cookie"?}` (or a `request`
//!   object holding the request's fields, as history rows have).
//!
//! Compared: the reply's `result` (when recorded), its `error` (a device error where the
//! recording had none, or the reverse, is a difference), and `cookie` (when recorded), minus
//! the `--ignore` paths. `storage`, `eval` and `inspect` rows, and rows whose request was cut,
//! are skipped.

use serde_json::{Map, Value, json};

/// One request to re-run and what it answered then.
#[derive(Debug)]
pub struct Entry {
    /// Its position in the file (0-based), as messages name it.
    pub index: usize,
    /// `post` or `call`.
    pub kind: &'static str,
    /// The body for the API's `/post` or `/call` (without `to`, `all`, `timeoutMs`).
    pub request: Map<String, Value>,
    /// The recorded reply's compared fields.
    pub recorded: Map<String, Value>,
    /// Rebuilt from a HAR entry without `_tether`: compare as HAR shows a reply.
    pub har: bool,
}

impl Entry {
    /// The url (post) or method (call).
    pub fn target(&self) -> &str {
        let key = if self.kind == "post" { "url" } else { "method" };
        self.request.get(key).and_then(Value::as_str).unwrap_or_default()
    }

    /// The new reply's fields, in the recorded ones' shape.
    pub fn now(&self, reply: &Value) -> Map<String, Value> {
        let mut out = Map::new();
        for key in self.recorded.keys() {
            let v = reply.get(key.as_str()).cloned().unwrap_or(Value::Null);
            let v = match key.as_str() {
                "result" if self.har => har_result(self.kind, &v),
                // HAR's status 0 says only that there was an error.
                "error" if self.recorded[key].is_boolean() => json!(!v.is_null()),
                _ => v,
            };
            out.insert(key.clone(), v);
        }
        out
    }
}

/// What a file asks: the entries oldest first, and how many rows were skipped.
#[derive(Debug)]
pub struct Plan {
    pub entries: Vec<Entry>,
    pub skipped: usize,
}

/// Reads FILE's text; `Err` names the entry that is not of a known shape.
pub fn parse(text: &str) -> Result<Plan, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let mut plan = Plan { entries: Vec::new(), skipped: 0 };
    if let Some(entries) = v.get("log").and_then(|l| l.get("entries")) {
        let entries = entries.as_array().ok_or("log.entries is not an array")?;
        for (i, e) in entries.iter().enumerate() {
            let parsed = match e.get("_tether").filter(|t| t.is_object()) {
                Some(row) => row_entry(i, row),
                None => har_entry(i, e).map(Some),
            };
            push(&mut plan, parsed?);
        }
        return Ok(plan);
    }
    let rows = v.as_array().ok_or(
        "want a JSON array of rows (`tether history`), a HAR document (`tether history --har`) \
         or a hand-written array of {type, url|method, …}",
    )?;
    for (i, row) in rows.iter().enumerate() {
        push(&mut plan, row_entry(i, row)?);
    }
    // History is newest first: replay by id when every row has one.
    let ids: Option<Vec<u64>> = plan.entries.iter().map(|e| rows[e.index]["id"].as_u64()).collect();
    if ids.is_some() {
        plan.entries.sort_by_key(|e| rows[e.index]["id"].as_u64());
    }
    Ok(plan)
}

fn push(plan: &mut Plan, e: Option<Entry>) {
    match e {
        Some(e) => plan.entries.push(e),
        None => plan.skipped += 1,
    }
}

/// A history row (or a hand-written one, or a HAR entry's `_tether`); `None` when skipped.
fn row_entry(index: usize, row: &Value) -> Result<Option<Entry>, String> {
    let at = |msg: &str| format!("entry {index}: {msg}");
    let row = row.as_object().ok_or_else(|| at("not a JSON object"))?;
    let kind = match row.get("type").and_then(Value::as_str) {
        Some("post") => "post",
        Some("call") => "call",
        Some("storage" | "eval" | "inspect") => return Ok(None),
        other => {
            return Err(at(&format!("`type` must be \"post\" or \"call\", not {}", shown(other))));
        }
    };
    let cut = row.get("cut").and_then(Value::as_object);
    if cut.is_some_and(|c| c.contains_key("request") || c.contains_key("url") || c.contains_key("method")) {
        return Ok(None); // the request was stored cut: it cannot be sent again as it was
    }
    let mut request = match row.get("request") {
        Some(Value::Object(r)) => r.clone(),
        None | Some(Value::Null) => {
            let fields: &[&str] =
                if kind == "post" { &["url", "method", "body", "headers"] } else { &["method", "params"] };
            fields.iter().filter_map(|f| row.get(*f).map(|v| (f.to_string(), v.clone()))).collect()
        }
        Some(_) => return Err(at("`request` is not an object")),
    };
    for key in ["to", "all", "timeoutMs"] {
        request.remove(key);
    }
    let key = if kind == "post" { "url" } else { "method" };
    if !request.contains_key(key)
        && let Some(v) = row.get(key)
    {
        request.insert(key.into(), v.clone());
    }
    if request.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(at(&format!("a {kind} needs a non-empty string `{key}`")));
    }
    let mut recorded = Map::new();
    if let Some(r) = row.get("result")
        && !cut.is_some_and(|c| c.contains_key("result"))
    {
        recorded.insert("result".into(), r.clone());
    }
    recorded.insert("error".into(), row.get("error").cloned().unwrap_or(Value::Null));
    if let Some(c) = row.get("cookie").filter(|c| !c.is_null())
        && !cut.is_some_and(|c| c.contains_key("cookie"))
    {
        recorded.insert("cookie".into(), c.clone());
    }
    Ok(Some(Entry { index, kind, request, recorded, har: false }))
}

/// A HAR entry without `_tether`: rebuilt from `request` and `response`.
fn har_entry(index: usize, e: &Value) -> Result<Entry, String> {
    let at = |msg: &str| format!("entry {index}: {msg}");
    let req = e.get("request").filter(|r| r.is_object()).ok_or_else(|| at("no `request` object"))?;
    let method = req["method"].as_str().ok_or_else(|| at("`request.method` is not a string"))?;
    let url = req["url"].as_str().filter(|u| !u.is_empty()).ok_or_else(|| at("no `request.url`"))?;
    let text = req["postData"]["text"].as_str();
    let mime = req["postData"]["mimeType"].as_str().unwrap_or_default();
    let mut request = Map::new();
    let kind = if method.eq_ignore_ascii_case("CALL") {
        let name = url.strip_prefix("tether:call/").ok_or_else(|| at("a CALL's url is not tether:call/…"))?;
        request.insert("method".into(), json!(decode(name)));
        let params = match text {
            Some(t) => serde_json::from_str(t).map_err(|_| at("a CALL's postData is not JSON"))?,
            None => json!([]),
        };
        request.insert("params".into(), params);
        "call"
    } else {
        let url = url.strip_prefix("tether:post/").map(decode).unwrap_or_else(|| url.to_owned());
        request.insert("url".into(), json!(url));
        request.insert("method".into(), json!(method));
        let mut headers = Map::new();
        for h in req["headers"].as_array().into_iter().flatten() {
            if let (Some(k), Some(v)) = (h["name"].as_str(), h["value"].as_str()) {
                headers.insert(k.into(), json!(v));
            }
        }
        if !headers.is_empty() {
            request.insert("headers".into(), Value::Object(headers));
        }
        if let Some(t) = text {
            let body =
                if mime.contains("json") { serde_json::from_str(t).unwrap_or(json!(t)) } else { json!(t) };
            request.insert("body".into(), body);
        }
        "post"
    };
    let resp = &e["response"];
    let status = resp["status"].as_u64().ok_or_else(|| at("`response.status` is not a number"))?;
    let mut recorded = Map::new();
    if status == 0 {
        // HAR's "no response": the device reported an error (its text is not in the entry).
        recorded.insert("error".into(), json!(true));
    } else {
        let body = resp["content"]["text"]
            .as_str()
            .map(|t| serde_json::from_str(t).unwrap_or_else(|_| json!(t)))
            .unwrap_or(Value::Null);
        let result = if kind == "call" { body } else { json!({"status": status, "body": body}) };
        recorded.insert("result".into(), result);
        recorded.insert("error".into(), Value::Null);
    }
    Ok(Entry { index, kind, request, recorded, har: true })
}

/// A reply's `result` as HAR shows it (see `har_entry`).
fn har_result(kind: &str, result: &Value) -> Value {
    if kind == "call" {
        return result.clone();
    }
    match result.get("status").and_then(Value::as_u64) {
        Some(s) => json!({"status": s, "body": result.get("body").cloned().unwrap_or(Value::Null)}),
        None => json!({"status": 200, "body": result}),
    }
}

fn shown(v: Option<&str>) -> String {
    v.map_or_else(|| "missing".to_owned(), |s| format!("{s:?}"))
}

/// Percent-decoding (as UTF-8, lossy).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(n) =
                std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(n);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One difference: the dotted path, and each side's value (absent when the side has none).
pub fn differences(recorded: &Value, now: &Value, ignore: &[String]) -> Vec<Value> {
    let patterns: Vec<Vec<&str>> = ignore.iter().map(|p| p.split('.').collect()).collect();
    let mut out = Vec::new();
    walk(&mut Vec::new(), Some(recorded), Some(now), &patterns, &mut out);
    out
}

fn walk(
    path: &mut Vec<String>,
    a: Option<&Value>,
    b: Option<&Value>,
    ignore: &[Vec<&str>],
    out: &mut Vec<Value>,
) {
    if ignore
        .iter()
        .any(|p| p.len() <= path.len() && p.iter().zip(path.iter()).all(|(p, s)| *p == "*" || p == s))
    {
        return;
    }
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().collect();
            keys.extend(y.keys().filter(|k| !x.contains_key(*k)));
            for k in keys {
                path.push(k.clone());
                walk(path, x.get(k), y.get(k), ignore, out);
                path.pop();
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) => {
            for i in 0..x.len().max(y.len()) {
                path.push(i.to_string());
                walk(path, x.get(i), y.get(i), ignore, out);
                path.pop();
            }
        }
        (a, b) if a == b => {}
        (a, b) => {
            let mut d = Map::new();
            d.insert("path".into(), json!(path.join(".")));
            if let Some(a) = a {
                d.insert("recorded".into(), a.clone());
            }
            if let Some(b) = b {
                d.insert("now".into(), b.clone());
            }
            out.push(Value::Object(d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(d: &[Value]) -> Vec<&str> {
        d.iter().map(|d| d["path"].as_str().unwrap()).collect()
    }

    #[test]
    fn differences_name_their_paths_and_ignore_skips_them() {
        let rec = json!({"result": {"status": 200, "body": {"uid": 42, "time": 1, "items": [{"t": 1}, {"t": 2}]}},
                         "error": null});
        let now = json!({"result": {"status": 500, "body": {"uid": 42, "time": 2, "items": [{"t": 9}], "new": 1}},
                         "error": null});
        let d = differences(&rec, &now, &[]);
        assert_eq!(
            paths(&d),
            // Recorded keys in order (serde_json's sorted maps), then the new ones.
            [
                "result.body.items.0.t",
                "result.body.items.1",
                "result.body.time",
                "result.body.new",
                "result.status",
            ]
        );
        assert_eq!(d[4], json!({"path": "result.status", "recorded": 200, "now": 500}));
        assert_eq!(d[1], json!({"path": "result.body.items.1", "recorded": {"t": 2}}));
        assert_eq!(d[3], json!({"path": "result.body.new", "now": 1}));
        let ignore =
            ["result.body.time".to_owned(), "result.body.items.*.t".to_owned(), "result.status".to_owned()];
        assert_eq!(paths(&differences(&rec, &now, &ignore)), ["result.body.items.1", "result.body.new"]);
        let ignore = ["result.*".to_owned()];
        assert!(differences(&rec, &now, &ignore).is_empty());
        assert!(differences(&rec, &rec, &[]).is_empty());
    }

    #[test]
    fn history_rows_replay_oldest_first_and_skip_what_is_not_a_request() {
        let file = json!([
            {"id": 9, "type": "call", "method": "login", "request": {"method": "login", "params": ["qq"], "timeoutMs": 300},
             "result": "ok", "cookie": "uid=1", "error": null},
            {"id": 8, "type": "storage", "method": "get", "request": {}, "result": null},
            {"id": 7, "type": "post", "url": "https://x/", "request": {"url": "https://x/", "to": "d-1"},
             "result": {"status": 200}, "cookie": null, "error": "boom"},
        ]);
        let plan = parse(&file.to_string()).unwrap();
        assert_eq!(plan.skipped, 1);
        let (a, b) = (&plan.entries[0], &plan.entries[1]);
        assert_eq!((a.index, a.kind, a.target()), (2, "post", "https://x/"));
        assert_eq!(Value::Object(a.request.clone()), json!({"url": "https://x/"}));
        assert_eq!(Value::Object(a.recorded.clone()), json!({"result": {"status": 200}, "error": "boom"}));
        assert_eq!((b.index, b.kind), (0, "call"));
        assert_eq!(Value::Object(b.request.clone()), json!({"method": "login", "params": ["qq"]}));
        let now = b.now(&json!({"type": "callCb", "result": "ok", "cookie": "uid=1", "ms": 3}));
        assert_eq!(Value::Object(now), json!({"result": "ok", "error": null, "cookie": "uid=1"}));
    }

    #[test]
    fn hand_written_and_har_files() {
        let plan = parse(
            r#"[{"type": "post", "url": "https://x/", "method": "GET", "result": {"status": 200}},
                             {"type": "call", "method": "getAppInfo"}]"#,
        )
        .unwrap();
        assert_eq!(plan.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(
            Value::Object(plan.entries[0].request.clone()),
            json!({"url": "https://x/", "method": "GET"})
        );
        assert_eq!(Value::Object(plan.entries[1].recorded.clone()), json!({"error": null}));

        let har = json!({"log": {"version": "1.2", "entries": [
            {"request": {"method": "POST", "url": "tether:post/a%20b", "headers": [{"name": "X", "value": "1"}],
                         "postData": {"mimeType": "application/json", "text": "{\"n\":1}"}},
             "response": {"status": 201, "content": {"text": "{\"uid\":42}"}}},
            {"request": {"method": "CALL", "url": "tether:call/login", "postData": {"text": "[\"qq\"]"}},
             "response": {"status": 0, "content": {"text": "null"}}},
            {"request": {}, "response": {}, "_tether": {"type": "call", "request": {"method": "m", "params": []},
             "result": 1, "error": null}},
        ]}});
        let plan = parse(&har.to_string()).unwrap();
        let (p, c, t) = (&plan.entries[0], &plan.entries[1], &plan.entries[2]);
        assert_eq!(
            Value::Object(p.request.clone()),
            json!({"url": "a b", "method": "POST", "headers": {"X": "1"}, "body": {"n": 1}})
        );
        let now = p.now(&json!({"result": {"status": 201, "headers": {}, "body": {"uid": 42}}}));
        assert!(differences(&Value::Object(p.recorded.clone()), &Value::Object(now), &[]).is_empty());
        assert_eq!(Value::Object(c.request.clone()), json!({"method": "login", "params": ["qq"]}));
        let now = c.now(&json!({"result": null, "error": "refused"}));
        assert!(differences(&Value::Object(c.recorded.clone()), &Value::Object(now), &[]).is_empty());
        assert!(!t.har);
    }

    #[test]
    fn the_readmes_hand_written_example() {
        let readme = include_str!("../../README.md");
        let start = readme.find("[{\"type\": \"post\", \"url\": \"https://api.example/v1/me\"").unwrap();
        let end = start + readme[start..].find("\n```").unwrap();
        let plan = parse(&readme[start..end]).unwrap();
        assert_eq!((plan.entries.len(), plan.skipped), (2, 0));
        assert_eq!(plan.entries[0].target(), "https://api.example/v1/me");
        assert_eq!(
            Value::Object(plan.entries[1].request.clone()),
            json!({"method": "getAppInfo", "params": []})
        );
    }

    #[test]
    fn files_of_other_shapes_name_the_entry() {
        assert!(parse("{not json").unwrap_err().starts_with("not JSON"));
        assert!(parse(r#"{"a": 1}"#).unwrap_err().contains("want a JSON array"));
        assert_eq!(
            parse(r#"[{"type": "post"}]"#).unwrap_err(),
            "entry 0: a post needs a non-empty string `url`"
        );
        assert!(
            parse(r#"[{"type": "call", "method": "m"}, 3]"#)
                .unwrap_err()
                .starts_with("entry 1: not a JSON object")
        );
        assert!(parse(r#"[{"type": "put", "url": "x"}]"#).unwrap_err().contains("entry 0: `type` must be"));
        assert!(
            parse(r#"{"log": {"entries": [{"request": {"method": "GET"}}]}}"#)
                .unwrap_err()
                .starts_with("entry 0")
        );
    }
}
