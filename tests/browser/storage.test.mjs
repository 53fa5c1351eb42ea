// Storage and eval from the PC, end to end (#18, increment 8): a real relay, a PC page (the
// relay's fixture) and an app's own H5 page on another origin (the no-CSP app fixture) that
// loads the SDK from there and joins as a device with `inspect`, its `allow` in the test's hand.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT, startRelay, launchBrowser, sdkPage, WAIT } from "./harness.mjs";
import { startAppServer } from "./fixture/app-server.mjs";

// The app's page: the SDK from its own origin, as an H5 page in the app would load it.
const BOOT = `<script type="module" nonce="n0nce">
  import * as tether from "/sdk/index.js";
  window.tether = tether;
  window.tetherReady = true;
</script>`;
// A page of the same app whose CSP forbids eval (scripts from itself, wasm, the nonce).
const STRICT = "script-src 'self' 'wasm-unsafe-eval' 'nonce-n0nce'";

let browser, relay, app;
before(async () => {
  browser = await launchBrowser();
  relay = await startRelay();
  app = await startAppServer({
    pages: { phone: BOOT, strict: BOOT },
    headers: { strict: { "content-security-policy": STRICT } },
  });
});
after(async () => {
  await app?.close();
  await relay?.stop();
  await browser?.close();
});

/** A PC page linked to `room`; `watch()` collects onInspect's events into `seen`. */
async function pcPage(room) {
  const page = await sdkPage(browser, relay);
  await page.evaluate(async ({ url, room }) => {
    window.seen = [];
    window.s = await tether.connectPc({ url, room });
    window.watch = () => s.onInspect((e) => seen.push(e));
  }, { url: relay.ws, room });
  return page;
}

/**
 * The app's page `path` joined to `room` as a device with `inspect`: its `allow(req)` records
 * each request in `asked` and answers `answer(req)` (no, until the test says otherwise).
 * Resolves once the PC `pc` lists it.
 */
async function phone(pc, room, path = "/phone.html", before = () => {}) {
  const key = await pc.evaluate(() => s.deviceKey);
  const page = await (await browser.newContext()).newPage();
  page.on("pageerror", (e) => console.error("phone page error:", e));
  await page.goto(app.origin + path);
  await page.waitForFunction(() => window.tetherReady === true, null, { timeout: WAIT });
  await page.evaluate(before);
  await page.evaluate(async ({ url, room, key }) => {
    window.asked = [];
    window.answer = () => false;
    const allow = (req) => { asked.push({ ...req }); return answer(req); };
    window.d = await tether.connectDevice({ url, room, secret: key, name: "app", inspect: { allow } });
  }, { url: relay.ws, room, key });
  const id = await page.evaluate(() => d.member);
  await pc.waitForFunction((id) => s.devices.some((m) => m.id === id && m.inspect?.allow === true), id, { timeout: WAIT });
  return { page, id };
}

/** `s.eval(code)` on the PC, to `id`: `{result}` or the rejection's `{code, message, value}`. */
const evalOn = (pc, id, code) => pc.evaluate(({ id, code }) => s.eval(code, { to: id, timeoutMs: 5000 })
  .then((r) => ({ result: r.result }), (e) => ({ code: e.code, message: e.message, value: e.value })), { id, code });

/** `s.storage(options)` on the PC, to `id`: the three areas, each sorted by key (a browser
 *  keeps its own order), or the rejection. */
const storageOn = (pc, id, options = {}) => pc.evaluate(({ id, options }) => s.storage({ to: id, timeoutMs: 5000, ...options })
  .then((r) => {
    (window.replies ??= []).push(JSON.stringify(r));
    return Object.fromEntries(["local", "session", "cookie"].map((a) => [a, r[a].sort(([x], [y]) => (x < y ? -1 : 1))]));
  }, (e) => ({ code: e.code, message: e.message })), { id, options });

