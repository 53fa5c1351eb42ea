// The base SDK's side of inspecting the page (#18): a device's ring, its gate and batches, and
// a PC's onInspect, storage() and eval(), against a real relay. The device is the SDK itself,
// given a test inspector exactly where index.js gives the real one (`start(config, sink)`,
// `handle(kind, msgText)`, `stop()`), so that its events and answers are the test's own.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startRelay, launchBrowser, sdkPage, WAIT } from "./harness.mjs";

let browser, relay;
before(async () => {
  browser = await launchBrowser();
  relay = await startRelay();
});
after(async () => {
  await relay?.stop();
  await browser?.close();
});

/** A PC page linked to `room`, collecting what onInspect gives (after `watch()`). */
async function pcPage(room, options = {}) {
  const page = await sdkPage(browser, relay);
  await page.evaluate(async ({ url, room, options }) => {
    window.seen = [];
    window.s = await tether.connectPc({ url, room, ...options });
    window.watch = () => s.onInspect((e) => seen.push(e));
  }, { url: relay.ws, room, options });
  return page;
}

/** A device page in `room` whose inspector is the test's: `sink(kind, text)` is kept as
 *  `window.sink`, the config as `window.config`; `handle` answers with `window.answer`. */
async function devicePage(room, secret, inspect = true) {
  const page = await sdkPage(browser, relay);
  await page.evaluate(async ({ url, room, secret, inspect }) => {
    await tether.load();
    const bindings = await import("/sdk/tether_sdk.js"); // the module index.js loaded
    window.handled = [];
    window.answer = (kind) => JSON.stringify({ error: { code: "not_allowed", message: `${kind} is off on this phone` } });
    const inspector = {
      start(config, sink) {
        window.config = config;
        window.sink = sink;
        return {
          handle: async (kind, msgText) => { handled.push([kind, JSON.parse(msgText)]); return answer(kind); },
          stop() { window.stopped = true; },
        };
      },
    };
    if (inspect === "allow") inspect = { allow: () => true, ringBytes: 65536 };
    window.d = await bindings.connectDevice({ url, room, secret, name: "phone", inspect }, inspect ? inspector : undefined);
  }, { url: relay.ws, room, secret, inspect });
  return page;
}

/** An event of about `size` bytes, as the inspector writes one. */
function push(page, from, to, size = 100, kind = "console") {
  return page.evaluate(({ from, to, size, kind }) => {
    for (let n = from; n <= to; n++) {
      const head = JSON.stringify({ k: kind, at: Date.now(), n, level: "log", args: [""] });
      sink(kind, JSON.stringify({ k: kind, at: Date.now(), n, level: "log", args: ["x".repeat(Math.max(0, size - head.length))] }));
    }
  }, { from, to, size, kind });
}

test("events kept before a PC watched arrive when it does, with what the ring dropped, then live", async () => {
  const pc = await pcPage("ring");
  const key = await pc.evaluate(() => s.deviceKey);
  const device = await devicePage("ring", key, { ringBytes: 1 }); // clamped to 65,536
  const id = await device.evaluate(() => d.member);

  // What the inspector was started with: every part on, the ring's bound, the SDK's own URLs.
  const config = await device.evaluate(() => config);
  assert.deepEqual(config, {
    console: true, network: true, storage: true, ringBytes: 65536,
    own: [relay.ws, `ws://${relay.addr}/alarms`, `${relay.http}/sdk/`, `${relay.http}/api/`],
  });
  // The device's hello says what its page captures (no allow hook given).
  await pc.waitForFunction((id) => s.devices.some((m) => m.id === id && m.inspect), id, { timeout: WAIT });
  const member = await pc.evaluate((id) => s.devices.find((m) => m.id === id), id);
  assert.deepEqual(member.inspect, { console: true, network: true, storage: true, allow: false });

  // 100 events of 1,000 bytes while nobody watches: the ring keeps the newest 65 (had they
  // been sent, the relay would have dropped them: nobody watched).
  await push(device, 1, 100, 1000);

  // The PC watches: the relay lists it, the gate opens, everything kept arrives.
  await pc.evaluate(() => watch());
  await pc.waitForFunction(() => seen.some((e) => e.n === 100), null, { timeout: WAIT });
  const got = await pc.evaluate(() => seen);
  assert.deepEqual(
    { ...got[0], at: 0 },
    { device: id, kind: "dropped", at: 0, counts: { console: 35 }, bytes: 35 * 1000 },
  );
  const events = got.slice(1);
  assert.deepEqual(events.map((e) => e.n), Array.from({ length: 65 }, (_, i) => 36 + i), "the newest, in order");
  for (const e of events) {
    assert.equal(e.device, id);
    assert.equal(e.kind, "console");
    assert.equal(e.level, "log");
    assert.equal(e.k, undefined, "k is called kind on the PC");
  }

  // Live from now on, within a second; the dropped count came once.
  const t0 = Date.now();
  await push(device, 101, 103);
  await pc.waitForFunction(() => seen.some((e) => e.n === 103), null, { timeout: WAIT });
  assert.ok(Date.now() - t0 < 1000, `${Date.now() - t0} ms`);
  const later = await pc.evaluate(() => seen.slice(66));
  assert.deepEqual(later.map((e) => [e.kind, e.n]), [["console", 101], ["console", 102], ["console", 103]]);

  // close(): the inspector is stopped, nothing more is sent.
  assert.equal(await device.evaluate(() => { d.close(); return window.stopped; }), true);
  await device.context().close();
  await pc.context().close();
});

