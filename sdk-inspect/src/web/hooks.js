// The inspector's JS shim: what wasm-bindgen cannot express, and (below) what is far smaller here.
// A console method takes any number of arguments and runs with a `this`, and a stack is only
// the caller's if taken inside the wrapper; a Rust closure has a fixed arity and never sees
// `this`. And the value walker's questions (what is this value? its text?) are asked here in
// one call each, where JS answers them with `typeof` and `instanceof`; what to do with the
// answers is decided in Rust (tether-sdk-core's inspect::walk and writer). The exception: a
// PC's storage and eval commands are checked and carried out here, under the core's caps,
// because that string work measured 2.5 times larger in wasm (see web/command.rs).

// Hooks the page. With `withConsole`: each console method named in `levels` (space-separated)
// calls `rec(i, args, stack)` first (`i` its index there; `stack` is `new Error().stack` for
// the methods named in `stacked`), then the original with the same `this` and arguments,
// returning its result; `error` (capture phase: script errors, and elements that failed to
// load) and `unhandledrejection` call `rec(100, event)` and `rec(101, event)`. Always: page
// info, `rec(102, globalThis, navigationTimingEntry)`, now and at `load`. With `withNet`: the
// page's own network (see hookNet). With `withStorage`: the page's own storage writes (see
// hookStorage).
// `rec` never runs inside itself (whatever it causes — a filter or sink that logs — is not
// recorded); if it throws (the wasm trapped), every hook passes through from then on.
// Returns the function that undoes it all: each original comes back where our wrapper is
// still the one installed; where another tool wrapped ours since, ours stays in its chain,
// passing through.
export function hook(rec, levels, stacked, withConsole, withNet, withStorage) {
  const g = globalThis;
  const c = g.console;
  const undo = [];
  let on = true;
  let busy = false;
  // rec's answer (0 when it did not run).
  const call = (kind, a, b) => {
    if (on && !busy) {
      busy = true;
      try { return rec(kind, a, b); } catch { on = false; } finally { busy = false; }
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
  if (withNet) hookNet(g, call, undo);
  if (withStorage) undo.push(hookStorage(call));
  const page = () => call(102, g, g.performance?.getEntriesByType?.("navigation")[0]);
  listen("load", page);
  page();
  return () => { on = false; undo.forEach((u) => u()); };
}

// The page's own network: fetch, XMLHttpRequest, navigator.sendBeacon, WebSocket and
// EventSource, each still the page's own doing what it did (the original called with the same
// `this` and arguments, its result returned as is — fetch's settles as the original's does,
// with the same Response or error; subclasses keep `instanceof` and statics). A request or
// socket is reported at its start as `info` = `[id, type, method, url, headers, body]` (type: 0 fetch, 1 xhr, 2 beacon, 3 ws, 4 sse, as
// tether-sdk-core's inspect::net numbers them), `call(110, info, queued)`; only if rec answers
// it (not the SDK's own) is it followed: fetch's response head `call(111, info, head)`, whose
// answer is how many bytes of the body to read from a clone (then `call(112, info, head +
// [text, cut])`); XHR's end at `loadend` `call(112, …)` (one per request, never one per
// readystatechange); a failure `call(113, info, [message, ms])`; a socket's open, messages
// (both ways; an EventSource's named events once the page listens to them), close and error
// `call(114, info, [phase, data, dir or event])`. Our side chains catch their own errors,
// so they never raise `unhandledrejection` or an error on the page; a fetch failure the page
// leaves unhandled still raises its own, as it would without us.
const READ_MS = 5000;

function hookNet(g, call, undo) {
  let seq = 0;
  // An XHR's [method, url, headers] from open() to send(); a socket's info.
  const M = new WeakMap();
  const noop = () => {};
  const since = (t0) => Date.now() - t0;
  const abs = href;
  const pairs = (h) => { try { return [...new g.Headers(h)]; } catch { return []; } };
  const start = (type, method, url, headers, body, queued) => {
    const info = [++seq, type, method, abs(url), headers, body instanceof g.URLSearchParams ? "" + body : body];
    return call(110, info, queued) && info;
  };
  // o[k] = wrap(o[k]), named as the original (`fetch.name`, `WebSocket.name`: minifiers drop
  // a class's own name), until undone; undone only while it is still ours.
  const swap = (o, k, wrap) => {
    const orig = o?.[k];
    if (typeof orig != "function") return;
    const ours = (o[k] = Object.defineProperty(wrap(orig), "name", { value: orig.name }));
    undo.push(() => { if (o[k] === ours) o[k] = orig; });
  };
  // The first `max` bytes of a response's body, from a clone made now, then cancelled:
  // [text, cut]. Never rejects.
  // A body still coming after READ_MS (a stream of text, a long poll) is cut there: while our
  // copy reads, the page cancelling its own would not close the connection.
  const read = async (res, max) => {
    const d = new TextDecoder();
    let text = "", n = 0, late = false, timer;
    try {
      const r = res.clone().body?.getReader();
      timer = r && setTimeout(() => { late = true; r.cancel().catch(noop); }, READ_MS);
      for (let c; r && !(c = await r.read()).done;) {
        text += d.decode(c.value, { stream: true });
        if ((n += c.value.length) > max) {
          r.cancel().catch(noop);
          return [text, true];
        }
      }
      return late ? [text, true] : [text + d.decode(), false];
    } catch {
      return [text, true];
    } finally {
      clearTimeout(timer);
    }
  };
  // fetch: the page gets a promise that settles as the original does, with the same Response
  // or the same error, once we have looked (the body is cloned before the page can read it).
  // Not the original promise itself: watching that one would mark it handled, and a failed
  // fetch the page never handles would no longer raise `unhandledrejection` (error monitors,
  // and our own `rejection` events, listen for it).
  swap(g, "fetch", (F) => function (input, init) {
    const t0 = Date.now();
    const p = F.apply(this, arguments);
    let info;
    try {
      const req = input instanceof g.Request ? input : undefined;
      info = start(0, init?.method ?? req?.method ?? "GET", req ? req.url : input,
        pairs(init?.headers ?? req?.headers), init?.body);
    } catch {}
    return !info ? p : p.then((res) => {
      try {
        const head = [res.status, res.statusText, pairs(res.headers), since(t0)];
        const max = call(111, info, head);
        if (max) read(res, max).then((body) => call(112, info, head.concat(body))).catch(noop);
      } catch {}
      return res;
    }, (e) => {
      try { call(113, info, [String(e?.message ?? e), since(t0)]); } catch {}
      throw e;
    });
  });
  const X = g.XMLHttpRequest?.prototype;
  swap(X, "open", (f) => function (method, url) {
    const r = f.apply(this, arguments);
    M.set(this, [method, abs(url), []]);
    return r;
  });
  swap(X, "setRequestHeader", (f) => function (k, v) {
    const r = f.apply(this, arguments);
    M.get(this)?.[2].push([String(k), String(v)]);
    return r;
  });
  const ENDS = ["error", "abort", "timeout", "loadend"];
  swap(X, "send", (f) => function (body) {
    const x = this, o = M.get(x), t0 = Date.now();
    M.delete(x);
    const info = o && start(1, o[0], o[1], o[2], body);
    if (info) {
      let why;
      const end = (e) => {
        if (e.type != "loadend") return (why = e.type);
        ENDS.forEach((t) => x.removeEventListener(t, end));
        try {
          call(why ? 113 : 112, info, why ? [why, since(t0)] : [x.status, x.statusText,
            x.getAllResponseHeaders().split("\r\n").filter(Boolean).map((l) => {
              const i = l.indexOf(":");
              return [l.slice(0, i), l.slice(i + 1).trim()];
            }), since(t0), x.response, false]);
        } catch {}
      };
      ENDS.forEach((t) => x.addEventListener(t, end));
    }
    return f.apply(this, arguments);
  });
  swap(g.navigator, "sendBeacon", (f) => function (url, data) {
    const queued = f.apply(this, arguments);
    start(2, "POST", url, [], data, queued);
    return queued;
  });
  // A socket's events as `call(114, …)`: [phase, data (a close's code), a message's direction
  // (true: received) or an EventSource event's name (a close's reason)].
  const PHASE = { __proto__: null, open: 2, message: 3, close: 4, error: 5 };
  // An event with `data` is a message whatever its name: a server may name one "close",
  // "open" or "error" (an EventSource's named events), and it is not the socket's phase.
  const follow = (s, info, types, recv) => types.forEach((t) => s.addEventListener(t,
    (e) => call(114, info, [e.data !== undefined ? 3 : PHASE[t] ?? 3, e.code ?? e.data, e.reason ?? recv ?? t])));
  swap(g, "WebSocket", (W) => class extends W {
    constructor() {
      super(...arguments);
      const info = start(3, undefined, this.url);
      if (info) {
        M.set(this, info);
        follow(this, info, ["open", "message", "close", "error"], true);
      }
    }
    send(data) {
      const r = super.send(...arguments);
      const info = M.get(this);
      if (info) call(114, info, [3, data, false]);
      return r;
    }
  });
  const OWN = ["open", "message", "error"];
  swap(g, "EventSource", (E) => class extends E {
    constructor() {
      super(...arguments);
      const info = start(4, undefined, this.url);
      if (info) {
        info.s = new Set(OWN);
        M.set(this, info);
        follow(this, info, OWN);
      }
    }
    // A named event is seen once the page listens to it.
    addEventListener(type) {
      const info = M.get(this);
      if (info && !info.s.has(type)) {
        info.s.add(type);
        follow(this, info, [type]);
      }
      return super.addEventListener(...arguments);
    }
    close() {
      const r = super.close(...arguments);
      const info = M.get(this);
      M.delete(this);
      if (info) call(114, info, [4]);
      return r;
    }
  });
}

// The page's own storage writes: Storage.prototype's setItem, removeItem and clear call
// `call(120, area, [op, key?, value?])` (strings; `area` "local" or "session") once the
// original has done its work; a write of document.cookie calls `call(120, "cookie", ["set",
// name, rest])` (the text split at its first "="). Writes by property (`localStorage.k = v`)
// are not seen. Returns what takes the hooks out: each original back where ours is still the
// one installed, else ours stays in the other tool's chain, passing through (`call` is off
// by then).
export function hookStorage(call) {
  const g = globalThis;
  const undo = [];
  const S = g.Storage?.prototype;
  ["set", "remove", "clear"].forEach((op) => {
    const m = op == "clear" ? op : op + "Item";
    const orig = S?.[m];
    if (typeof orig != "function") return;
    const wrap = function (...a) {
      const r = orig.apply(this, a);
      let area = "local";
      try { if (this === g.sessionStorage) area = "session"; } catch {}
      call(120, area, [op, ...a.slice(0, 2).map(String)]);
      return r;
    };
    S[m] = wrap;
    undo.push(() => { if (S[m] === wrap) S[m] = orig; });
  });
  // document.cookie: an accessor of Document.prototype.
  const D = g.Document?.prototype;
  const d = D && Object.getOwnPropertyDescriptor(D, "cookie");
  if (d?.set) {
    const set = function (v) { d.set.call(this, v); call(120, "cookie", ["set", ...nameValue(String(v))]); };
    Object.defineProperty(D, "cookie", { ...d, set });
    undo.push(() => {
      if (Object.getOwnPropertyDescriptor(D, "cookie")?.set === set) Object.defineProperty(D, "cookie", d);
    });
  }
  return () => undo.forEach((u) => u());
}

// --- a PC's storage and eval commands (see sdk-inspect's web/command.rs) ---

// tether-sdk-core's storage::OWN, inspect::STRING, storage::TOTAL and storage::COOKIE (a
// native test of sdk-inspect checks that they are the same).
const OWN = "tether.";
const MAX = 8192;
const TOTAL = 262144;
const COOKIE = 4096;

const fail = (code, message) => JSON.stringify({ error: { code, message } });

// Whether a PC's storage or eval request `m` may go ahead: "read" (a read: no allow needed),
// "ask" (an edit or an eval: if the page's `allow` says yes), else the reply that refuses it.
// `storage`: whether the page captures storage; `allow`: whether it has an `allow` hook. In
// this order: a malformed request is bad_frame; a storage request to a page that does not
// capture storage inspect_off; an edit of one of the SDK's own keys not_allowed (the page is
// not even asked); without an `allow`, an edit or an eval is not_allowed.
export function check(m, storage, allow) {
  const bad = fail("bad_frame", "not a storage or eval request (docs/protocol.md)");
  if (!m || typeof m != "object" || Array.isArray(m)) return bad;
  const { type, op, area, key, value, code } = m;
  // Each field a string or absent (null is absent).
  if ([op, area, key, value, code].some((v) => v != null && typeof v != "string")) return bad;
  const eval_ = type == "eval";
  if (eval_ ? code == null : !["read", "set", "remove", "clear", null, undefined].includes(op)) return bad;
  if (!eval_) {
    if (!storage) return fail("inspect_off", "this page does not inspect storage");
    if (op == null || op == "read") return "read";
    if (!["local", "session", "cookie"].includes(area) || (op != "clear" && key == null) || (op == "set" && value == null)) return bad;
    // A cookie is a name (visible ASCII but ; and =, or beyond ASCII: the class reads
    // "! to :", "<", "> to ~") and a value without ; or control characters: nothing that would
    // add attributes of its own (a domain, an expiry).
    if (area == "cookie" && op != "clear"
      && (!/^[!-:<>-~\x80-\uffff]+$/.test(key) || /[;\x00-\x1f\x7f]/.test(value ?? "") || key.length + (value ?? "").length > COOKIE)) {
      return fail("bad_frame", "a cookie is a name and a value, no ; (4 KiB)");
    }
    if (key?.startsWith(OWN)) return fail("not_allowed", "tether.* keys are the SDK's own");
  }
  return allow ? "ask" : fail("not_allowed", `the page has no allow: ${eval_ ? "eval is" : "storage edits are"} off`);
}

// Carries out a PC's `storage` or `eval` command (`kind`, its msg as JSON `text`) if `check`
// lets it, and the page's `allow` says true or a Promise of true to it ({type: "eval", code}
// or {type: "storage", op, area, key, value}, a copy); a throw, a rejection or anything else
// is a no. A storage edit edits, then answers as a read does (what the page's storage threw:
// `value(0, thrown)`); an eval first evaluates "" indirectly, which shows whether the page's
// CSP forbids eval, then the code, as global code, and awaits what it returns. `value(1, result)` and `value(0, thrown)` are
// tether-sdk-core's reply bodies. Returns the Promise of the reply's JSON text.
export function command(kind, text, allow, storage, value) {
  let m;
  try { m = JSON.parse(text); m.type = kind; } catch {}
  const now = check(m, storage, allow);
  if (now != "ask") return Promise.resolve(now == "read" ? read() : now);
  const { op, area, key, value: v, code } = m;
  const req = kind == "eval" ? { type: kind, code } : { type: kind, op, area, key, value: v };
  // The PC has been told `timeout` by then (the SDK answers at `timeoutMs`, 60 s by default):
  // an allow that says yes later must not run what the PC believes failed (and may send again).
  const until = Date.now() + (m.timeoutMs > 0 ? m.timeoutMs : 60000);
  return new Promise((r) => r(allow(req)))
    .then((yes) => yes === true, () => false)
    .then((yes) => {
      if (!yes) return fail("not_allowed", "the page's allow said no");
      if (Date.now() >= until) return fail("not_allowed", "the page's allow answered after the request timed out");
      if (kind != "eval") {
        try { edit(op, area, key, v); } catch (x) { return value(0, x); }
        return read();
      }
      const e = globalThis.eval;
      try { e(""); } catch { return fail("eval_blocked", "the page's CSP forbids eval"); }
      return new Promise((r) => r(e(code))).then((v) => value(1, v), (x) => value(0, x));
    });
}

// The cookies in document.cookie's text `t`, as [name, value] (not URL-decoded); one without
// "=" is a value without a name, as browsers read it.
export const cookies = (t) => t.split(";").map((c) => c.trimStart()).filter((c) => c).map(nameValue);

// A cookie's text split at its first "=": [name, the rest]; ["", text] without one.
const nameValue = (c) => { const i = c.indexOf("="); return i < 0 ? ["", c] : [c.slice(0, i), c.slice(i + 1)]; };

const storageOf = (area) => globalThis[area + "Storage"];

// What the page's storage `area` ("local", "session" or "cookie") holds, as [key, value] in its
// order. Throws where the page may not use it (a sandboxed frame, storage turned off).
function pairs(area) {
  if (area == "cookie") return cookies(globalThis.document.cookie);
  const s = storageOf(area);
  const out = [];
  for (let i = 0; i < s.length; i++) {
    const k = s.key(i);
    out.push([k, s.getItem(k)]);
  }
  return out;
}

// A storage read's reply, {result: {cookie, session, local, cut?}}: each area's [[key, value],
// …], or null where the page may not use it; never the SDK's own keys (starting OWN); a key
// or value longer than MAX UTF-16 units as the cut-string Value {$: "str", head, len}. The
// small areas first, so that a large localStorage cannot crowd the cookies out: a pair that
// would take the reply's JSON past TOTAL units is left out, and the rest of its area, and the
// reply says cut: true.
export function read() {
  const result = {};
  let size = 64;
  let cut;
  const val = (s) => (s.length > MAX ? { $: "str", head: s.slice(0, MAX), len: s.length } : s);
  for (const area of ["cookie", "session", "local"]) {
    let list = null;
    try {
      const all = pairs(area);
      list = [];
      for (const [k, v] of all) {
        if (k.startsWith(OWN)) continue;
        const p = [val(k), val(v)];
        if ((size += JSON.stringify(p).length + 1) > TOTAL) { cut = true; break; }
        list.push(p);
      }
    } catch {}
    result[area] = list;
  }
  if (cut) result.cut = true;
  return JSON.stringify({ result });
}

// Carries out a storage edit the SDK checked and the page allowed: `op` "set", "remove" or
// "clear" on `area`. A cookie is set as "key=value; path=/" (and "; secure" on https; the path most sites use: one of
// another path gets a sibling, which the reply shows) and removed by expiring its name for the
// path / and for the page's own (one of another path or domain survives, and the reply shows
// it). "clear" removes every key (every cookie) but the SDK's own. Throws what the page's
// storage threw (a full quota).
export function edit(op, area, key, value) {
  const d = globalThis.document;
  const some = (names) => names.filter(([n]) => !n.startsWith(OWN));
  if (area == "cookie") {
    // On https, `; secure`: a `__Secure-` or `__Host-` cookie is set or removed only with it.
    const secure = globalThis.location?.protocol == "https:" ? "; secure" : "";
    if (op == "set") d.cookie = key + "=" + value + "; path=/" + secure;
    else for (const [n] of some(op == "remove" ? [[key]] : cookies(d.cookie))) {
      for (const path of ["; path=/", ""]) d.cookie = n + "=; max-age=0" + path + secure;
    }
  } else if (op == "set") storageOf(area).setItem(key, value);
  else for (const [k] of some(op == "remove" ? [[key]] : pairs(area))) storageOf(area).removeItem(k);
}

// `u` as the browser writes it (absolute, the host in lower case, no default port), against
// the page's base; `String(u)` if it is no URL.
export function href(u) {
  try { return new URL(u, globalThis.document?.baseURI).href; } catch { return String(u); }
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