test("eval: not_allowed until the page's allow says yes; then results, throws and Promises come back as Values", async () => {
  const pc = await pcPage("eval");
  const { page, id } = await phone(pc, "eval");

  const refused = await evalOn(pc, id, "window.ran = true; 1 + 1");
  assert.deepEqual(refused, { code: "not_allowed", message: "the page's allow said no", value: undefined });
  assert.equal(await page.evaluate(() => window.ran), undefined, "refused code never ran");
  assert.deepEqual(await page.evaluate(() => asked), [{ type: "eval", code: "window.ran = true; 1 + 1" }]);
  // An allow that throws, or answers something truthy but not true, is a no too.
  await page.evaluate(() => { window.answer = () => { throw new Error("broken allow"); }; });
  assert.equal((await evalOn(pc, id, "1")).code, "not_allowed");
  await page.evaluate(() => { window.answer = () => "yes"; });
  assert.equal((await evalOn(pc, id, "1")).code, "not_allowed");

  await page.evaluate(() => { window.answer = (req) => Promise.resolve(req.type === "eval"); });
  assert.deepEqual(await evalOn(pc, id, "1+1"), { result: 2 });
  // Global code, in the page: its globals, its document; `var` lands on window.
  assert.deepEqual(await evalOn(pc, id, "var fromPc = 7; document.title"), { result: "app" });
  assert.equal(await page.evaluate(() => window.fromPc), 7);
  const threw = await evalOn(pc, id, "function boom() { throw new TypeError('boom'); } boom()");
  assert.equal(threw.code, "threw");
  assert.equal(threw.message, "boom");
  assert.deepEqual({ ...threw.value, stack: typeof threw.value.stack }, { $: "error", name: "TypeError", message: "boom", stack: "string" });
  assert.match(threw.value.stack, /boom/);
  assert.deepEqual(await evalOn(pc, id, "throw {code: 7}"), { code: "threw", message: "threw (see value)", value: { code: 7 } });
  // A Promise is awaited (the relay's request timeout bounds it); a rejection is a throw.
  assert.deepEqual(await evalOn(pc, id, "new Promise((r) => setTimeout(() => r({ late: [1, 2n] }), 50))"),
    { result: { late: [1, { $: "bigint", v: "2" }] } });
  assert.deepEqual(await evalOn(pc, id, "Promise.reject(42)"), { code: "threw", message: "threw (see value)", value: 42 });
  // One that never settles is bounded by the request's timeout.
  const started = Date.now();
  const never = await pc.evaluate((id) => s.eval("new Promise(() => {})", { to: id, timeoutMs: 1000 })
    .then(() => "resolved", (e) => ({ code: e.code, message: e.message })), id);
  assert.deepEqual(never, { code: "timeout", message: "no reply within 1000 ms" });
  assert.ok(Date.now() - started < 1000 + WAIT / 2, `${Date.now() - started} ms`);
  // …and the page goes on answering.
  assert.deepEqual(await evalOn(pc, id, "undefined"), { result: { $: "undefined" } });
  assert.deepEqual(await evalOn(pc, id, "document.body"), { result: { $: "node", d: "body" } });

  // The phone's command log shows what the PC ran.
  await page.evaluate(() => { window.log = []; d.onCommand((e) => log.push([e.type, e.state, e.msg?.code])); });
  await evalOn(pc, id, "3");
  await page.waitForFunction(() => log.length === 2, null, { timeout: WAIT });
  assert.deepEqual(await page.evaluate(() => log), [["eval", "running", "3"], ["eval", "done", "3"]]);
  for (const p of [pc, page]) await p.context().close();
});

test("storage: reads need no allow, edits do; the reply is the storage after; tether.* keys never leave nor change", async () => {
  const pc = await pcPage("storage");
  const { page, id } = await phone(pc, "storage", "/phone.html", () => {
    localStorage.setItem("theme", "dark");
    localStorage.setItem("tether.secret.other", "the-pc-secret"); // as a PC page of this origin keeps it
    sessionStorage.setItem("step", "2");
    document.cookie = "uid=42; path=/";
    document.cookie = "tether.c=the-cookie-secret; path=/";
  });
  const start = { local: [["theme", "dark"]], session: [["step", "2"]], cookie: [["uid", "42"]] };
  assert.deepEqual(await storageOn(pc, id), start);
  assert.deepEqual(await storageOn(pc, id, { op: "read", area: "session" }), start, "a read reads every area");

  const edits = [
    { op: "set", area: "local", key: "theme", value: "light" },
    { op: "remove", area: "session", key: "step" },
    { op: "clear", area: "local" },
    { op: "set", area: "cookie", key: "uid", value: "7" },
  ];
  for (const edit of edits) {
    assert.deepEqual(await storageOn(pc, id, edit), { code: "not_allowed", message: "the page's allow said no" }, JSON.stringify(edit));
  }
  assert.deepEqual(await storageOn(pc, id), start, "nothing changed");
  assert.deepEqual((await page.evaluate(() => asked)).map((r) => r.op), ["set", "remove", "clear", "set"]);

  await page.evaluate(() => { window.answer = (req) => req.type === "storage"; });
  // The SDK's own keys: never, and the page is not even asked.
  for (const [area, key] of [["local", "tether.secret.other"], ["cookie", "tether.c"], ["session", "tether.device.guard"]]) {
    for (const op of ["set", "remove"]) {
      assert.deepEqual(await storageOn(pc, id, { op, area, key, value: "pc-wrote-this" }),
        { code: "not_allowed", message: "tether.* keys are the SDK's own" });
    }
  }
  assert.equal((await page.evaluate(() => asked)).length, 4, "not asked about tether.* keys");

  assert.deepEqual(await storageOn(pc, id, edits[0]), { ...start, local: [["theme", "light"]] });
  assert.deepEqual(await storageOn(pc, id, edits[1]), { ...start, local: [["theme", "light"]], session: [] });
  assert.deepEqual(await storageOn(pc, id, edits[3]), { local: [["theme", "light"]], session: [], cookie: [["uid", "7"]] });
  assert.deepEqual(await storageOn(pc, id, { op: "set", area: "local", key: "a", value: "1" }),
    { local: [["a", "1"], ["theme", "light"]], session: [], cookie: [["uid", "7"]] });
  assert.deepEqual(await storageOn(pc, id, edits[2]), { local: [], session: [], cookie: [["uid", "7"]] });
  assert.deepEqual(await storageOn(pc, id, { op: "remove", area: "cookie", key: "uid" }), { local: [], session: [], cookie: [] });
  // A cookie is a name and a value, nothing that adds attributes.
  assert.equal((await storageOn(pc, id, { op: "set", area: "cookie", key: "uid", value: "1; domain=example.com" })).code, "bad_frame");

  // The SDK's own keys are all still there, unchanged, and no reply carried them.
  const own = await page.evaluate(() => [localStorage.getItem("tether.secret.other"), document.cookie]);
  assert.deepEqual(own, ["the-pc-secret", "tether.c=the-cookie-secret"]);
  const replies = await pc.evaluate(() => replies);
  assert.equal(replies.length, 9, "every resolved read and edit");
  for (const r of replies) assert.doesNotMatch(r, /the-pc-secret|the-cookie-secret|tether\./);
  for (const p of [pc, page]) await p.context().close();
});

