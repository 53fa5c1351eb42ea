// The inspector's JS shim: only what wasm-bindgen cannot express, and nothing it decides.
// A console method takes any number of arguments and runs with a `this`, and a stack is only
// the caller's if taken inside the wrapper; a Rust closure has a fixed arity and never sees
// `this`. And the value walker's questions (what is this value? its text?) are asked here in
// one call each, where JS answers them with `typeof` and `instanceof`; what to do with the
// answers is decided in Rust (tether-sdk-core's inspect::walk and writer).

// Hooks the page. With `withConsole`: each console method named in `levels` (space-separated)
// calls `rec(i, args, stack)` first (`i` its index there; `stack` is `new Error().stack` for
// the methods named in `stacked`), then the original with the same `this` and arguments,
// returning its result; `error` (capture phase: script errors, and elements that failed to
// load) and `unhandledrejection` call `rec(100, event)` and `rec(101, event)`. Always: page
// info, `rec(102, globalThis, navigationTimingEntry)`, now and at `load`.
// `rec` never runs inside itself (whatever it causes — a filter or sink that logs — is not
// recorded); if it throws (the wasm trapped), every hook passes through from then on.
// Returns the function that undoes it all: each original comes back where our wrapper is
// still the one installed; where another tool wrapped ours since, ours stays in its chain,
// passing through.
export function hook(rec, levels, stacked, withConsole) {
  const g = globalThis;
  const c = g.console;
  const undo = [];
  let on = true;
  let busy = false;
  const call = (kind, a, b) => {
    if (on && !busy) {
      busy = true;
      try { rec(kind, a, b); } catch { on = false; } finally { busy = false; }
    }
  };
  const listen = (type, f, capture) => {
    g.addEventListener(type, f, capture);
    undo.push(() => g.removeEventListener(type, f, capture));
  };
  if (withConsole) {
    stacked = stacked.split(" ");
    levels.split(" ").forEach((level, i) => {
      const orig = c && c[level];
      if (typeof orig != "function") return;
      const stack = stacked.includes(level);
      const wrap = function (...args) {
        call(i, args, stack ? new Error().stack : undefined);
        return orig.apply(this, args);
      };
      c[level] = wrap;
      undo.push(() => { if (c[level] === wrap) c[level] = orig; });
    });
    listen("error", (e) => call(100, e), true);
    listen("unhandledrejection", (e) => call(101, e));
  }
  const page = () => call(102, g, g.performance?.getEntriesByType?.("navigation")[0]);
  listen("load", page);
  page();
  return () => { on = false; undo.forEach((u) => u()); };
}

// Runs the page's `filter` on an event's JSON text: what it returns, as JSON text (anything
// else when that is nothing JSON can write), or false if it threw.
export function run(filter, text) {
  try { return JSON.stringify(filter(JSON.parse(text))); } catch { return false; }
}

const tagOf = (v) => Object.prototype.toString.call(v).slice(8, -1);

// What `v` is, as tether-sdk-core's `Kind` numbers it (keep both in step): 0 undefined,
// 1 null, 2 true, 3 false, 4 number, 5 string, 6 bigint, 7 symbol, 8 function, 9 array,
// 10 plain object, 11 instance, 12 Error, 13 DOM node, 14 window or document, 15 Date,
// 16 RegExp, 17 Map, 18 Set, 19 binary. Never throws (a Proxy's trap may): then 10.
export function what(v) {
  const t = typeof v;
  if (t != "object" && t != "function") {
    return t == "string" ? 5 : t == "number" ? 4 : t == "boolean" ? (v ? 2 : 3)
      : t == "undefined" ? 0 : t == "bigint" ? 6 : 7;
  }
  if (t == "function") return 8;
  if (v === null) return 1;
  const g = globalThis;
  try {
    if (Array.isArray(v)) return 9;
    if (v instanceof Error) return 12;
    if (v === g || (g.Window && v instanceof g.Window)) return 14;
    if (g.Node && v instanceof g.Node) return v.nodeType == 9 ? 14 : 13;
    if (v instanceof Date) return 15;
    if (v instanceof RegExp) return 16;
    if (v instanceof Map) return 17;
    if (v instanceof Set) return 18;
    if (v instanceof ArrayBuffer || ArrayBuffer.isView(v) || (g.Blob && v instanceof g.Blob)) return 19;
    const p = Object.getPrototypeOf(v);
    return p && p !== Object.prototype ? 11 : 10;
  } catch {
    return 10;
  }
}

// `v`'s text for its kind `k` (see `Page::text` in tether-sdk-core), cut to `n` UTF-16 units
// before it is copied into wasm. "" if the page threw.
export function text(v, k, n) {
  let s = "";
  try {
    s = k == 8 ? v.name
      : k == 11 ? Object.getPrototypeOf(v).constructor.name
      : k == 13 ? (v.nodeType == 1 ? v.localName + (v.id ? "#" + v.id : "")
        + (typeof v.className == "string" ? v.className.trim().split(/\s+/).map((c) => c && "." + c).join("") : "")
        : v.nodeName)
      : k == 14 ? tagOf(v)
      : k == 19 ? v.type || tagOf(v)
      : k == 15 ? (isNaN(v) ? "Invalid Date" : v.toISOString())
      : k == 7 ? v.toString()
      : "" + v;
  } catch {}
  if (typeof s != "string") s = "";
  return s.length > n ? s.slice(0, n) : s;
}

// `v`'s length (a string's or array's), size (a Map's, Set's or Blob's) or byte length
// (binary); 0 if none, or the page threw.
export function len(v) {
  try {
    const n = v.byteLength ?? v.size ?? v.length;
    return typeof n == "number" ? n : 0;
  } catch {
    return 0;
  }
}

// `Object.keys(v)`, or null if that threw (a Proxy).
export function keys(v) {
  try { return Object.keys(v); } catch { return null; }
}

// The first `n` entries of a Map (`[key, value]`) or values of a Set.
export function items(v, n) {
  const out = [];
  try {
    for (const x of v) {
      if (out.length >= n) break;
      out.push(x);
    }
  } catch {}
  return out;
}
