//! [`Writer`]: one event's JSON text, written as the inspector's value walker goes, within
//! the caps.
//!
//! The walker (`sdk-inspect`'s `web/walk.rs`) asks the page what each value is ([`Kind`]) and
//! tells the Writer; the Writer decides what is written and what is cut: [`DEPTH`] levels of
//! arrays and objects, [`KEYS`] keys per object (each cut to [`KEY`] bytes), [`ITEMS`] items
//! per array, [`STRING`] bytes per string (cut on a character boundary), [`EVENT`] bytes for
//! the whole event. Values that
//! are not JSON are objects with the tag key `"$"` (docs/protocol.md, *Values*). The Writer
//! formats no floats: a number that is not a whole one is written as the page's JS gave it.

pub use super::value::{Kind, Text, utf16_len};
use super::{DEPTH, EVENT, ITEMS, KEY, KEYS, STRING};
use crate::Millis;
use crate::json::write_str;
use crate::num;

/// Bytes kept free below [`EVENT`] while walking: the `{"$":"cut"}` marker, the closing
/// brackets, and the event's last small fields. Should they still not fit, the event as a
/// whole becomes its stub (`{"k","at","n","$":"cut"}`).
const SLACK: usize = 256;

/// An event written, before the page's filter: its text (at most [`EVENT`] bytes) and where
/// its head (`{"k","at","n"`) ends, for the stub that stands for it when it cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub text: String,
    head: usize,
}

impl Draft {
    /// `{"k":…,"at":…,"n":…,"$":"cut"}`: the event, said to have been too large to send.
    pub fn stub(&self) -> String {
        let mut s = self.text[..self.head].to_owned();
        // A reply body's head is its `{` alone.
        s.push_str(&",\"$\":\"cut\"}"[usize::from(self.head == 1)..]);
        s
    }
}

/// One event's JSON text, written in order (see the module's doc).
pub struct Writer {
    out: String,
    /// Where `{"k","at","n"` ends.
    head: usize,
    /// Arrays and objects of page values open now (the event's own object and lists do not count).
    depth: usize,
    /// The event's budget is spent: from now on nothing more is walked.
    full: bool,
}

impl Writer {
    /// Starts an event: `{"k":k,"at":at,"n":n`.
    pub fn event(k: &str, at: Millis, n: u64) -> Writer {
        let mut w = Writer { out: String::with_capacity(128), head: 0, depth: 0, full: false };
        w.out.push('{');
        w.field("k");
        w.plain(k);
        w.field("at");
        w.uint(at);
        w.field("n");
        w.uint(n);
        w.head = w.out.len();
        w
    }

    /// Starts a reply body (an `evalCb`'s msg, `{`): its fields follow, under an event's caps.
    pub fn body() -> Writer {
        Writer { out: "{".into(), head: 1, depth: 0, full: false }
    }

    /// Ends the event. Never longer than [`EVENT`] bytes: an event that would be is its stub.
    pub fn finish(mut self) -> Draft {
        self.out.push('}');
        let head = self.head;
        let mut d = Draft { text: self.out, head };
        if d.text.len() > EVENT {
            d.text = d.stub();
        }
        d
    }

    /// Whether the event's budget is spent (the walker stops walking).
    pub fn is_full(&self) -> bool {
        self.full
    }

    /// Whether the next array or object opened is at [`DEPTH`] (and so only counted).
    pub fn at_depth(&self) -> bool {
        self.depth >= DEPTH
    }

    /// A comma, unless this is the first thing in an object, an array, or after a key.
    fn sep(&mut self) {
        if !matches!(self.out.as_bytes().last(), Some(b'[' | b'{' | b':') | None) {
            self.out.push(',');
        }
    }

    /// The key of the next field of the object being written: `,"name":`.
    pub fn field(&mut self, name: &str) {
        self.sep();
        write_str(&mut self.out, name);
        self.out.push(':');
    }

    /// After writing from `mark`: if the event's budget is spent, takes it back and writes
    /// `{"$":"cut"}` instead; nothing more will be walked.
    fn check(&mut self, mark: usize) {
        if self.out.len() > EVENT - SLACK {
            self.out.truncate(mark);
            self.cut();
        }
    }

    /// `{"$":"cut"}`: the event's budget ran out here.
    fn cut(&mut self) {
        self.full = true;
        self.mark("cut");
    }

    // --- values ---

    /// `null`.
    pub fn null(&mut self) {
        self.sep();
        self.out.push_str("null");
    }

    /// `true` or `false`.
    pub fn bool(&mut self, b: bool) {
        self.sep();
        self.out.push_str(if b { "true" } else { "false" });
    }

