//! The value walker: how a page's value (a console argument, a rejection's reason) is taken
//! apart and written, asking the page only plain questions ([`Page`]). The inspector's web
//! layer answers them with JS; the tests here with a model of JS values.
//!
//! Snapshot at log time, nothing kept alive: arrays, objects, Maps and Sets are walked under
//! the [`Writer`]'s caps; a value met again among its own ancestors is `{"$":"cycle"}` (the
//! ancestors are at most `DEPTH`, so that costs at most `DEPTH` identity checks); a property
//! whose getter throws is `{"$":"threw"}`; DOM nodes, windows and documents are described,
//! never walked; an Error is its name, message and stack.

use super::writer::{Kind, Text, Writer};
use super::{ITEMS, KEY, KEYS, STRING};

/// A getter (or a Proxy's trap) threw while the walker read a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threw;

/// The questions the walker asks about the page's values. None of them may throw into the
/// walker: the web layer catches and answers as the doc says.
pub trait Page {
    /// A value of the page (a `JsValue`).
    type V: Clone;
    /// What `v` is.
    fn what(&self, v: &Self::V) -> Kind;
    /// `v`'s text for its `kind`, cut to `max` UTF-16 units *before* it is copied: a string
    /// itself; a number's, BigInt's or RegExp's `String(v)`; a symbol's `Symbol(x)`; a
    /// function's name; an instance's class name; a node's description (`div#app.main`); a
    /// window's or document's class; a date's ISO text; binary data's MIME type or class.
    /// `""` when the page threw.
    fn text(&self, v: &Self::V, kind: Kind, max: usize) -> String;
    /// `v`'s length: a string's in UTF-16 units, an array's, a Map's or Set's size, binary
    /// data's bytes. 0 when it has none or the page threw.
    fn len(&self, v: &Self::V) -> usize;
    /// `v`'s own enumerable string keys as an array value (`Object.keys`); `None` if that threw.
    fn keys(&self, v: &Self::V) -> Option<Self::V>;
    /// The first `max` entries of a Map (`[key, value]` arrays) or values of a Set, as an array value.
    fn items(&self, v: &Self::V, max: usize) -> Self::V;
    /// `v[key]`; `Err` when a getter (or a Proxy) threw.
    fn get(&self, v: &Self::V, key: &Self::V) -> Result<Self::V, Threw>;
    /// `v[i]`; `Err` when a getter threw.
    fn index(&self, v: &Self::V, i: usize) -> Result<Self::V, Threw>;
    /// `v[name]`; `Err` when a getter threw.
    fn prop(&self, v: &Self::V, name: &str) -> Result<Self::V, Threw>;
    /// A number's value.
    fn number(&self, v: &Self::V) -> f64;
    /// JS's text of a number that is not a whole one (`String(x)`).
    fn num_text(&self, x: f64) -> String;
    /// Whether `a` and `b` are the same object.
    fn same(&self, a: &Self::V, b: &Self::V) -> bool;
}

/// Writes the page's value `v` (see the module's doc).
pub fn value<P: Page>(w: &mut Writer, page: &P, v: &P::V) {
    Walk { page, ancestors: Vec::new() }.value(w, v);
}

/// Writes items `from..len` of the page's array `list` as the items of the event's list being
/// written (a console call's arguments), each walked as [`value`] walks.
pub fn list<P: Page>(w: &mut Writer, page: &P, list: &P::V, from: usize, len: usize) {
    let mut walk = Walk { page, ancestors: Vec::new() };
    let count = len.saturating_sub(from);
    for i in 0..count {
        if !w.item(i, count) {
            break;
        }
        match page.index(list, from + i) {
            Ok(x) => walk.value(w, &x),
            Err(Threw) => w.mark("threw"),
        }
    }
}

/// Whether the page's value is truthy, as JS's `if (v)` would say.
pub fn truthy<P: Page>(page: &P, v: &P::V) -> bool {
    match page.what(v) {
        Kind::Undefined | Kind::Null | Kind::False => false,
        Kind::Number => {
            let x = page.number(v);
            !x.is_nan() && x != 0.0
        }
        Kind::String => page.len(v) > 0,
        Kind::BigInt => page.text(v, Kind::BigInt, 2) != "0",
        _ => true,
    }
}

