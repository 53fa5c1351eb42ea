//! What the walker knows of a value of the page: its [`Kind`] and, for a string, its [`Text`]
//! as copied into wasm.

use super::STRING;

/// What a value of the page is: the walker's question `what(v)`, answered by the inspector's
/// shim with these numbers (`hooks.js` returns them; keep both in step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Undefined,
    Null,
    True,
    False,
    Number,
    String,
    BigInt,
    Symbol,
    Function,
    Array,
    /// A plain object (its prototype is `Object.prototype` or `null`).
    Object,
    /// An object of some class: written as `{"$":"obj","class","v"}`.
    Instance,
    Error,
    /// A DOM node other than a document: described, never walked.
    Node,
    /// A window or a document: named, never walked.
    Win,
    Date,
    RegExp,
    Map,
    Set,
    /// An `ArrayBuffer`, a typed array or `DataView`, a `Blob`.
    Bin,
}

impl Kind {
    /// The kind the shim's code means; an unknown code is an object (walked under the caps).
    pub fn from_code(code: u32) -> Kind {
        use Kind::*;
        const ALL: [Kind; 20] = [
            Undefined, Null, True, False, Number, String, BigInt, Symbol, Function, Array, Object, Instance,
            Error, Node, Win, Date, RegExp, Map, Set, Bin,
        ];
        ALL.get(code as usize).copied().unwrap_or(Object)
    }

    /// For a kind written from one text alone: its tag and the text's field name.
    pub(super) fn described(self) -> Option<(&'static str, &'static str)> {
        Some(match self {
            Kind::BigInt => ("bigint", "v"),
            Kind::Symbol => ("sym", "v"),
            Kind::Function => ("fn", "name"),
            Kind::Node => ("node", "d"),
            Kind::Win => ("win", "class"),
            Kind::Date => ("date", "v"),
            Kind::RegExp => ("regexp", "v"),
            Kind::Bin => ("bin", "type"),
            _ => return None,
        })
    }
}

/// A string of the page as the inspector copied it: JS cuts it to its first [`STRING`]
/// UTF-16 units *before* it is copied into wasm (a 5 MB string costs 8 KB, not 5 MB), and
/// `len` is its whole length in UTF-16 units (JS's `.length`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    /// The first [`STRING`] UTF-16 units at most (a split surrogate pair arrives as U+FFFD).
    pub head: String,
    /// The whole string's length in UTF-16 units.
    pub len: usize,
}

impl Text {
    /// A text from its head; `whole_len` is asked only when the head may not be all of it
    /// (it is [`STRING`] units long), so a short string costs the page one question.
    pub fn new(head: String, whole_len: impl FnOnce() -> usize) -> Text {
        let units = utf16_len(&head);
        let len = if units >= STRING { whole_len().max(units) } else { units };
        Text { head, len }
    }
}

impl From<&str> for Text {
    /// A text known whole (what the SDK itself writes; and tests).
    fn from(s: &str) -> Text {
        Text { head: s.to_owned(), len: utf16_len(s) }
    }
}

/// `s`'s length in UTF-16 units (JS's `.length`), counted from its UTF-8 bytes: one unit per
/// char, two for a char of four bytes.
pub fn utf16_len(s: &str) -> usize {
    s.bytes().map(|b| usize::from(b & 0xc0 != 0x80) + usize::from(b >= 0xf0)).sum()
}