    /// A whole non-negative number.
    pub fn uint(&mut self, n: u64) {
        self.sep();
        self.out.push_str(&num(n));
    }

    /// A JS number. `NaN`, `±Infinity` and `-0` are tagged (`{"$":"num","v":"NaN"}`); a whole
    /// number up to 2^53 is written here; any other is written as `js(x)` says (JS's own
    /// `String(x)`: the SDK carries no float formatting), checked to be a JSON number.
    pub fn number(&mut self, x: f64, js: &dyn Fn(f64) -> String) {
        const SAFE: f64 = 9_007_199_254_740_991.0;
        if x.is_nan() || x.is_infinite() || (x == 0.0 && x.is_sign_negative()) {
            let v = match () {
                _ if x.is_nan() => "NaN",
                _ if x == 0.0 => "-0",
                _ if x > 0.0 => "Infinity",
                _ => "-Infinity",
            };
            return self.tagged("num", "v", v);
        }
        if x.fract() == 0.0 && x.abs() <= SAFE {
            self.sep();
            if x < 0.0 {
                self.out.push('-');
            }
            self.out.push_str(&num(x.abs() as u64));
            return;
        }
        let text = js(x);
        if is_json_number(&text) {
            self.sep();
            self.out.push_str(&text);
        } else {
            self.tagged("num", "v", &text);
        }
    }

    /// A string: as is when whole and within [`STRING`] bytes, else
    /// `{"$":"str","head","len"}` with its head cut to [`STRING`] bytes on a char boundary.
    pub fn string(&mut self, t: &Text) {
        self.text(t, STRING, true);
    }

    /// A string capped at `max` bytes (a body's cap is not a console string's): as [`string`]
    /// does; but when `whole` is false, `t` is known to be only the head of something longer
    /// whose length is not known (a body read only up to the cap), so it is written
    /// `{"$":"str","head"}`, without `len`.
    ///
    /// [`string`]: Self::string
    pub fn text(&mut self, t: &Text, max: usize, whole: bool) {
        if self.full {
            return self.cut();
        }
        let mark = self.out.len();
        if whole && t.len <= max && t.head.len() <= max {
            self.sep();
            write_str(&mut self.out, &t.head);
        } else {
            self.tag("str");
            self.field("head");
            write_str(&mut self.out, cut(&t.head, max));
            if whole {
                self.field("len");
                self.uint(t.len as u64);
            }
            self.end();
        }
        self.check(mark);
    }

    /// A JSON string cut to [`STRING`] bytes without a mark: what the SDK writes itself (a
    /// level, a source) and tag fields (a class name, a node's description, …).
    pub fn plain(&mut self, s: &str) {
        let mark = self.out.len();
        self.sep();
        write_str(&mut self.out, cut(s, STRING));
        self.check(mark);
    }

    /// Opens a tagged value `{"$":tag`; its fields follow with [`field`](Self::field), then
    /// [`end`](Self::end).
    pub fn tag(&mut self, tag: &str) {
        self.sep();
        self.out.push_str("{\"$\":");
        write_str(&mut self.out, tag);
    }

    /// Opens an object of the event's own (not a page value: no caps); its fields follow,
    /// then [`end`](Self::end).
    pub fn object(&mut self) {
        self.sep();
        self.out.push('{');
    }

    /// Closes a tagged value, or an object opened by [`object`](Self::object).
    pub fn end(&mut self) {
        self.out.push('}');
    }

    /// `{"$":tag}`: `undefined`, `cycle`, `threw`, `cut`.
    pub fn mark(&mut self, tag: &str) {
        self.tag(tag);
        self.end();
    }

    fn tagged(&mut self, tag: &str, field: &str, v: &str) {
        self.tag(tag);
        self.field(field);
        self.plain(v);
        self.end();
    }

    /// A value of a kind written from one text: a BigInt's digits, a symbol's or a
    /// function's name, a node's description (`div#app.main`), a window's or document's
    /// class, a date's ISO text, a regexp's source; binary data's type and byte length `len`.
    /// Any other kind is `{"$":"undefined"}` (the walker writes those itself).
    pub fn described(&mut self, kind: Kind, text: &str, len: u64) {
        let Some((tag, field)) = kind.described() else {
            return self.mark("undefined");
        };
        self.tag(tag);
        self.field(field);
        self.plain(text);
        if kind == Kind::Bin {
            self.field("len");
            self.uint(len);
        }
        self.end();
    }

    /// An Error: `{"$":"error","name","message","stack"}` (what of them is a string).
    pub fn error(&mut self, name: Option<&Text>, message: Option<&Text>, stack: Option<&Text>) {
        self.tag("error");
        for (f, t) in [("name", name), ("message", message), ("stack", stack)] {
            if let Some(t) = t {
                self.field(f);
                self.string(t);
            }
        }
        self.end();
    }

