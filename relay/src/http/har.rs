//! A room's stored pairs as HAR 1.2 (`GET /api/rooms/{room}/history?format=har`), for the
//! tools that read HTTP archives (browser devtools, proxies, `tether replay`).
//!
//! One entry per stored pair, oldest first:
//! - a `post` is an HTTP entry: the request as the PC sent it (`method`, default `POST` as the
//!   seed's bridge does; `url`; `headers`; `body` as `postData`), the response from the
//!   device's reply: when its `result` has the shape `{status, headers?, body}` (the simulated
//!   bridge's, and a common native one) those are the response's status, headers and body;
//!   otherwise the whole `result` is the body with status `200`, or `0` (HAR's "no response")
//!   when the device reported an `error`;
//! - a `call` is an entry with the method `CALL` and the URL `tether:call/<method>`, its
//!   `params` as `postData` and its `result` as the response body;
//! - `storage`, `eval` and `inspect` rows are not HTTP at all and are left out (the JSON form
//!   has them).
//!
//! Every entry also carries `_tether` (HAR's custom fields start with `_`): the row as the
//! JSON form has it (`id`, `type`, `reqId`, `pc`, `device`, `deviceName`, `request` as sent,
//! `result`, `cookie`, `appInfo`, `error`, `cut`), so nothing is lost. What HAR asks that the
//! native stack does not report (`httpVersion`, header sizes, the phases' timings) is `""`,
//! `-1`, or the whole latency as `wait`.

use crate::history::Item;
use serde_json::{Value, json};

/// The HAR document for `items` (newest first, as a page of history is) of `room`.
pub fn document(room: &str, items: &[Item]) -> Value {
    let entries: Vec<Value> =
        items.iter().rev().filter(|i| i.kind == "post" || i.kind == "call").map(entry).collect();
    json!({"log": {
        "version": "1.2",
        "creator": {"name": "tether-relay", "version": env!("CARGO_PKG_VERSION")},
        "comment": format!("room {room}: requests made through its devices, oldest first"),
        "entries": entries,
    }})
}

fn parse(raw: &serde_json::value::RawValue) -> Value {
    serde_json::from_str(raw.get()).unwrap_or(Value::Null)
}

/// One pair as an entry.
fn entry(i: &Item) -> Value {
    let request = parse(&i.request);
    let result = parse(&i.result);
    let error = i.error.as_deref().map(parse).filter(|e| !e.is_null());
    let cut = i.cut.as_deref().map(parse);
    let result_cut = cut.as_ref().is_some_and(|c| c.get("result").is_some());
    let (req, resp) = if i.kind == "call" {
        call_entry(i, &request, &result, error.is_some())
    } else {
        post_entry(i, &request, &result, error.is_some(), result_cut)
    };
    let mut tether = json!({
        "id": i.id, "type": i.kind, "reqId": i.req_id, "pc": i.pc, "device": i.device,
        "deviceName": i.device_name, "request": request, "result": result, "cookie": i.cookie,
        "appInfo": i.app_info.as_deref().map(parse), "error": error,
    });
    if let Some(cut) = cut {
        tether["cut"] = cut;
    }
    json!({
        "startedDateTime": iso8601(i.sent_at),
        "time": i.ms,
        "request": req,
        "response": resp,
        "cache": {},
        "timings": {"send": 0, "wait": i.ms, "receive": 0},
        "_tether": tether,
    })
}

fn post_entry(i: &Item, request: &Value, result: &Value, failed: bool, result_cut: bool) -> (Value, Value) {
    let url = har_url(i.url.as_deref().unwrap_or_default());
    let method = request["method"].as_str().map_or_else(|| "POST".to_owned(), str::to_ascii_uppercase);
    let headers = name_values(&request["headers"]);
    let mut req = json!({
        "method": method, "url": url, "httpVersion": "", "cookies": [], "headers": headers,
        "queryString": query_string(&url), "headersSize": -1, "bodySize": 0,
    });
    if let Some(body) = request.get("body").filter(|b| !b.is_null()) {
        let (text, default_type) = text_of(body);
        let mime = header_value(&request["headers"], "content-type").unwrap_or(default_type);
        req["bodySize"] = json!(text.len());
        req["postData"] = json!({"mimeType": mime, "text": text});
    }
    // `{status, headers?, body}`: the response as the bridge saw it.
    let shaped = result
        .get("status")
        .and_then(Value::as_u64)
        .filter(|s| (100..=599).contains(s) && !result_cut)
        .map(|s| (s, &result["headers"], result.get("body").unwrap_or(&Value::Null)));
    let (status, headers, body) = match shaped {
        Some((s, h, b)) => (s, h, b),
        None => (if failed { 0 } else { 200 }, &Value::Null, result),
    };
    let (text, default_type) = text_of(body);
    let mime = header_value(headers, "content-type").unwrap_or(default_type);
    let status_text =
        result.get("statusText").and_then(Value::as_str).filter(|_| shaped.is_some()).unwrap_or("");
    let mut content = json!({"size": text.len(), "mimeType": mime, "text": text});
    if result_cut {
        content["comment"] = json!("stored cut (--history-max-record): the start of the reply's JSON text");
    }
    let resp = json!({
        "status": status, "statusText": status_text, "httpVersion": "", "cookies": [],
        "headers": name_values(headers), "content": content, "redirectURL": "",
        "headersSize": -1, "bodySize": -1,
    });
    (req, resp)
}

