//! Which names a device may look up on the page: the native bridge's global and the JS-APIs a
//! `call` runs. The SDK's bridge applies it to every `call` and to `connectDevice`'s `bridge`;
//! the relay to its `--bridge-names`.
//!
//! A `call` names a function chosen by the PC, and the bridge is a JS object: without a check,
//! `call("constructor")`, `call("__proto__")` or `call("eval")` on the wrong object reaches
//! JavaScript's own machinery instead of the app's JS-API. So a name must be a plain
//! identifier (no dotted path), and never one of the names below; the bridge then also
//! requires the function to be the bridge object's *own* property.

/// Names that are never a JS-API or a bridge: JavaScript's own machinery (what every object
/// inherits from `Object.prototype`, code from text) and the globals that are the page itself.
const NEVER: [&str; 22] = [
    "eval",
    "Function",
    "constructor",
    "prototype",
    "__proto__",
    "toString",
    "toLocaleString",
    "valueOf",
    "hasOwnProperty",
    "isPrototypeOf",
    "propertyIsEnumerable",
    "__defineGetter__",
    "__defineSetter__",
    "__lookupGetter__",
    "__lookupSetter__",
    "window",
    "self",
    "globalThis",
    "top",
    "parent",
    "frames",
    "document",
];

/// Longest name taken (JS-API names are short words).
const MAX_LEN: usize = 64;

/// `name` is an ASCII JS identifier (`[A-Za-z_$][A-Za-z0-9_$]*`, at most 64 characters) and
/// not one of JavaScript's own names: fit to be a native bridge's global or one of its JS-APIs.
pub fn plain_name(name: &str) -> bool {
    let b = name.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$';
    !b.is_empty()
        && b.len() <= MAX_LEN
        && !b[0].is_ascii_digit()
        && b.iter().all(word)
        && !NEVER.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::plain_name;

    #[test]
    fn app_js_api_names_pass() {
        for ok in ["getAppInfo", "login", "toast", "TencentNews", "_private", "$bridge", "share2", "a"] {
            assert!(plain_name(ok), "{ok}");
        }
    }

    #[test]
    fn javascript_machinery_paths_and_odd_text_are_refused() {
        for bad in [
            "",
            "eval",
            "Function",
            "constructor",
            "__proto__",
            "prototype",
            "toString",
            "valueOf",
            "hasOwnProperty",
            "__defineGetter__",
            "window",
            "globalThis",
            "self",
            "document",
            "a.b",
            "window.eval",
            "constructor.constructor",
            "a[0]",
            "a b",
            "2fa",
            "getAppInfo()",
            "get-app-info",
            "café",
            "x\u{0}",
        ] {
            assert!(!plain_name(bad), "{bad:?} must be refused");
        }
        assert!(plain_name(&"a".repeat(64)));
        assert!(!plain_name(&"a".repeat(65)));
    }
}