    /// Opens a Map's or a Set's tag, `{"$":"map","size":n,"v":`; the walker then writes its
    /// entries (a Map's as `[key, value]` pairs) as an array and calls [`end`](Self::end).
    pub fn collection(&mut self, kind: Kind, size: u64) {
        self.tag(if kind == Kind::Map { "map" } else { "set" });
        self.field("size");
        self.uint(size);
        self.field("v");
    }

    /// Opens `{"$":"obj","class":class,"v":` around an object of some class (or a plain one
    /// that has its own key `"$"`); the walker writes the object, then calls [`end`](Self::end).
    pub fn instance(&mut self, class: &str) {
        self.tag("obj");
        self.field("class");
        self.plain(class);
        self.field("v");
    }

    // --- arrays and objects of the page ---

    /// Opens an array of `len` items. `false` when it is not to be walked (the walker then
    /// writes nothing more for it and does not close it): at [`DEPTH`] it is written as
    /// `[{"$":"more","n":len}]`, and with the budget spent as `{"$":"cut"}`.
    pub fn open_arr(&mut self, len: usize) -> bool {
        if self.full {
            self.cut();
            return false;
        }
        self.sep();
        if self.depth >= DEPTH {
            self.out.push('[');
            if len > 0 {
                self.more_item(len);
            }
            self.out.push(']');
            return false;
        }
        self.out.push('[');
        self.depth += 1;
        true
    }

    /// Closes an array opened by [`open_arr`](Self::open_arr) (that returned `true`).
    pub fn close_arr(&mut self) {
        self.out.push(']');
        self.depth -= 1;
    }

    /// Before item `i` of `len`: whether to write it. At [`ITEMS`] the rest is said as a last
    /// item `{"$":"more","n":rest}`; with the budget spent, `{"$":"cut"}` and nothing more.
    pub fn item(&mut self, i: usize, len: usize) -> bool {
        if self.full {
            return false;
        }
        // Numbers and other short values are not checked one by one: each item is.
        if self.out.len() > EVENT - SLACK {
            self.cut();
            return false;
        }
        if i >= ITEMS {
            self.more_item(len - i);
            return false;
        }
        true
    }

    fn more_item(&mut self, n: usize) {
        self.tag("more");
        self.field("n");
        self.uint(n as u64);
        self.end();
    }

    /// Opens an object of `keys` own keys; `false` as for [`open_arr`](Self::open_arr): at
    /// [`DEPTH`] it is written as `{"$more":keys}`.
    pub fn open_obj(&mut self, keys: usize) -> bool {
        if self.full {
            self.cut();
            return false;
        }
        self.sep();
        self.out.push('{');
        if self.depth >= DEPTH {
            if keys > 0 {
                self.more_key(keys);
            }
            self.out.push('}');
            return false;
        }
        self.depth += 1;
        true
    }

    /// Closes an object opened by [`open_obj`](Self::open_obj) (that returned `true`).
    pub fn close_obj(&mut self) {
        self.out.push('}');
        self.depth -= 1;
    }

    /// Key `i` of `keys` (cut to [`KEY`] bytes): whether to write its value next. At
    /// [`KEYS`], or when the key itself does not fit the budget, the rest is said as
    /// `"$more":rest`; with the budget spent, nothing more.
    pub fn key(&mut self, i: usize, keys: usize, name: &str) -> bool {
        if self.full {
            return false;
        }
        if i < KEYS {
            let mark = self.out.len();
            self.field(cut(name, KEY));
            if self.out.len() <= EVENT - SLACK {
                return true;
            }
            self.out.truncate(mark);
            self.full = true;
        }
        self.more_key(keys - i);
        false
    }

    fn more_key(&mut self, n: usize) {
        self.field("$more");
        self.uint(n as u64);
    }

    // --- the event's own lists ---

    /// Opens the event's list field `name` (a console call's `args`): its items are counted
    /// against [`ITEMS`] but it is not a level of [`DEPTH`].
    pub fn list(&mut self, name: &str) {
        self.field(name);
        self.out.push('[');
    }

    /// Closes the event's list.
    pub fn end_list(&mut self) {
        self.out.push(']');
    }
}

/// `s` cut to at most `max` bytes, on a char boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// Whether `t` looks like JS's text of a finite number (`-1.5e-7`): JS's `String(x)` always
/// is JSON; this only keeps anything else (the shim answered `""`) out of the event's JSON.
fn is_json_number(t: &str) -> bool {
    let b = t.as_bytes();
    b.last().is_some_and(u8::is_ascii_digit)
        && b.len() <= 32
        && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'.' | b'e' | b'-' | b'+'))
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