/** Records the type of every frame the page's sockets receive. */
function recordFrames() {
  window.received = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...a) {
      super(...a);
      this.addEventListener("message", (e) => received.push(JSON.parse(e.data).type));
    }
  };
}

test("a PC that said inspect: 'keep' is listed so and gets batches; one that did not ask gets none", async () => {
  const keeper = await pcPage("keep", { inspect: "keep" });
  const [key, secret, me] = await keeper.evaluate(() => [s.deviceKey, s.secret, s.member]);
  await keeper.evaluate(() => watch()); // "keep" is not taken back by onInspect's "live"
  const quiet = await sdkPage(browser, relay, { initScript: recordFrames });
  await quiet.evaluate(async ({ url, secret }) => { window.s = await tether.connectPc({ url, room: "keep", secret }); },
    { url: relay.ws, secret });
  const device = await devicePage("keep", key);
  await keeper.waitForFunction(() => s.devices.some((m) => m.role === "device"), null, { timeout: WAIT });
  await push(device, 1, 3, 100, "network");
  await keeper.waitForFunction(() => seen.filter((e) => e.kind === "network").length === 3, null, { timeout: WAIT });
  // The relay lists who watches: the keeper as it said, the quiet PC not at all.
  const modes = await quiet.evaluate((me) => [s.devices.find((m) => m.id === me).inspect, s.devices.find((m) => m.id === s.member).inspect], me);
  assert.deepEqual(modes, ["keep", null]);
  // A later frame to both (the device leaves): the quiet PC got it, and no batch before it.
  await device.evaluate(() => d.close());
  await quiet.waitForFunction(() => s.devices.every((m) => m.role !== "device"), null, { timeout: WAIT });
  const frames = await quiet.evaluate(() => received);
  assert.ok(frames.includes("devices") && !frames.includes("inspect"), frames.join());
  // The keeper's room kept the batches: the SDK reads them back with `type: "inspect"` (a
  // batch is stored as it is forwarded, so it may land just after the PC saw it).
  await keeper.waitForFunction(async () => (await s.serverHistory({ type: "inspect" }))
    .flatMap((r) => r.result.events).filter((e) => e.k === "network").length === 3, null, { timeout: WAIT, polling: 100 });
  const pairsOnly = await keeper.evaluate(() => s.serverHistory());
  assert.ok(pairsOnly.every((r) => r.type !== "inspect"), JSON.stringify(pairsOnly));
  for (const p of [keeper, quiet, device]) await p.context().close();
});