/// A string of the page, cut before it is copied (see [`Text`]).
pub fn string<P: Page>(page: &P, v: &P::V) -> Text {
    Text::new(page.text(v, Kind::String, STRING), || page.len(v))
}

/// A property of the page's value that should be a string, if it is one.
pub fn string_prop<P: Page>(page: &P, v: &P::V, name: &str) -> Option<Text> {
    let x = page.prop(v, name).ok()?;
    (page.what(&x) == Kind::String).then(|| string(page, &x))
}

struct Walk<'a, P: Page> {
    page: &'a P,
    /// The arrays, objects, Maps and Sets being walked, outermost first.
    ancestors: Vec<P::V>,
}

impl<P: Page> Walk<'_, P> {
    fn value(&mut self, w: &mut Writer, v: &P::V) {
        let p = self.page;
        let kind = p.what(v);
        match kind {
            Kind::Undefined => w.mark("undefined"),
            Kind::Null => w.null(),
            Kind::True | Kind::False => w.bool(kind == Kind::True),
            Kind::Number => w.number(p.number(v), &|x| p.num_text(x)),
            Kind::String => w.string(&string(p, v)),
            Kind::Error => {
                let [name, message, stack] = ["name", "message", "stack"].map(|f| string_prop(p, v, f));
                w.error(name.as_ref(), message.as_ref(), stack.as_ref());
            }
            Kind::Array | Kind::Object | Kind::Instance | Kind::Map | Kind::Set => {
                if self.ancestors.iter().any(|a| p.same(a, v)) {
                    return w.mark("cycle");
                }
                self.ancestors.push(v.clone());
                match kind {
                    Kind::Array => self.array(w, v, p.len(v)),
                    Kind::Map | Kind::Set => {
                        let size = p.len(v);
                        w.collection(kind, size as u64);
                        self.array(w, &p.items(v, ITEMS.min(size)), size);
                        w.end();
                    }
                    _ => self.object(w, v, kind),
                }
                self.ancestors.pop();
            }
            _ => {
                let len = if kind == Kind::Bin { p.len(v) as u64 } else { 0 };
                w.described(kind, &p.text(v, kind, STRING), len);
            }
        }
    }

    /// The items of `list` (an array, or a Map's or Set's first entries), `len` in all.
    fn array(&mut self, w: &mut Writer, list: &P::V, len: usize) {
        if !w.open_arr(len) {
            return;
        }
        for i in 0..len {
            if !w.item(i, len) {
                break;
            }
            match self.page.index(list, i) {
                Ok(x) => self.value(w, &x),
                Err(Threw) => w.mark("threw"),
            }
        }
        w.close_arr();
    }

    /// A plain object, or an instance of some class (`{"$":"obj","class","v"}`); a plain one
    /// with its own key `"$"` is wrapped too, so that it cannot pass for a tagged value.
    fn object(&mut self, w: &mut Writer, v: &P::V, kind: Kind) {
        let p = self.page;
        let Some(keys) = p.keys(v) else {
            return w.mark("threw");
        };
        let mut n = p.len(&keys);
        // At DEPTH only the count is written: no key is read.
        let mut names: Vec<(P::V, Text)> = Vec::new();
        if !w.at_depth() {
            for i in 0..n.min(KEYS) {
                let Ok(k) = p.index(&keys, i) else {
                    n = i; // The keys' array itself misbehaved: what was read is all.
                    break;
                };
                let name = Text::new(p.text(&k, Kind::String, KEY), || KEY);
                names.push((k, name));
            }
        }
        let wrap = kind == Kind::Instance || names.iter().any(|(_, t)| t.head == "$");
        if wrap {
            let class = if kind == Kind::Instance { p.text(v, kind, STRING) } else { "Object".into() };
            w.instance(&class);
        }
        if w.open_obj(n) {
            for i in 0..n {
                // Past the keys read (KEYS), the Writer writes `"$more"` and says stop.
                let name = names.get(i).map_or("", |(_, t)| t.head.as_str());
                if !w.key(i, n, name) {
                    break;
                }
                match p.get(v, &names[i].0) {
                    Ok(x) => self.value(w, &x),
                    Err(Threw) => w.mark("threw"),
                }
            }
            w.close_obj();
        }
        if wrap {
            w.end();
        }
    }
}

#[cfg(test)]
#[path = "walk_tests.rs"]
mod tests;