fn call_entry(i: &Item, request: &Value, result: &Value, failed: bool) -> (Value, Value) {
    let method = i.method.clone().unwrap_or_default();
    let params = request.get("params").cloned().unwrap_or_else(|| json!([]));
    let params = params.to_string();
    let req = json!({
        "method": "CALL", "url": format!("tether:call/{}", percent_encode(&method)), "httpVersion": "",
        "cookies": [], "headers": [], "queryString": [], "headersSize": -1, "bodySize": params.len(),
        "postData": {"mimeType": "application/json", "text": params},
    });
    let (text, mime) = text_of(result);
    let resp = json!({
        "status": if failed { 0 } else { 200 }, "statusText": "", "httpVersion": "", "cookies": [],
        "headers": [], "content": {"size": text.len(), "mimeType": mime, "text": text},
        "redirectURL": "", "headersSize": -1, "bodySize": -1,
    });
    (req, resp)
}

/// A body as HAR text, and the media type it has when nothing says: a string as it is, any
/// other JSON as its text.
fn text_of(body: &Value) -> (String, String) {
    match body {
        Value::String(s) => (s.clone(), "text/plain; charset=utf-8".into()),
        Value::Null => (String::new(), "application/octet-stream".into()),
        other => (other.to_string(), "application/json".into()),
    }
}

/// `{"Name": "value"}` (or `[{name, value}]`) as HAR's `[{name, value}]`; values that are not
/// strings as their JSON text.
fn name_values(headers: &Value) -> Vec<Value> {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match headers {
        Value::Object(map) => map.iter().map(|(k, v)| json!({"name": k, "value": text(v)})).collect(),
        Value::Array(list) => list
            .iter()
            .filter_map(|h| Some(json!({"name": h.get("name")?.as_str()?, "value": text(h.get("value")?)})))
            .collect(),
        _ => Vec::new(),
    }
}

