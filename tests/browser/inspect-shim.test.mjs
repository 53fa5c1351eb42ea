// The inspector's shim in plain node (#18, increment 8): how a PC's `storage` and `eval`
// commands are checked, read, edited and run, against stand-ins for localStorage,
// sessionStorage and document.cookie. (The shim does this, not the wasm: see sdk-inspect's
// web/command.rs; storage.test.mjs runs the same in Chromium, end to end.)
import { test, beforeEach } from "node:test";
import assert from "node:assert/strict";
import { check, command, cookies, edit, read } from "../../sdk-inspect/src/web/hooks.js";

/** A Storage stand-in, in insertion order; `full` makes setItem throw as a full quota does. */
class FakeStorage {
  constructor(entries = []) { this.m = new Map(entries); this.full = false; }
  get length() { return this.m.size; }
  key(i) { return [...this.m.keys()][i] ?? null; }
  getItem(k) { return this.m.has(k) ? this.m.get(k) : null; }
  setItem(k, v) {
    if (this.full) throw Object.assign(new Error("The quota has been exceeded."), { name: "QuotaExceededError" });
    this.m.set(String(k), String(v));
  }
  removeItem(k) { this.m.delete(String(k)); }
}

/** A document whose cookie jar keeps name → value and records every text written. */
function fakeDocument(jar = []) {
  const cookies = new Map(jar);
  const written = [];
  return {
    written,
    cookies,
    get cookie() { return [...cookies].map(([k, v]) => (k ? `${k}=${v}` : v)).join("; "); },
    set cookie(text) {
      written.push(text);
      const [pair, ...attrs] = text.split(";");
      const i = pair.indexOf("=");
      const [k, v] = i < 0 ? ["", pair] : [pair.slice(0, i), pair.slice(i + 1)];
      if (attrs.some((a) => a.trim() === "max-age=0")) cookies.delete(k);
      else cookies.set(k, v);
    },
  };
}

let local, session, doc;
beforeEach(() => {
  local = new FakeStorage([["theme", "dark"], ["tether.secret.room", "the-pc-secret"], ["lang", "en"]]);
  session = new FakeStorage([["step", "2"]]);
  doc = fakeDocument([["uid", "42"], ["tether.x", "hidden"]]);
  Object.assign(globalThis, { localStorage: local, sessionStorage: session, document: doc });
});

const code = (reply) => JSON.parse(reply).error?.code;
const message = (reply) => JSON.parse(reply).error?.message;

test("check: malformed requests are bad_frame, in every shape", () => {
  for (const m of [undefined, null, 5, "x", [], [1],
    { type: "eval" }, { type: "eval", code: 1 },
    { type: "storage", op: "drop" }, { type: "storage", op: 1 }, { type: "storage", area: [] },
    { type: "storage", op: "set", key: "k", value: "v" },
    { type: "storage", op: "set", area: "indexedDB", key: "k", value: "v" },
    { type: "storage", op: "set", area: "local", key: "k" },
    { type: "storage", op: "set", area: "local", key: "k", value: 2 },
    { type: "storage", op: "remove", area: "local" }]) {
    assert.equal(code(check(m, true, true)), "bad_frame", JSON.stringify(m));
  }
  assert.equal(message(check([], true, true)), "not a storage or eval request (docs/protocol.md)");
});

test("check: a read needs no allow, only storage capture; edits and eval need allow", () => {
  for (const m of [{ type: "storage" }, { type: "storage", op: "read" }, { type: "storage", op: null, area: "cookie" }]) {
    assert.equal(check(m, true, false), "read", JSON.stringify(m));
  }
  const off = check({ type: "storage", op: "set", area: "local", key: "k", value: "v" }, false, true);
  assert.deepEqual(JSON.parse(off), { error: { code: "inspect_off", message: "this page does not inspect storage" } });
  assert.equal(code(check({ type: "storage" }, false, true)), "inspect_off");
  // Eval does not depend on the storage part.
  assert.equal(check({ type: "eval", code: "1" }, false, true), "ask");
  assert.equal(check({ type: "storage", op: "clear", area: "session" }, true, true), "ask");
  assert.deepEqual(JSON.parse(check({ type: "eval", code: "1" }, true, false)),
    { error: { code: "not_allowed", message: "the page has no allow: eval is off" } });
  assert.equal(message(check({ type: "storage", op: "remove", area: "local", key: "k" }, true, false)),
    "the page has no allow: storage edits are off");
});