test("the page's own storage writes reach the PC as storage events, never the SDK's keys; close() takes the hooks out", async () => {
  const pc = await pcPage("writes");
  await pc.evaluate(() => watch());
  const { page } = await phone(pc, "writes", "/phone.html", () => {
    window.originals = [Storage.prototype.setItem, Storage.prototype.removeItem, Storage.prototype.clear,
      Object.getOwnPropertyDescriptor(Document.prototype, "cookie").set];
  });
  await page.evaluate(() => {
    localStorage.setItem("theme", "dark");
    localStorage.setItem("tether.mine", "never sent");
    sessionStorage.removeItem("gone");
    localStorage.clear();
    document.cookie = "sid=abc; path=/";
    document.cookie = "tether.x=never sent";
    localStorage.setItem("last", 5);
  });
  await pc.waitForFunction(() => seen.some((e) => e.kind === "storage" && e.key === "last"), null, { timeout: WAIT });
  const events = await pc.evaluate(() => seen.filter((e) => e.kind === "storage")
    .map(({ area, op, key, value }) => ({ area, op, key, value })));
  assert.deepEqual(events, [
    { area: "local", op: "set", key: "theme", value: "dark" },
    { area: "session", op: "remove", key: "gone", value: undefined },
    { area: "local", op: "clear", key: undefined, value: undefined },
    { area: "cookie", op: "set", key: "sid", value: "abc; path=/" },
    { area: "local", op: "set", key: "last", value: "5" },
  ]);
  assert.doesNotMatch(await pc.evaluate(() => JSON.stringify(seen)), /never sent/);

  // Another tool wraps setItem after us; close() takes ours out everywhere else, and the
  // tool's wrapper keeps working, with ours passing through.
  const after = await page.evaluate(() => {
    const ours = Storage.prototype.setItem;
    window.toolSaw = [];
    const tool = function (k, v) { toolSaw.push(k); return ours.call(this, k, v); };
    Storage.prototype.setItem = tool;
    d.close();
    localStorage.setItem("after", "1");
    const now = [Storage.prototype.setItem, Storage.prototype.removeItem, Storage.prototype.clear,
      Object.getOwnPropertyDescriptor(Document.prototype, "cookie").set];
    return { kept: now[0] === tool, restored: now.slice(1).map((f, i) => f === originals[i + 1]),
      saw: toolSaw, stored: localStorage.getItem("after") };
  });
  assert.deepEqual(after, { kept: true, restored: [true, true, true], saw: ["after"], stored: "1" });
  for (const p of [pc, page]) await p.context().close();
});

test("a page whose CSP forbids eval answers eval_blocked, and its storage still works", async () => {
  const pc = await pcPage("strict");
  const { page, id } = await phone(pc, "strict", "/strict.html");
  await page.evaluate(() => { window.answer = () => true; localStorage.setItem("k", "v"); });
  assert.deepEqual(await evalOn(pc, id, "window.ran = 1"),
    { code: "eval_blocked", message: "the page's CSP forbids eval", value: undefined });
  assert.equal(await page.evaluate(() => window.ran), undefined);
  assert.deepEqual((await storageOn(pc, id)).local, [["k", "v"]]);
  for (const p of [pc, page]) await p.context().close();
});

