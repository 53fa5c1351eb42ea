//! XML-RPC ⇄ JSON, a pure module with no I/O.
//!
//! Longer than most files here on purpose: one codec, both directions, with the limits they
//! share (depth, size, the characters XML 1.0 allows); split apart, the rules that must mirror
//! each other would drift. Its tests live in `xmlrpc_tests.rs`.
//!
//! | JSON | XML-RPC |
//! |---|---|
//! | integer | `<int>` (`<i8>` beyond 32 bits); `<i4>`, `<int>`, `<i8>` all decode to integers |
//! | fraction | `<double>` |
//! | string | `<string>`; an untyped `<value>text</value>` decodes to a string, whitespace kept; `<value/>` is `""` |
//! | `true`/`false` | `<boolean>1</boolean>` / `0` |
//! | `null` | `<nil/>` |
//! | array | `<array><data>…</data></array>` |
//! | object | `<struct>` of `<member>`s |
//! | `{"$base64": "…"}` | `<base64>` |
//! | `{"$datetime": "…"}` | `<dateTime.iso8601>` |
//!
//! Whitespace between elements is ignored; CDATA, the predefined entities and numeric character
//! references are decoded. A DOCTYPE or any other entity is an error: nothing is ever
//! expanded; [`check_passthrough`] refuses them in raw XML bound for the legacy server, whose
//! parser may be less careful. Encoding refuses what XML-RPC cannot carry exactly rather than
//! send something else: a JSON integer beyond 64 bits (serde_json would have made it a
//! double), a character XML 1.0 forbids (NUL and most C0 controls, U+FFFE, U+FFFF). Input is limited in size ([`MAX_INPUT`]) and nesting ([`MAX_DEPTH`]). A declared
//! encoding other than UTF-8 is decoded when it is ISO-8859-1 (Latin-1, US-ASCII) and refused
//! otherwise.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Number, Value};
use std::borrow::Cow;

/// Largest XML document decoded.
pub const MAX_INPUT: usize = 16 * 1024 * 1024;
/// Deepest nesting of arrays and structs.
pub const MAX_DEPTH: usize = 64;

/// Why a document could not be decoded or a value encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Not well-formed XML.
    #[error("not well-formed XML: {0}")]
    Xml(String),
    /// Well-formed, but not XML-RPC.
    #[error("not XML-RPC: {0}")]
    Shape(String),
    /// A DOCTYPE or an entity other than the five predefined ones.
    #[error("refused: {0} (no DTD is ever processed)")]
    Dtd(String),
    /// Too large or too deep.
    #[error("too large: {0}")]
    Limit(String),
    /// A declared encoding this codec does not read.
    #[error("unsupported encoding {0:?}: send UTF-8 (or ISO-8859-1)")]
    Encoding(String),
    /// A JSON value XML-RPC cannot carry.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// A request body that is not JSON, or not `{"method", "params"}`.
    #[error("{0}")]
    Request(String),
}