test("storage and eval: inspect_off without an inspector, the device's code when refused, the value when not", async () => {
  const pc = await pcPage("commands");
  const key = await pc.evaluate(() => s.deviceKey);
  const plain = await devicePage("commands", key, false);
  const plainId = await plain.evaluate(() => d.member);
  await pc.waitForFunction((id) => s.devices.some((m) => m.id === id), plainId, { timeout: WAIT });

  const off = await pc.evaluate(async (to) => ({
    eval: await s.eval("1 + 1", { to }).then(() => "resolved", (e) => ({ code: e.code, message: e.message })),
    storage: await s.storage({ to }).then(() => "resolved", (e) => e.code),
  }), plainId);
  assert.deepEqual(off, {
    eval: { code: "inspect_off", message: "inspection is off on this page (connectDevice without inspect)" },
    storage: "inspect_off",
  });

  const device = await devicePage("commands", key, "allow");
  const id = await device.evaluate(() => d.member);
  await device.evaluate(() => { window.log = []; d.onCommand((e) => log.push(e)); });
  await pc.waitForFunction((id) => s.devices.find((m) => m.id === id)?.inspect?.allow === true, id, { timeout: WAIT });

  // The inspector's answer is the reply: refused…
  const refused = await pc.evaluate((to) => s.eval("document.title", { to, timeoutMs: 5000 })
    .then(() => "resolved", (e) => ({ code: e.code, message: e.message, isError: e instanceof Error })), id);
  assert.deepEqual(refused, { code: "not_allowed", message: "eval is off on this phone", isError: true });
  assert.deepEqual(await device.evaluate(() => handled), [["eval", { code: "document.title", timeoutMs: 5000 }]]);

  // …threw, with the thrown value…
  await device.evaluate(() => {
    window.answer = (kind) => kind === "eval"
      ? JSON.stringify({ error: { code: "threw", message: "boom", value: { $: "error", name: "Error", message: "boom" } } })
      : JSON.stringify({ result: { local: [["theme", "dark"]], session: [], cookie: [["uid", "42"]] } });
  });
  const threw = await pc.evaluate((to) => s.eval("throw new Error('boom')", { to }).catch((e) => ({ code: e.code, value: e.value })), id);
  assert.deepEqual(threw, { code: "threw", value: { $: "error", name: "Error", message: "boom" } });

  // …or a result.
  const read = await pc.evaluate((to) => s.storage({ to, area: "local" }), id);
  assert.deepEqual({ ...read, ms: 0 }, { device: id, ms: 0, local: [["theme", "dark"]], session: [], cookie: [["uid", "42"]] });
  await device.evaluate(() => { window.answer = () => JSON.stringify({ result: 2 }); });
  const two = await pc.evaluate((to) => s.eval("1 + 1", { to }), id);
  assert.deepEqual([two.device, two.result, typeof two.ms], [id, 2, "number"]);
  const edit = await pc.evaluate((to) => s.storage({ to, op: "set", area: "local", key: "theme", value: "light" }), id);
  assert.equal(edit.device, id);
  assert.deepEqual((await device.evaluate(() => handled)).at(-1),
    ["storage", { op: "set", area: "local", key: "theme", value: "light", timeoutMs: 15000 }]);

  // An inspector that answers nonsense is an error, not a timeout; the phone's log shows each.
  await device.evaluate(() => { window.answer = () => "not json"; });
  const broken = await pc.evaluate((to) => s.eval("1", { to }).catch((e) => e.code), id);
  assert.equal(broken, "internal");
  const log = await device.evaluate(() => log.filter((e) => e.state !== "running").map((e) => [e.type, e.state]));
  assert.deepEqual(log, [["eval", "failed"], ["eval", "failed"], ["storage", "done"], ["eval", "done"], ["storage", "done"], ["eval", "failed"]]);
  for (const p of [pc, plain, device]) await p.context().close();
});

test("with the real inspector: the page's console reaches the PC", async () => {
  const pc = await pcPage("real", { inspect: true });
  const key = await pc.evaluate(() => s.deviceKey);
  // Listening before the phone joins: a batch may arrive as soon as the phone links.
  await pc.evaluate(() => s.onInspect((e) => seen.push(e)));
  const device = await sdkPage(browser, relay);
  await device.evaluate(async ({ url, key }) => {
    window.d = await tether.connectDevice({ url, room: "real", secret: key, inspect: true });
    console.warn("from the phone");
  }, { url: relay.ws, key });
  const id = await device.evaluate(() => d.member);
  await pc.waitForFunction(() => seen.some((e) => e.kind === "console" && e.level === "warn"), null, { timeout: WAIT });
  const warn = await pc.evaluate(() => seen.find((e) => e.level === "warn"));
  assert.equal(warn.device, id);
  assert.equal(typeof warn.n, "number");
  await device.evaluate(() => d.close());
  for (const p of [pc, device]) await p.context().close();
});