test("the device page's Guard: eval and storage edits only while its toggles are on, and they are off after a reload", async () => {
  // The relay serving the built pages (scripts/build-www); the PC is the app's page, with the SDK.
  const pages = await startRelay({ www: join(ROOT, "www", "dist") });
  try {
    const pc = await (await browser.newContext()).newPage();
    await pc.goto(app.origin + "/phone.html");
    await pc.waitForFunction(() => window.tetherReady === true, null, { timeout: WAIT });
    await pc.evaluate(async (url) => { window.s = await tether.connectPc({ url, room: "guarded" }); }, pages.ws);
    const key = await pc.evaluate(() => s.deviceKey);
    const phone = await (await browser.newContext()).newPage();
    phone.on("pageerror", (e) => assert.fail(`device page error: ${e}`));
    /** Opens (or reloads) the device page; resolves with its member id once the PC lists it. */
    const open = async (go) => {
      const before = await pc.evaluate(() => s.devices.map((m) => m.id));
      await go();
      await phone.waitForFunction(() => document.querySelector('[data-testid="status"]')?.dataset.status === "linked", null, { timeout: WAIT });
      const handle = await pc.waitForFunction((before) => s.devices.find((m) => m.role === "device" && !m.away
        && !before.includes(m.id) && m.inspect?.allow === true)?.id, before, { timeout: WAIT });
      return handle.jsonValue();
    };
    let id = await open(() => phone.goto(`${pages.http}/d/guarded?secret=${encodeURIComponent(key)}`));
    const boxes = () => phone.evaluate(() => ["eval", "storage"].map((w) => document.querySelector(`[data-testid="guard-${w}"]`).checked));
    const set = { op: "set", area: "local", key: "k", value: "v" };

    assert.deepEqual(await boxes(), [false, false], "off by default");
    assert.deepEqual(await storageOn(pc, id, set), { code: "not_allowed", message: "the page's allow said no" });
    assert.equal((await evalOn(pc, id, "1")).code, "not_allowed");
    assert.deepEqual((await storageOn(pc, id)).local, [], "reads need no grant; the Guard's own keys are not shown");

    await phone.getByTestId("guard").click(); // opens the <details>
    await phone.getByTestId("guard-storage").check();
    assert.deepEqual((await storageOn(pc, id, set)).local, [["k", "v"]]);
    assert.equal((await evalOn(pc, id, "1")).code, "not_allowed", "storage edits do not grant eval");
    await phone.getByTestId("guard-eval").check();
    // Granted, but this page's own CSP forbids eval: the PC is told so.
    assert.deepEqual(await evalOn(pc, id, "1"), { code: "eval_blocked", message: "the page's CSP forbids eval", value: undefined });

    // "Ask first" asks for these too; a reload turns the grants off again.
    await phone.evaluate(() => localStorage.setItem("tether.device.guard", JSON.stringify({ confirm: true })));
    id = await open(() => phone.reload());
    assert.deepEqual(await boxes(), [false, false], "not remembered");
    assert.equal((await storageOn(pc, id, { ...set, key: "k2" })).code, "not_allowed");
    await phone.getByTestId("guard").click();
    await phone.getByTestId("guard-storage").check();
    const dialogs = [];
    phone.on("dialog", (d) => { dialogs.push(d.message()); return dialogs.length === 1 ? d.dismiss() : d.accept(); });
    assert.equal((await storageOn(pc, id, { ...set, key: "k2" })).code, "not_allowed", "declined on the phone");
    assert.deepEqual((await storageOn(pc, id, { ...set, key: "k2" })).local, [["k", "v"], ["k2", "v"]], "accepted");
    assert.deepEqual(dialogs, Array(2).fill('The PC asks to set localStorage "k2" = "v" on this phone\n\nAllow it?'));
    // Code longer than the dialog shows says how much is not shown: a PC cannot hide its
    // payload after 500 harmless characters.
    await phone.getByTestId("guard-eval").check();
    dialogs.length = 0;
    const code = " ".repeat(500) + "stealEverything()";
    assert.equal((await evalOn(pc, id, code)).code, "not_allowed", "declined (the first dialog again)");
    assert.match(dialogs[0], /^The PC asks to run this JavaScript on this phone:\n\n {500}\n… and 17 more characters not shown\n\nAllow it\?$/);
    for (const p of [pc, phone]) await p.context().close();
  } finally {
    await pages.stop();
  }
});