test("check: the SDK's own keys are never editable, and the page is not asked", () => {
  for (const area of ["local", "session", "cookie"]) {
    for (const op of ["set", "remove"]) {
      const reply = check({ type: "storage", op, area, key: "tether.device.guard", value: "{}" }, true, true);
      assert.deepEqual(JSON.parse(reply), { error: { code: "not_allowed", message: "tether.* keys are the SDK's own" } });
    }
  }
  assert.equal(check({ type: "storage", op: "set", area: "local", key: "tethered", value: "1" }, true, true), "ask");
});

test("check: a cookie written by a PC is a name and a value, nothing more", () => {
  const cookie = (key, value) => check({ type: "storage", op: "set", area: "cookie", key, value }, true, true);
  assert.equal(cookie("sid", "abc def"), "ask");
  assert.equal(cookie("säft", "ü"), "ask");
  for (const [key, value] of [["sid", "x; domain=evil.example"], ["sid", "x\ny"], ["a=b", "x"], ["a;b", "x"],
    ["a b", "x"], ["", "x"], ["sid", "x".repeat(4094)]]) {
    assert.equal(code(cookie(key, value)), "bad_frame", `${key}=${value.slice(0, 20)}`);
  }
  assert.equal(cookie("sid", "x".repeat(4093)), "ask", "4,096 in all");
});

test("cookies are read as browsers list them", () => {
  assert.deepEqual(cookies("a=1; b=2"), [["a", "1"], ["b", "2"]]);
  assert.deepEqual(cookies("k=v=w;nameless; ;x="), [["k", "v=w"], ["", "nameless"], ["x", ""]]);
  assert.deepEqual(cookies(""), []);
});

