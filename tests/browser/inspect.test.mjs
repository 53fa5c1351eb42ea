// The inspector (#18): a second WebAssembly module that `connectDevice({inspect})` loads, and
// only then; its console hook, through the JS shim, and taking it out again.
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

const LEVELS = ["log", "info", "warn", "error", "debug", "trace", "assert", "dir", "table",
  "group", "groupCollapsed", "groupEnd", "clear"];

/** A device page: the SDK loaded, the requests it makes and what reaches its console. */
async function devicePage() {
  const page = await sdkPage(browser, relay);
  const requests = [];
  const consoleSeen = [];
  page.on("request", (r) => requests.push(new URL(r.url()).pathname));
  page.on("console", (m) => consoleSeen.push(`${m.type()}: ${m.text()}`));
  /** Waits until the page's console has shown `line`. */
  const shown = (line) => waitFor(() => consoleSeen.includes(line), `the console to show ${line}`);
  return { page, requests, consoleSeen, shown };
}

async function waitFor(cond, what) {
  const end = Date.now() + WAIT;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("connectDevice loads the inspector only with inspect; its hooks come out on close", async () => {
  const { page, requests, shown } = await devicePage();
  await page.evaluate(async ({ url, levels }) => {
    window.original = Object.fromEntries(levels.map((l) => [l, console[l]]));
    window.untouched = () => levels.filter((l) => console[l] !== original[l]);
    window.pc = await tether.connectPc({ url, room: "inspect-load" });
  }, { url: relay.ws, levels: LEVELS });

  // Without inspect: nothing more is fetched and the console is the page's own.
  const linkedPlain = await page.evaluate(async (url) => {
    const d = await tether.connectDevice({ url, room: "inspect-load", secret: pc.deviceKey });
    const status = d.status;
    const changed = untouched();
    d.close();
    return { status, changed };
  }, relay.ws);
  assert.deepEqual(linkedPlain, { status: "linked", changed: [] });
  assert.ok(!requests.some((p) => p.includes("inspect")), `no inspector request yet: ${requests}`);

  // With inspect: the inspector's three files come, and every level is hooked once linked.
  const during = await page.evaluate(async (url) => {
    window.d = await tether.connectDevice({ url, room: "inspect-load", secret: pc.deviceKey, inspect: true });
    return { status: d.status, hooked: untouched() };
  }, relay.ws);
  assert.equal(during.status, "linked");
  assert.deepEqual(during.hooked, LEVELS);
  for (const file of ["/sdk/tether_inspect.js", "/sdk/tether_inspect_bg.wasm"]) {
    assert.ok(requests.includes(file), `${file} was fetched: ${requests}`);
  }
  assert.ok(requests.some((p) => /^\/sdk\/snippets\/tether-sdk-inspect-[0-9a-f]+\/src\/web\/hooks\.js$/.test(p)),
    `the shim was fetched: ${requests}`);

  // The page's console still works through the hooks, arguments and all.
  await page.evaluate(() => { console.log("hooked", 1, { a: 2 }); console.warn("careful"); });
  await shown("log: hooked 1 {a: 2}");
  await shown("warning: careful");

  // close() takes every hook out: the page's own functions are back.
  assert.deepEqual(await page.evaluate(() => { d.close(); return untouched(); }), []);
  await page.evaluate(() => console.log("after close"));
  await shown("log: after close");
  await page.context().close();
});

test("a session that never links takes its hooks out too", async () => {
  const { page } = await devicePage();
  const result = await page.evaluate(async ({ url, levels }) => {
    const original = levels.map((l) => console[l]);
    const code = await tether.connectDevice({ url, room: "inspect-refused", secret: "not-a-key", inspect: true, retries: 0 })
      .then(() => "linked", (e) => e.code);
    return { code, restored: levels.every((l, i) => console[l] === original[i]) };
  }, { url: relay.ws, levels: LEVELS });
  assert.equal(result.code, "unauthorized");
  assert.equal(result.restored, true, "the refused session's hooks came out");
  await page.context().close();
});

test("the inspector records every console call, in order, and the page's console still runs", async () => {
  const { page, shown } = await devicePage();
  await page.evaluate(async () => {
    window.insp = await import("/sdk/tether_inspect.js");
    await insp.default();
    window.events = [];
    // The page event sent at start is capture.test.mjs's; here, the console's.
    window.sink = (kind, text) => { if (kind === "console") events.push({ kind, ...JSON.parse(text) }); };
  });
  const before = Date.now();
  const events = await page.evaluate(() => {
    const i = insp.start(true, sink);
    console.log("one");
    console.warn("two");
    console.assert(false, "three");
    console.table([{ x: 1 }]);
    i.stop();
    console.log("not recorded");
    return events;
  });
  assert.deepEqual(events.map((e) => [e.kind, e.k, e.n, e.level]), [
    ["console", "console", 2, "log"], ["console", "console", 3, "warn"],
    ["console", "console", 4, "assert"], ["console", "console", 5, "table"],
  ]);
  for (const e of events) assert.ok(e.at >= before - 1000 && e.at <= Date.now() + 1000, `a plausible time: ${e.at}`);
  await shown("log: one");
  await shown("warning: two");
  await shown("assert: three");
  await shown("log: not recorded");

  // `console: false` hooks nothing; a sink that logs is not recorded again (no loop); a sink
  // that throws loses its event only (here the page event at start).
  const more = await page.evaluate(() => {
    const log = console.log;
    const off = insp.start({ console: false }, sink);
    const untouched = console.log === log;
    off.stop();
    events.length = 0;
    let calls = 0;
    const noisy = insp.start({}, (kind, text) => {
      calls += 1;
      console.log("from the sink");
      if (calls === 1) throw new Error("a broken sink");
      sink(kind, text);
    });
    console.info("a");
    console.info("b");
    noisy.stop();
    noisy.stop();
    return { untouched, calls, events: events.map((e) => [e.n, e.level]), restored: console.log === log };
  });
  assert.deepEqual(more, { untouched: true, calls: 3, events: [[2, "info"], [3, "info"]], restored: true });
  await shown("log: from the sink");
  await shown("info: b");
  await page.context().close();
});

test("another tool that wrapped the console after us keeps working when we stop", async () => {
  const { page, shown } = await devicePage();
  const result = await page.evaluate(async () => {
    const insp = await import("/sdk/tether_inspect.js");
    await insp.default();
    const own = console.log;
    const events = [];
    const i = insp.start(true, (kind, text) => kind === "console" && events.push(JSON.parse(text).level));
    // e.g. vConsole or Sentry, installed after Tether.
    const seen = [];
    const ours = console.log;
    const tool = function (...args) { seen.push(args.join(" ")); return ours.apply(this, args); };
    console.log = tool;
    console.log("before stop");
    i.stop();
    const kept = console.log === tool;
    console.log("after stop");
    console.log = own;
    return { kept, seen, events };
  });
  assert.deepEqual(result, { kept: true, seen: ["before stop", "after stop"], events: ["log"] });
  await shown("log: before stop");
  await shown("log: after stop");
  await page.context().close();
});

test("an inspector that cannot be loaded is a clear error, and the next call tries again", async () => {
  const { page } = await devicePage();
  // As if a server had copied the base SDK's files but not the inspector's.
  await page.route("**/sdk/tether_inspect_bg.wasm", (route) => route.fulfill({ status: 404, body: "not here" }));
  const first = await page.evaluate(async (url) => {
    window.pc = await tether.connectPc({ url, room: "inspect-missing" });
    const log = console.log;
    const err = await tether.connectDevice({ url, room: "inspect-missing", secret: pc.deviceKey, inspect: true })
      .then(() => null, (e) => ({ code: e.code, message: e.message }));
    return { err, untouched: console.log === log, devices: pc.devices.filter((m) => m.role === "device").length };
  }, relay.ws);
  assert.equal(first.err?.code, "inspect_unavailable");
  assert.match(first.err.message, /^the inspector \(tether_inspect\.js\) could not be loaded: /);
  assert.deepEqual([first.untouched, first.devices], [true, 0], "nothing hooked, nothing connected");

  await page.unroute("**/sdk/tether_inspect_bg.wasm");
  const second = await page.evaluate(async (url) => {
    const log = console.log;
    const d = await tether.connectDevice({ url, room: "inspect-missing", secret: pc.deviceKey, inspect: true });
    const hooked = console.log !== log;
    d.close();
    return { hooked, restored: console.log === log };
  }, relay.ws);
  assert.deepEqual(second, { hooked: true, restored: true });
  await page.context().close();
});