/// A decoded `methodResponse`.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// The returned value.
    Ok(Value),
    /// A fault: `faultCode` and `faultString`.
    Fault {
        /// `faultCode` (usually an integer).
        code: Value,
        /// `faultString`.
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Whether XML 1.0 can carry `c` at all (its `Char` production): not NUL, not the C0 controls
/// but tab, newline and carriage return, not U+FFFE or U+FFFF. Not even a character reference
/// may name one of these, so a string holding one cannot be sent; it is refused, never dropped
/// or replaced.
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `s` escaped into `out`, or an error naming `what` when XML cannot carry one of its characters.
fn escape_into(out: &mut String, s: &str, what: &str) -> Result<(), CodecError> {
    if let Some(c) = s.chars().find(|c| !xml_char(*c)) {
        return Err(CodecError::Encode(format!(
            "{what} contains U+{:04X}, a character XML 1.0 cannot carry",
            u32::from(c)
        )));
    }
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    Ok(())
}

fn encode_value(out: &mut String, v: &Value, depth: usize) -> Result<(), CodecError> {
    if depth > MAX_DEPTH {
        return Err(CodecError::Limit(format!("nested deeper than {MAX_DEPTH}")));
    }
    out.push_str("<value>");
    match v {
        Value::Null => out.push_str("<nil/>"),
        Value::Bool(b) => out.push_str(if *b { "<boolean>1</boolean>" } else { "<boolean>0</boolean>" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i32::try_from(i).is_ok() {
                    out.push_str(&format!("<int>{i}</int>"));
                } else {
                    out.push_str(&format!("<i8>{i}</i8>"));
                }
            } else if n.is_u64() {
                return Err(too_big(&n.to_string()));
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                out.push_str(&format!("<double>{f:?}</double>"));
            }
        }
        Value::String(s) => {
            out.push_str("<string>");
            escape_into(out, s, "a string")?;
            out.push_str("</string>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>");
            for item in items {
                encode_value(out, item, depth + 1)?;
            }
            out.push_str("</data></array>");
        }
        Value::Object(map) => match special(map) {
            Some(("$base64", text)) => {
                out.push_str("<base64>");
                escape_into(out, text, "a $base64 value")?;
                out.push_str("</base64>");
            }
            Some((_, text)) => {
                out.push_str("<dateTime.iso8601>");
                escape_into(out, text, "a $datetime value")?;
                out.push_str("</dateTime.iso8601>");
            }
            None => {
                out.push_str("<struct>");
                for (k, item) in map {
                    out.push_str("<member><name>");
                    escape_into(out, k, "a struct key")?;
                    out.push_str("</name>");
                    encode_value(out, item, depth + 1)?;
                    out.push_str("</member>");
                }
                out.push_str("</struct>");
            }
        },
    }
    out.push_str("</value>");
    Ok(())
}

/// `{"$base64": "…"}` or `{"$datetime": "…"}`: the one key and its text.
fn special(map: &Map<String, Value>) -> Option<(&'static str, &str)> {
    if map.len() != 1 {
        return None;
    }
    let (k, v) = map.iter().next()?;
    let text = v.as_str()?;
    match k.as_str() {
        "$base64" => Some(("$base64", text)),
        "$datetime" => Some(("$datetime", text)),
        _ => None,
    }
}

/// A `methodCall`.
pub fn encode_call(method: &str, params: &[Value]) -> Result<String, CodecError> {
    if method.is_empty() {
        return Err(CodecError::Encode("the method name is empty".into()));
    }
    let mut out = String::from("<?xml version=\"1.0\"?><methodCall><methodName>");
    escape_into(&mut out, method, "the method name")?;
    out.push_str("</methodName><params>");
    for p in params {
        out.push_str("<param>");
        encode_value(&mut out, p, 0)?;
        out.push_str("</param>");
    }
    out.push_str("</params></methodCall>");
    Ok(out)
}

/// A `methodResponse` carrying `value`.
pub fn encode_response(value: &Value) -> Result<String, CodecError> {
    let mut out = String::from("<?xml version=\"1.0\"?><methodResponse><params><param>");
    encode_value(&mut out, value, 0)?;
    out.push_str("</param></params></methodResponse>");
    Ok(out)
}

/// A `methodResponse` carrying a fault.
pub fn encode_fault(code: i64, message: &str) -> String {
    let mut out = String::from("<?xml version=\"1.0\"?><methodResponse><fault>");
    let mut fault = Map::new();
    fault.insert("faultCode".into(), Value::Number(code.into()));
    // A character XML cannot carry is left out of a message this side writes.
    let message: String = message.chars().filter(|c| xml_char(*c)).collect();
    fault.insert("faultString".into(), Value::String(message));
    // Cannot fail: an integer and a string of characters XML carries.
    let _ = encode_value(&mut out, &Value::Object(fault), 0);
    out.push_str("</fault></methodResponse>");
    out
}

/// A `methodCall` from a request body `{"method": "name", "params": [...]}`: [`call_json`],
/// then [`encode_call`].
pub fn call_from_json(body: &[u8]) -> Result<String, CodecError> {
    let (method, params) = call_json(body)?;
    encode_call(&method, &params)
}

/// The method and parameters of a request body `{"method": "name", "params": [...]}`
/// (`params` may be absent or `null`).
///
/// serde_json (without `arbitrary_precision`) reads an integer beyond 64 bits as the nearest
/// double: `123456789012345678901234567890` would reach the legacy server as
/// `<double>1.2345678901234568e29</double>`, and `-9223372036854775809` as `i64::MIN`'s double,
/// another number than the one sent. So the integer literals of the text are checked first.
pub fn call_json(body: &[u8]) -> Result<(String, Vec<Value>), CodecError> {
    let bad = |m: String| CodecError::Request(m);
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    exact_integers(body)?;
    let Value::Object(mut v) = v else {
        return Err(bad(r#"expected {"method": "name", "params": [...]}"#.into()));
    };
    let method = match v.remove("method") {
        Some(Value::String(m)) if !m.is_empty() => m,
        _ => return Err(bad(r#"expected {"method": "name", "params": [...]}"#.into())),
    };
    let params = match v.remove("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(p)) => p,
        Some(_) => return Err(bad("params must be an array".into())),
    };
    Ok((method, params))
}

/// Refuses an integer literal (no fraction, no exponent) of JSON text that does not fit 64 bits.
/// `json` is known to be valid JSON: outside strings, a number starts with `-` or a digit.
fn exact_integers(json: &[u8]) -> Result<(), CodecError> {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len() && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                    i += 1;
                }
                let literal = &json[start..i];
                let integer = !literal.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
                // ASCII by construction.
                let text = std::str::from_utf8(literal).unwrap_or_default();
                if integer && text.parse::<i64>().is_err() {
                    return Err(too_big(text));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn too_big(n: &str) -> CodecError {
    CodecError::Encode(format!(
        "the integer {n} does not fit XML-RPC's 64-bit <i8> (send it as a string, or as a number with a fraction)"
    ))
}

/// Checks raw XML that is passed through to the legacy server unchanged: no DOCTYPE and no
/// entity declaration anywhere outside comments and CDATA sections (in any letter case), no NUL
/// byte and no UTF-16 byte order mark. The legacy server's parser may expand entities or fetch
/// external DTDs; ours never does, but it is not the one reading these bytes. UTF-16 (or any
/// text with NUL bytes) would hide a `<!DOCTYPE` from a byte scan, and is not XML-RPC's habit.
pub fn check_passthrough(xml: &[u8]) -> Result<(), CodecError> {
    if xml.starts_with(b"\xFF\xFE") || xml.starts_with(b"\xFE\xFF") || xml.contains(&0) {
        return Err(CodecError::Dtd("UTF-16 or NUL bytes in raw XML: send UTF-8".into()));
    }
    let mut i = 0;
    while let Some(at) = xml[i..].iter().position(|&b| b == b'<').map(|p| p + i) {
        let rest = &xml[at..];
        let skip_to = |end: &[u8]| rest.windows(end.len()).position(|w| w == end).map(|p| at + p + end.len());
        if rest.starts_with(b"<!--") {
            i = skip_to(b"-->").unwrap_or(xml.len());
        } else if rest.starts_with(b"<![CDATA[") {
            i = skip_to(b"]]>").unwrap_or(xml.len());
        } else if let Some(decl) = rest.strip_prefix(b"<!") {
            let word = decl.trim_ascii_start();
            for refused in [&b"DOCTYPE"[..], b"ENTITY"] {
                if word.len() >= refused.len() && word[..refused.len()].eq_ignore_ascii_case(refused) {
                    return Err(CodecError::Dtd(format!("a <!{}", String::from_utf8_lossy(refused))));
                }
            }
            i = at + 2;
        } else {
            i = at + 1;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Reads the XML declaration's encoding and gives the document as text.
fn to_text(xml: &[u8]) -> Result<Cow<'_, str>, CodecError> {
    if xml.len() > MAX_INPUT {
        return Err(CodecError::Limit(format!("{} bytes (at most {MAX_INPUT})", xml.len())));
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let declared = declared_encoding(xml).map(|e| e.to_ascii_lowercase());
    let text = match declared.as_deref() {
        None | Some("utf-8" | "utf8") => std::str::from_utf8(xml)
            .map(Cow::Borrowed)
            .map_err(|e| CodecError::Xml(format!("not valid UTF-8 at byte {}", e.valid_up_to())))?,
        // Latin-1 maps each byte to the code point of the same number.
        Some("iso-8859-1" | "latin1" | "latin-1" | "us-ascii" | "ascii") => {
            Cow::Owned(xml.iter().map(|&b| char::from(b)).collect())
        }
        Some(other) => return Err(CodecError::Encoding(other.to_owned())),
    };
    // quick-xml does not check characters; XML 1.0 forbids these even raw. Refusing them here
    // keeps the codec's promise that what it decodes, it can encode again.
    if let Some((at, c)) = text.char_indices().find(|(_, c)| !xml_char(*c)) {
        return Err(CodecError::Xml(format!(
            "U+{:04X} at byte {at} is not an XML 1.0 character",
            u32::from(c)
        )));
    }
    Ok(text)
}

fn declared_encoding(xml: &[u8]) -> Option<String> {
    let head = xml.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let rest = &decl[decl.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_owned())
}

/// Decodes a `methodResponse`.
pub fn decode_response(xml: &[u8]) -> Result<Response, CodecError> {
    let text = to_text(xml)?;
    let mut p = Parser::new(&text);
    p.open("methodResponse")?;
    let resp = match p.next_tag()? {
        Tag::Start(name) if name == "params" => {
            let value = match p.next_tag()? {
                Tag::Start(n) if n == "param" => {
                    let v = p.next_value(0)?;
                    p.close("param")?;
                    p.close("params")?;
                    v
                }
                Tag::End(n) if n == "params" => Value::Null,
                other => return Err(other.unexpected("<param>")),
            };
            Response::Ok(value)
        }
        Tag::Empty(name) if name == "params" => Response::Ok(Value::Null),
        Tag::Start(name) if name == "fault" => {
            let v = p.next_value(0)?;
            p.close("fault")?;
            let code = v.get("faultCode").cloned().unwrap_or(Value::Null);
            let message = v.get("faultString").and_then(Value::as_str).unwrap_or_default().to_owned();
            Response::Fault { code, message }
        }
        other => return Err(other.unexpected("<params> or <fault>")),
    };
    p.close("methodResponse")?;
    p.end()?;
    Ok(resp)
}

/// The method name of a `methodCall`, reading no further than it (the parameters may hold
/// types this codec does not decode: raw XML passes through).
pub fn call_method(xml: &[u8]) -> Result<String, CodecError> {
    let text = to_text(xml)?;
    let mut p = Parser::new(&text);
    p.open("methodCall")?;
    p.open("methodName")?;
    Ok(p.text_until("methodName")?.trim().to_owned())
}

/// Decodes a `methodCall`: the method name and the parameters.
pub fn decode_call(xml: &[u8]) -> Result<(String, Vec<Value>), CodecError> {
    let text = to_text(xml)?;
    let mut p = Parser::new(&text);
    p.open("methodCall")?;
    p.open("methodName")?;
    let method = p.text_until("methodName")?.trim().to_owned();
    let mut params = Vec::new();
    match p.next_tag()? {
        Tag::Start(n) if n == "params" => loop {
            match p.next_tag()? {
                Tag::Start(n) if n == "param" => {
                    params.push(p.next_value(0)?);
                    p.close("param")?;
                }
                Tag::End(n) if n == "params" => break,
                other => return Err(other.unexpected("<param>")),
            }
        },
        Tag::Empty(n) if n == "params" => {}
        Tag::End(n) if n == "methodCall" => {
            p.end()?;
            return Ok((method, params));
        }
        other => return Err(other.unexpected("<params>")),
    }
    p.close("methodCall")?;
    p.end()?;
    Ok((method, params))
}

/// A structural event.
#[derive(Debug)]
enum Tag {
    Start(String),
    Empty(String),
    End(String),
    Eof,
}

impl Tag {
    fn unexpected(self, wanted: &str) -> CodecError {
        let got = match self {
            Tag::Start(n) => format!("<{n}>"),
            Tag::Empty(n) => format!("<{n}/>"),
            Tag::End(n) => format!("</{n}>"),
            Tag::Eof => "the end of the document".into(),
        };
        CodecError::Shape(format!("expected {wanted}, found {got}"))
    }
}

struct Parser<'a> {
    r: Reader<&'a [u8]>,
}

fn name_of(s: &BytesStart<'_>) -> String {
    s.name().as_ref().to_owned()
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { r: Reader::from_str(text) }
    }

    fn raw(&mut self) -> Result<Event<'a>, CodecError> {
        match self.r.read_event() {
            Ok(Event::DocType(_)) => Err(CodecError::Dtd("a DOCTYPE".into())),
            Ok(e) => Ok(e),
            Err(e) => Err(CodecError::Xml(e.to_string())),
        }
    }

    /// The next element boundary, skipping whitespace, comments, PIs and the declaration.
    fn next_tag(&mut self) -> Result<Tag, CodecError> {
        loop {
            match self.raw()? {
                Event::Start(s) => return Ok(Tag::Start(name_of(&s))),
                Event::Empty(s) => return Ok(Tag::Empty(name_of(&s))),
                Event::End(e) => return Ok(Tag::End(e.name().as_ref().to_owned())),
                Event::Text(t) if t.xml10_content().trim().is_empty() => {}
                Event::Text(t) => {
                    return Err(CodecError::Shape(format!("unexpected text {:?}", t.xml10_content().trim())));
                }
                Event::CData(_) => return Err(CodecError::Shape("unexpected CDATA between elements".into())),
                Event::GeneralRef(r) => {
                    return Err(CodecError::Shape(format!(
                        "unexpected &{}; between elements",
                        r.into_inner()
                    )));
                }
                Event::Comment(_) | Event::PI(_) | Event::Decl(_) => {}
                Event::DocType(_) => return Err(CodecError::Dtd("a DOCTYPE".into())),
                Event::Eof => return Ok(Tag::Eof),
            }
        }
    }

    fn open(&mut self, name: &str) -> Result<(), CodecError> {
        match self.next_tag()? {
            Tag::Start(n) if n == name => Ok(()),
            other => Err(other.unexpected(&format!("<{name}>"))),
        }
    }

    fn close(&mut self, name: &str) -> Result<(), CodecError> {
        match self.next_tag()? {
            Tag::End(n) if n == name => Ok(()),
            other => Err(other.unexpected(&format!("</{name}>"))),
        }
    }

    fn end(&mut self) -> Result<(), CodecError> {
        match self.next_tag()? {
            Tag::Eof => Ok(()),
            other => Err(other.unexpected("the end of the document")),
        }
    }

    /// Appends one piece of character data (text, CDATA or a reference); `false` for anything else.
    fn push_char_data(&mut self, out: &mut String, ev: &Event<'a>) -> Result<bool, CodecError> {
        match ev {
            Event::Text(t) => out.push_str(&t.xml10_content()),
            Event::CData(c) => out.push_str(c.as_ref()),
            Event::GeneralRef(r) => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) if xml_char(c) => out.push(c),
                        _ => {
                            return Err(CodecError::Xml(format!("bad character reference &{};", r.as_ref())));
                        }
                    }
                } else {
                    // The five predefined entities, by quick-xml's own table; any other is one
                    // a DTD would declare, and none is ever processed.
                    let name = r.as_ref();
                    match quick_xml::escape::resolve_xml_entity(name) {
                        Some(text) => out.push_str(text),
                        None => return Err(CodecError::Dtd(format!("the entity &{name};"))),
                    }
                }
            }
            Event::Comment(_) | Event::PI(_) => {}
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Character data up to `</end>`.
    fn text_until(&mut self, end: &str) -> Result<String, CodecError> {
        let mut out = String::new();
        loop {
            let ev = self.raw()?;
            if self.push_char_data(&mut out, &ev)? {
                continue;
            }
            return match ev {
                Event::End(e) if e.name().as_ref() == end => Ok(out),
                Event::Eof => Err(Tag::Eof.unexpected(&format!("</{end}>"))),
                Event::Start(s) | Event::Empty(s) => {
                    Err(Tag::Start(name_of(&s)).unexpected(&format!("text and </{end}>")))
                }
                Event::End(e) => Err(Tag::End(e.name().as_ref().to_owned()).unexpected(&format!("</{end}>"))),
                _ => Err(CodecError::Shape(format!("unexpected content in <{end}>"))),
            };
        }
    }

    /// The next `<value>…</value>` (or `<value/>`, an empty string).
    fn next_value(&mut self, depth: usize) -> Result<Value, CodecError> {
        match self.next_tag()? {
            Tag::Start(n) if n == "value" => self.value(depth),
            Tag::Empty(n) if n == "value" => Ok(Value::String(String::new())),
            other => Err(other.unexpected("<value>")),
        }
    }

    /// The content of a `<value>` whose start tag was just read, up to and including `</value>`.
    fn value(&mut self, depth: usize) -> Result<Value, CodecError> {
        if depth > MAX_DEPTH {
            return Err(CodecError::Limit(format!("nested deeper than {MAX_DEPTH}")));
        }
        let mut text = String::new();
        loop {
            let ev = self.raw()?;
            if self.push_char_data(&mut text, &ev)? {
                continue;
            }
            let v = match ev {
                // An untyped value is a string, whitespace kept.
                Event::End(e) if e.name().as_ref() == "value" => return Ok(Value::String(text)),
                Event::Start(s) => {
                    self.only_whitespace(&text)?;
                    let name = name_of(&s);
                    self.typed(&name, depth)?
                }
                Event::Empty(s) => {
                    self.only_whitespace(&text)?;
                    match name_of(&s).as_str() {
                        "nil" => Value::Null,
                        "string" => Value::String(String::new()),
                        "array" => Value::Array(Vec::new()),
                        "struct" => Value::Object(Map::new()),
                        "base64" => base64_json(""),
                        other => return Err(CodecError::Shape(format!("<{other}/> has no value"))),
                    }
                }
                Event::Eof => return Err(Tag::Eof.unexpected("</value>")),
                Event::End(e) => {
                    return Err(Tag::End(e.name().as_ref().to_owned()).unexpected("</value>"));
                }
                _ => return Err(CodecError::Shape("unexpected content in <value>".into())),
            };
            self.close("value")?;
            return Ok(v);
        }
    }

    fn only_whitespace(&self, text: &str) -> Result<(), CodecError> {
        if text.trim().is_empty() {
            Ok(())
        } else {
            Err(CodecError::Shape(format!("text {:?} next to a typed value", text.trim())))
        }
    }

    /// The content of `<name>` (a type element whose start tag was just read), through `</name>`.
    fn typed(&mut self, name: &str, depth: usize) -> Result<Value, CodecError> {
        Ok(match name {
            "i4" | "int" | "i8" => {
                let t = self.text_until(name)?;
                let i: i64 = t.trim().parse().map_err(|_| {
                    CodecError::Shape(format!("<{name}>{}</{name}> is not an integer", t.trim()))
                })?;
                Value::Number(i.into())
            }
            "double" => {
                let t = self.text_until(name)?;
                let f: f64 = t.trim().parse().map_err(|_| {
                    CodecError::Shape(format!("<double>{}</double> is not a number", t.trim()))
                })?;
                Value::Number(Number::from_f64(f).ok_or_else(|| {
                    CodecError::Shape(format!("<double>{}</double> has no JSON form", t.trim()))
                })?)
            }
            "boolean" => match self.text_until(name)?.trim() {
                "1" => Value::Bool(true),
                "0" => Value::Bool(false),
                other => return Err(CodecError::Shape(format!("<boolean>{other}</boolean> is not 0 or 1"))),
            },
            "string" => Value::String(self.text_until(name)?),
            "base64" => base64_json(self.text_until(name)?.trim()),
            "dateTime.iso8601" => {
                let mut m = Map::new();
                m.insert("$datetime".into(), Value::String(self.text_until(name)?.trim().to_owned()));
                Value::Object(m)
            }
            "nil" => {
                self.text_until(name)?;
                Value::Null
            }
            "array" => {
                let mut items = Vec::new();
                match self.next_tag()? {
                    Tag::Empty(n) if n == "data" => {}
                    Tag::Start(n) if n == "data" => loop {
                        match self.next_tag()? {
                            Tag::Start(n) if n == "value" => items.push(self.value(depth + 1)?),
                            Tag::Empty(n) if n == "value" => items.push(Value::String(String::new())),
                            Tag::End(n) if n == "data" => break,
                            other => return Err(other.unexpected("<value> or </data>")),
                        }
                    },
                    other => return Err(other.unexpected("<data>")),
                }
                self.close("array")?;
                Value::Array(items)
            }
            "struct" => {
                let mut map = Map::new();
                loop {
                    match self.next_tag()? {
                        Tag::Start(n) if n == "member" => {
                            self.open("name")?;
                            let key = self.text_until("name")?;
                            let v = self.next_value(depth + 1)?;
                            self.close("member")?;
                            map.insert(key, v);
                        }
                        Tag::End(n) if n == "struct" => break,
                        other => return Err(other.unexpected("<member> or </struct>")),
                    }
                }
                Value::Object(map)
            }
            other => return Err(CodecError::Shape(format!("unknown type <{other}>"))),
        })
    }
}

fn base64_json(text: &str) -> Value {
    let mut m = Map::new();
    m.insert("$base64".into(), Value::String(text.to_owned()));
    Value::Object(m)
}

#[cfg(test)]
#[path = "xmlrpc_tests.rs"]
mod tests;