test("read: every area, small ones first, never the SDK's own keys", () => {
  const reply = read();
  assert.match(reply, /^\{"result":\{"cookie":/);
  assert.deepEqual(JSON.parse(reply), {
    result: { cookie: [["uid", "42"]], session: [["step", "2"]], local: [["theme", "dark"], ["lang", "en"]] },
  });
  assert.doesNotMatch(reply, /the-pc-secret|hidden|tether\./);
  // An area the page may not use is null.
  Object.defineProperty(globalThis, "sessionStorage", { configurable: true, get() { throw new Error("SecurityError"); } });
  try {
    assert.equal(JSON.parse(read()).result.session, null);
  } finally {
    Object.defineProperty(globalThis, "sessionStorage", { configurable: true, writable: true, value: session });
  }
});

test("read: long values are cut, and a full reply says cut", () => {
  local.setItem("big", "é".repeat(10_000));
  const big = JSON.parse(read()).result.local.find(([k]) => k === "big")[1];
  assert.deepEqual({ ...big, head: big.head.length }, { $: "str", head: 8192, len: 10_000 });
  // 100 values of 8 KiB: what fits is kept in order, the rest of the area is left out.
  for (let i = 0; i < 100; i++) local.setItem(`k${String(i).padStart(2, "0")}`, "v".repeat(8192));
  const reply = read();
  assert.ok(reply.length <= 262_144, `${reply.length} units`);
  const { result } = JSON.parse(reply);
  assert.equal(result.cut, true);
  assert.deepEqual([result.cookie, result.session], [[["uid", "42"]], [["step", "2"]]]);
  const kept = result.local.filter(([k]) => /^k\d\d$/.test(k)).map(([k]) => k);
  assert.ok(kept.length > 20 && kept.length < 100, `${kept.length} kept`);
  assert.deepEqual(kept, kept.map((_, i) => `k${String(i).padStart(2, "0")}`), "in order, none skipped");
});

test("edit: set, remove and clear each area; clear spares the SDK's keys", () => {
  edit("set", "local", "theme", "light");
  edit("remove", "session", "step");
  assert.deepEqual([local.getItem("theme"), session.length], ["light", 0]);
  edit("clear", "local");
  assert.deepEqual([...local.m.keys()], ["tether.secret.room"]);

  edit("set", "cookie", "theme", "dark");
  assert.equal(doc.written.at(-1), "theme=dark; path=/");
  edit("remove", "cookie", "uid");
  assert.deepEqual(doc.written.slice(-2), ["uid=; max-age=0; path=/", "uid=; max-age=0"]);
  edit("set", "cookie", "a", "1");
  edit("clear", "cookie");
  assert.deepEqual([...doc.cookies.keys()], ["tether.x"]);
  // What the page's storage throws is thrown.
  local.full = true;
  assert.throws(() => edit("set", "local", "k", "v"), { name: "QuotaExceededError" });
});

/** Runs `command` with `allow` and the value writer's stand-in; resolves with the reply. */
function run(kind, msg, allow, storage = true) {
  const value = (ok, v) => JSON.stringify(ok ? { result: v } : { error: { code: "threw", message: String(v?.message ?? v) } });
  return command(kind, JSON.stringify(msg), allow, storage, value);
}

test("command: eval runs only if allow says exactly true, then its result, thrown value or Promise", async () => {
  const asked = [];
  const yes = (req) => { asked.push(req); return true; };
  assert.deepEqual(JSON.parse(await run("eval", { code: "1 + 1" }, yes)), { result: 2 });
  await run("eval", { code: "2", timeoutMs: 5 }, yes);
  assert.deepEqual(asked, [{ type: "eval", code: "1 + 1" }, { type: "eval", code: "2" }], "the request, and no more");
  for (const no of [() => false, () => "yes", () => 1, () => { throw new Error("no"); }, () => Promise.reject(true),
    () => Promise.resolve(false)]) {
    assert.deepEqual(JSON.parse(await run("eval", { code: "globalThis.ran = 1" }, no)),
      { error: { code: "not_allowed", message: "the page's allow said no" } });
  }
  assert.equal(globalThis.ran, undefined, "refused code never ran");
  assert.deepEqual(JSON.parse(await run("eval", { code: "1" }, () => Promise.resolve(true))), { result: 1 });
  assert.deepEqual(JSON.parse(await run("eval", { code: "throw new TypeError('bad')" }, yes)),
    { error: { code: "threw", message: "bad" } });
  assert.deepEqual(JSON.parse(await run("eval", { code: "Promise.resolve(6 * 7)" }, yes)), { result: 42 });
  assert.deepEqual(JSON.parse(await run("eval", { code: "Promise.reject(new Error('later'))" }, yes)),
    { error: { code: "threw", message: "later" } });
  // Global code: a `var` lands on the global object, not in the shim's scope.
  await run("eval", { code: "var fromEval = 5" }, yes);
  assert.equal(globalThis.fromEval, 5);
  // What allow does to the object it is shown does not change what runs (it is a copy).
  const meddler = (req) => { req.code = "'changed'"; return true; };
  assert.deepEqual(JSON.parse(await run("eval", { code: "'sent'" }, meddler)), { result: "sent" });
  // Without allow: refused, nothing asked.
  assert.equal(code(await run("eval", { code: "1" }, undefined)), "not_allowed");
  // An allow that says yes only after the request's timeout (the PC was told `timeout` then,
  // and may send it again): a no, and the code never runs.
  const late = () => new Promise((r) => setTimeout(() => r(true), 60));
  assert.deepEqual(JSON.parse(await run("eval", { code: "globalThis.lateRan = 1", timeoutMs: 20 }, late)),
    { error: { code: "not_allowed", message: "the page's allow answered after the request timed out" } });
  assert.equal(globalThis.lateRan, undefined);
});

test("command: storage reads, and edits once allowed, answer with the storage after", async () => {
  const before = JSON.parse(await run("storage", {}, undefined));
  assert.deepEqual(before.result.local, [["theme", "dark"], ["lang", "en"]]);
  const set = { op: "set", area: "local", key: "theme", value: "light" };
  assert.equal(code(await run("storage", set, () => false)), "not_allowed");
  assert.equal(local.getItem("theme"), "dark", "a refused edit changed nothing");
  const after = JSON.parse(await run("storage", set, () => true));
  assert.deepEqual(after.result.local, [["theme", "light"], ["lang", "en"]]);
  local.full = true;
  assert.deepEqual(JSON.parse(await run("storage", { ...set, key: "new" }, () => true)),
    { error: { code: "threw", message: "The quota has been exceeded." } });
  assert.equal(code(await run("storage", {}, undefined, false)), "inspect_off");
  assert.equal(code(await run("storage", "not an object", () => true)), "bad_frame");
});