fn header_value(headers: &Value, name: &str) -> Option<String> {
    name_values(headers)
        .into_iter()
        .find(|h| h["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h["value"].as_str().map(str::to_owned))
}

/// A URL's query as HAR's `[{name, value}]`, decoded (`+` is a space).
fn query_string(url: &str) -> Vec<Value> {
    let Some((_, rest)) = url.split_once('?') else { return Vec::new() };
    let query = rest.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            json!({"name": percent_decode(k), "value": percent_decode(v)})
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A post's URL as a HAR `request.url` must be, an absolute URI: the characters a URI may not
/// hold (a space, Chinese in a query, …) percent-encoded as UTF-8, what is already encoded
/// kept; a URL without a scheme (the app's own `/api/…`, resolved by the app) as
/// `tether:post/<it, encoded>`, as a call is `tether:call/…`.
fn har_url(url: &str) -> String {
    let absolute = url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if !absolute {
        return format!("tether:post/{}", percent_encode(url));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b);
    url.bytes().map(|b| if allowed(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Milliseconds since the Unix epoch as ISO 8601 in UTC, `2026-12-02T09:29:00.123Z`.
pub fn iso8601(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), for dates from 1970 on.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn raw(v: Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).unwrap()
    }

    fn item(kind: &str, target: &str, request: Value, result: Value, error: Option<Value>) -> Item {
        Item {
            id: 7,
            kind: kind.into(),
            req_id: "r1".into(),
            pc: "p-1".into(),
            device: "d-1".into(),
            device_name: Some("Pixel".into()),
            url: (kind == "post").then(|| target.to_owned()),
            method: (kind != "post").then(|| target.to_owned()),
            request: raw(request),
            result: raw(result),
            cookie: Some("uid=42".into()),
            app_info: Some(raw(json!({"v": "7"}))),
            error: error.map(raw),
            cut: None,
            sent_at: 1_795_256_088_833,
            replied_at: 1_795_256_088_871,
            ms: 38,
        }
    }

    #[test]
    fn a_post_is_an_http_entry_with_the_bridges_response() {
        let request = json!({"url": "https://api.example/v1/share?qID=506336&q=a%20b+c", "method": "get",
            "headers": {"X-Token": "t", "Content-Type": "application/json"}, "body": {"a": 1}});
        let result = json!({"status": 201, "statusText": "Created", "headers": {"content-type": "text/html"}, "body": "<p>ok</p>"});
        let har =
            document("r", &[item("post", request["url"].as_str().unwrap(), request.clone(), result, None)]);
        let e = &har["log"]["entries"][0];
        assert_eq!(har["log"]["version"], "1.2");
        assert_eq!(e["startedDateTime"], "2026-11-21T10:14:48.833Z");
        assert_eq!((e["time"].as_u64(), e["timings"]["wait"].as_u64()), (Some(38), Some(38)));
        let req = &e["request"];
        assert_eq!(req["method"], "GET");
        assert_eq!(
            req["queryString"],
            json!([{"name": "qID", "value": "506336"}, {"name": "q", "value": "a b c"}])
        );
        assert_eq!(req["headers"][0], json!({"name": "Content-Type", "value": "application/json"}));
        assert_eq!(req["postData"], json!({"mimeType": "application/json", "text": "{\"a\":1}"}));
        assert_eq!(req["bodySize"], 7);
        let resp = &e["response"];
        assert_eq!((resp["status"].as_u64(), resp["statusText"].as_str()), (Some(201), Some("Created")));
        assert_eq!(resp["content"], json!({"size": 9, "mimeType": "text/html", "text": "<p>ok</p>"}));
        assert_eq!(e["_tether"]["request"], request, "the request as sent, whole");
        assert_eq!(
            (e["_tether"]["cookie"].as_str(), e["_tether"]["deviceName"].as_str()),
            (Some("uid=42"), Some("Pixel"))
        );
    }

    #[test]
    fn a_post_whose_result_is_the_body_and_one_that_failed() {
        let ok =
            item("post", "https://x/", json!({"url": "https://x/"}), json!({"code": 0, "data": [1]}), None);
        let failed =
            item("post", "https://x/", json!({"url": "https://x/"}), Value::Null, Some(json!("timeout")));
        let har = document("r", &[failed, ok]);
        // Oldest first: the page came newest first.
        let entries = har["log"]["entries"].as_array().unwrap();
        let (first, second) = (&entries[0], &entries[1]);
        assert_eq!(first["request"]["method"], "POST", "the seed's bridge's default");
        assert!(first["request"].get("postData").is_none());
        assert_eq!(first["response"]["status"], 200);
        assert_eq!(first["response"]["content"]["text"], "{\"code\":0,\"data\":[1]}");
        assert_eq!(second["response"]["status"], 0, "no response");
        assert_eq!(second["_tether"]["error"], "timeout");
    }

    #[test]
    fn a_post_url_is_written_as_an_absolute_uri() {
        assert_eq!(har_url("https://x/a%20b?q=1"), "https://x/a%20b?q=1", "already a URI: kept");
        assert_eq!(har_url("https://x/a b"), "https://x/a%20b");
        assert_eq!(har_url("https://例え.jp/?q=你好"), "https://%E4%BE%8B%E3%81%88.jp/?q=%E4%BD%A0%E5%A5%BD");
        assert_eq!(har_url("/api/v1/me"), "tether:post/%2Fapi%2Fv1%2Fme");
        assert_eq!(har_url(""), "tether:post/");
    }

    #[test]
    fn a_call_is_a_tether_entry_and_inspection_rows_are_left_out() {
        let call = item("call", "log in", json!({"method": "log in", "params": ["qq"]}), json!(true), None);
        let eval = item("eval", "1+1", json!({"code": "1+1"}), json!(2), None);
        let har = document("r", &[eval, call]);
        let entries = har["log"]["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 1);
        let req = &entries[0]["request"];
        assert_eq!(
            (req["method"].as_str(), req["url"].as_str()),
            (Some("CALL"), Some("tether:call/log%20in"))
        );
        assert_eq!(req["postData"]["text"], "[\"qq\"]");
        assert_eq!(entries[0]["response"]["content"]["text"], "true");
        assert_eq!(entries[0]["_tether"]["type"], "call");
    }

    #[test]
    fn a_cut_reply_is_the_start_of_its_text_and_says_so() {
        let mut i = item(
            "post",
            "https://x/",
            json!({"url": "https://x/"}),
            json!("{\"status\":200,\"body\":\"AAA"),
            None,
        );
        i.cut = Some(raw(json!({"result": 1_048_590})));
        let har = document("r", &[i]);
        let e = &har["log"]["entries"][0];
        assert_eq!(e["response"]["status"], 200);
        assert_eq!(e["response"]["content"]["text"], "{\"status\":200,\"body\":\"AAA");
        assert!(e["response"]["content"]["comment"].as_str().unwrap().contains("cut"));
        assert_eq!(e["_tether"]["cut"]["result"], 1_048_590);
    }

    #[test]
    fn times_are_utc_iso_8601_with_milliseconds() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
        assert_eq!(percent_decode("%E4%BD%A0%zz%4"), "你%zz%4");
    }
}
