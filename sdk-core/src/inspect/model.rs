//! A model of JS values for the native tests: what the inspector's web layer answers with
//! JS, answered here from plain Rust data.

use super::walk::{Page, Threw};
use super::writer::Kind;
use std::cell::RefCell;
use std::rc::Rc;

/// A JS value, as far as the walker can tell.
pub enum M {
    Undef,
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    /// A value described by one text (BigInt, symbol, function, node, window, date, regexp).
    Text(Kind, String),
    Bin(String, usize),
    Arr(RefCell<Vec<V>>),
    Obj(Option<String>, RefCell<Vec<(String, P)>>),
    /// A DOM element: its description, and the properties read from it.
    NodeWith(String, Vec<(String, V)>),
    /// An object whose keys cannot be listed (a Proxy whose `ownKeys` throws).
    Hostile,
    Err(String, String, Option<String>),
    Map(Vec<(V, V)>),
    Set(Vec<V>),
}

/// A property: a value or a getter that throws.
pub enum P {
    V(V),
    Throws,
}

pub type V = Rc<M>;

pub fn v(m: M) -> V {
    Rc::new(m)
}
pub fn s(t: &str) -> V {
    v(M::Str(t.into()))
}
pub fn n(x: f64) -> V {
    v(M::Num(x))
}
pub fn arr(items: Vec<V>) -> V {
    v(M::Arr(RefCell::new(items)))
}
pub fn obj(props: Vec<(&str, V)>) -> V {
    v(M::Obj(None, RefCell::new(props.into_iter().map(|(k, x)| (k.to_owned(), P::V(x))).collect())))
}

/// JS's `slice(0, max)` of a string, then what crossing into wasm makes of a split pair.
pub fn js_slice(t: &str, max: usize) -> String {
    let units: Vec<u16> = t.encode_utf16().take(max).collect();
    String::from_utf16_lossy(&units)
}

pub struct Model;

impl Page for Model {
    type V = V;

    fn what(&self, x: &V) -> Kind {
        match &**x {
            M::Undef => Kind::Undefined,
            M::Null => Kind::Null,
            M::Bool(true) => Kind::True,
            M::Bool(false) => Kind::False,
            M::Num(_) => Kind::Number,
            M::Str(_) => Kind::String,
            M::Text(k, _) => *k,
            M::NodeWith(..) => Kind::Node,
            M::Bin(..) => Kind::Bin,
            M::Arr(_) => Kind::Array,
            M::Obj(Some(_), _) => Kind::Instance,
            M::Obj(None, _) | M::Hostile => Kind::Object,
            M::Err(..) => Kind::Error,
            M::Map(_) => Kind::Map,
            M::Set(_) => Kind::Set,
        }
    }

    fn text(&self, x: &V, _kind: Kind, max: usize) -> String {
        let t = match &**x {
            M::Str(t) | M::Text(_, t) | M::Bin(t, _) | M::Obj(Some(t), _) | M::NodeWith(t, _) => t.clone(),
            M::Num(x) => x.to_string(),
            _ => String::new(),
        };
        js_slice(&t, max)
    }

    fn len(&self, x: &V) -> usize {
        match &**x {
            M::Str(t) => t.encode_utf16().count(),
            M::Arr(items) => items.borrow().len(),
            M::Map(e) => e.len(),
            M::Set(e) => e.len(),
            M::Bin(_, len) => *len,
            _ => 0,
        }
    }

    fn keys(&self, x: &V) -> Option<V> {
        match &**x {
            M::Obj(_, props) => Some(arr(props.borrow().iter().map(|(k, _)| s(k)).collect())),
            M::Hostile => None,
            _ => Some(arr(vec![])),
        }
    }

    fn items(&self, x: &V, max: usize) -> V {
        match &**x {
            M::Map(e) => arr(e.iter().take(max).map(|(k, x)| arr(vec![k.clone(), x.clone()])).collect()),
            M::Set(e) => arr(e.iter().take(max).cloned().collect()),
            _ => arr(vec![]),
        }
    }

    fn get(&self, x: &V, key: &V) -> Result<V, Threw> {
        let M::Str(key) = &**key else { return Ok(v(M::Undef)) };
        let M::Obj(_, props) = &**x else { return Ok(v(M::Undef)) };
        match props.borrow().iter().find(|(k, _)| k == key) {
            Some((_, P::V(x))) => Ok(x.clone()),
            Some((_, P::Throws)) => Err(Threw),
            None => Ok(v(M::Undef)),
        }
    }

    fn index(&self, x: &V, i: usize) -> Result<V, Threw> {
        match &**x {
            M::Arr(items) => Ok(items.borrow().get(i).cloned().unwrap_or_else(|| v(M::Undef))),
            _ => Ok(v(M::Undef)),
        }
    }

    fn prop(&self, x: &V, name: &str) -> Result<V, Threw> {
        match &**x {
            M::Obj(..) => return self.get(x, &s(name)),
            M::NodeWith(_, props) => {
                return Ok(props
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or_else(|| v(M::Undef), |(_, x)| x.clone()));
            }
            _ => {}
        }
        let M::Err(ename, message, stack) = &**x else { return Ok(v(M::Undef)) };
        Ok(match name {
            "name" => s(ename),
            "message" => s(message),
            "stack" => stack.as_deref().map_or_else(|| v(M::Undef), s),
            _ => v(M::Undef),
        })
    }

    fn number(&self, x: &V) -> f64 {
        match &**x {
            M::Num(x) => *x,
            _ => f64::NAN,
        }
    }

    fn num_text(&self, x: f64) -> String {
        x.to_string()
    }

    fn same(&self, a: &V, b: &V) -> bool {
        Rc::ptr_eq(a, b)
    }
}
