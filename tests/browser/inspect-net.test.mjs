// The page's own network, as a PC sees it (#18, increments 6 and 7): an app's page on its own
// origin (the fixture's app server: no CSP, /api/echo, /bin, /big, /sse, /ws-echo) connects to
// a real relay as a device with `inspect`; a PC in the room watches with onInspect. Its fetch,
// XMLHttpRequest, sendBeacon, WebSocket and EventSource reach the PC, each within a second,
// while the page's own calls behave exactly as without the inspector.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startRelay, launchBrowser, sdkPage, WAIT } from "./harness.mjs";
import { startAppServer } from "./fixture/app-server.mjs";

// The app's page: the SDK from its own /sdk/, as an H5 page embeds it.
const NET = `<script type="module">
  import * as tether from "/sdk/index.js";
  window.tether = tether;
  window.ready = true;
</script>`;

let browser, relay, app;
before(async () => {
  browser = await launchBrowser();
  relay = await startRelay();
  app = await startAppServer({ pages: { net: NET } });
});
after(async () => {
  await app?.close();
  await relay?.stop();
  await browser?.close();
});

/** A PC in `room` collecting what onInspect gives, each with the time it arrived (`got`). */
async function pcPage(room) {
  const page = await sdkPage(browser, relay);
  await page.evaluate(async ({ url, room }) => {
    window.seen = [];
    window.s = await tether.connectPc({ url, room });
    s.onInspect((e) => seen.push({ ...e, got: Date.now() }));
    window.net = () => seen.filter((e) => e.kind === "network");
  }, { url: relay.ws, room });
  return page;
}

/** The app's page, its SDK loaded; `setup` runs in it before it connects (if `room`). */
async function appPage(pc, room, { inspect = true, setup, url = relay.ws } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("app page error:", e));
  await page.goto(app.origin + "/net.html");
  await page.waitForFunction(() => window.ready, null, { timeout: WAIT });
  await page.evaluate(() => {
    window.unhandled = [];
    addEventListener("unhandledrejection", (e) => unhandled.push(String(e.reason)));
  });
  if (setup) await page.evaluate(setup);
  if (room) {
    const key = await pc.evaluate(() => s.deviceKey);
    await page.evaluate(async ({ url, room, key, inspect }) => {
      window.d = await tether.connectDevice({ url, room, secret: key, name: "phone", inspect });
    }, { url, room, key, inspect });
  }
  return page;
}

/** Waits until `pred` (run in the PC's page, where `net()` lists its network events) is true;
 *  returns those events, and grouped by request or socket (`[[event, …], …]`, in order). */
async function requestsWhen(pc, pred) {
  await pc.waitForFunction(pred, null, { timeout: WAIT });
  const events = await pc.evaluate(() => net());
  const byId = {};
  for (const e of events) (byId[e.id] ??= []).push(e);
  return { events, byId: Object.values(byId) };
}

/** Each event reached the PC within a second of happening on the phone. */
function inTime(events) {
  for (const e of events) assert.ok(e.got - e.at < 1000, `${e.type} ${e.phase} took ${e.got - e.at} ms`);
}

const one = (list, type, url) => {
  const found = list.filter((r) => r[0].type === type && r[0].url === url);
  assert.equal(found.length, 1, `one ${type} of ${url}: ${JSON.stringify(list.map((r) => [r[0].type, r[0].url]))}`);
  return found[0];
};

test("the PC sees the page's fetch, XHR and beacons: method, URL, status, headers, bodies; secrets masked, binary described", async () => {
  const pc = await pcPage("net-http");
  const page = await appPage(pc, "net-http");
  const out = await page.evaluate(async () => {
    const res = await fetch("/api/echo?x=1", {
      method: "POST",
      body: JSON.stringify({ a: 1 }),
      headers: { "content-type": "application/json", "x-page": "set-by-page", authorization: "Bearer SECRET-TOKEN" },
    });
    const echoed = await res.json();
    const xhr = await new Promise((resolve) => {
      const x = new XMLHttpRequest();
      x.open("put", "/api/echo");
      x.setRequestHeader("x-xhr", "yes");
      x.onload = () => resolve(JSON.parse(x.responseText));
      x.send("hello xhr");
    });
    const bin = (await (await fetch("/bin?n=5000")).arrayBuffer()).byteLength;
    const big = (await (await fetch("/big?n=1048576")).text()).length;
    const beacon = navigator.sendBeacon("/api/echo?beacon", "beat");
    return { echoed, xhr, bin, big, beacon };
  });
  // The page got what it asked for, whole.
  assert.deepEqual([out.echoed.method, out.echoed.headers["x-page"], out.echoed.body], ["POST", "set-by-page", '{"a":1}']);
  assert.deepEqual([out.xhr.method, out.xhr.headers["x-xhr"], out.xhr.body], ["PUT", "yes", "hello xhr"]);
  assert.deepEqual([out.bin, out.big, out.beacon], [5000, 1048576, true]);

  const { events, byId } = await requestsWhen(pc, () =>
    net().filter((e) => e.phase === "end").length >= 4 && net().some((e) => e.type === "beacon"));
  inTime(events);
  const o = app.origin;

  const [start, end, ...more] = one(byId, "fetch", `${o}/api/echo?x=1`);
  assert.equal(more.length, 0);
  assert.deepEqual([start.phase, start.method, start.requestBody], ["start", "POST", '{"a":1}']);
  assert.deepEqual(start.requestHeaders, [["authorization", "‹redacted 19 chars›"], ["content-type", "application/json"],
    ["x-page", "set-by-page"]], "the page's own headers, authorization masked");
  assert.ok(!JSON.stringify(start).includes("SECRET-TOKEN"), "the token never left in a header");
  assert.deepEqual([end.phase, end.id, end.status, end.statusText], ["end", start.id, 200, "OK"]);
  assert.ok(end.responseHeaders.some(([k, v]) => k === "x-echo" && v === "1"), JSON.stringify(end.responseHeaders));
  assert.equal(JSON.parse(end.responseBody).headers["x-page"], "set-by-page", "the response body as text");
  assert.ok(Number.isInteger(end.ms) && end.ms >= 0 && end.ms < 5000, `ms ${end.ms}`);

  const xhr = one(byId, "xhr", `${o}/api/echo`);
  assert.deepEqual(xhr.map((e) => e.phase), ["start", "end"], "two events per XHR, never one per readystatechange");
  assert.deepEqual([xhr[0].method, xhr[0].requestHeaders, xhr[0].requestBody], ["PUT", [["x-xhr", "yes"]], "hello xhr"]);
  assert.deepEqual([xhr[1].status, JSON.parse(xhr[1].responseBody).body], [200, "hello xhr"]);

  const bin = one(byId, "fetch", `${o}/bin?n=5000`);
  assert.deepEqual(bin[1].responseBody, { $: "bin", type: "application/octet-stream", len: 5000 }, "binary: described, not read");

  const big = one(byId, "fetch", `${o}/big?n=1048576`);
  assert.deepEqual(big[1].responseBody, { $: "str", head: "a".repeat(16384) }, "a long text: its head, read no further");

  const beacon = one(byId, "beacon", `${o}/api/echo?beacon`);
  assert.equal(beacon.length, 1, "a beacon is one event");
  assert.deepEqual([beacon[0].phase, beacon[0].method, beacon[0].requestBody, beacon[0].queued], ["start", "POST", "beat", undefined]);

  assert.equal(new Set(byId.map((r) => r[0].id)).size, byId.length, "one id per request");
  assert.deepEqual(await page.evaluate(() => unhandled), []);
  await page.evaluate(() => d.close());
  await Promise.all([page.context().close(), pc.context().close()]);
});

test("the PC sees WebSockets and EventSources both ways, named events included; the SDK's own socket never", async () => {
  const pc = await pcPage("net-sockets");
  // The relay's URL as a person may type it, not as the browser writes it (`/./ws`): the SDK's
  // own socket must be known all the same (its URL carries the device key).
  const page = await appPage(pc, "net-sockets", { url: relay.ws.replace(/\/ws$/, "/./ws") });
  const wsUrl = app.origin.replace("http", "ws") + "/ws-echo";
  const out = await page.evaluate(async (wsUrl) => {
    const ws = new WebSocket(wsUrl);
    ws.binaryType = "arraybuffer";
    await new Promise((r) => { ws.onopen = r; });
    const got = new Promise((resolve) => {
      const list = [];
      ws.onmessage = (e) => { list.push(typeof e.data === "string" ? e.data : [...new Uint8Array(e.data)]); if (list.length === 2) resolve(list); };
    });
    ws.send("ping");
    ws.send(new Uint8Array([1, 2, 3]));
    const echoes = await got;
    const closed = new Promise((r) => { ws.onclose = (e) => r([e.code, e.reason]); });
    ws.close(1000, "done");
    const es = new EventSource("/sse");
    const sse = await new Promise((resolve) => {
      const list = [];
      const add = (e) => { list.push([e.type, e.data]); if (list.length === 2) resolve(list); };
      es.onmessage = add;
      es.addEventListener("tick", add);
    });
    es.close();
    const Native = { ws: Object.getPrototypeOf(WebSocket), es: Object.getPrototypeOf(EventSource) };
    return {
      echoes, sse, closed: await closed,
      kept: [ws instanceof WebSocket, ws instanceof Native.ws, es instanceof Native.es, WebSocket.OPEN, EventSource.CLOSED,
        WebSocket.name, EventSource.name],
    };
  }, wsUrl);
  assert.deepEqual(out.echoes, ["ping", [1, 2, 3]]);
  assert.deepEqual(out.closed, [1000, "done"]);
  assert.deepEqual(out.sse.sort(), [["message", "hello"], ["tick", "1"]]);
  assert.deepEqual(out.kept, [true, true, true, 1, 2, "WebSocket", "EventSource"], "instanceof and statics kept");

  const { events, byId } = await requestsWhen(pc, () =>
    net().some((e) => e.type === "ws" && e.phase === "close") && net().some((e) => e.type === "sse" && e.phase === "close"));
  inTime(events);
  const strip = (e) => Object.fromEntries(Object.entries(e).filter(([k]) => !["device", "kind", "at", "n", "id", "type", "got"].includes(k)));
  const ws = one(byId, "ws", wsUrl);
  assert.deepEqual(ws.map(strip), [
    { phase: "start", url: wsUrl },
    { phase: "open" },
    { phase: "message", dir: "send", data: "ping" },
    { phase: "message", dir: "send", data: { $: "bin", type: "Uint8Array", len: 3 } },
    { phase: "message", dir: "recv", data: "ping" },
    { phase: "message", dir: "recv", data: { $: "bin", type: "ArrayBuffer", len: 3 } },
    { phase: "close", code: 1000, reason: "done" },
  ]);
  const sse = one(byId, "sse", `${app.origin}/sse`);
  assert.deepEqual(sse.map(strip), [
    { phase: "start", url: `${app.origin}/sse` },
    { phase: "open" },
    { phase: "message", event: "message", data: "hello" },
    { phase: "message", event: "tick", data: "1" },
    { phase: "close" },
  ]);
  // The SDK's own socket (to the relay's /ws, made through the page's WebSocket) is not there.
  assert.ok(events.every((e) => !e.url || new URL(e.url).host !== relay.addr), JSON.stringify(events.map((e) => e.url)));
  assert.ok(await page.evaluate(() => d.status === "linked"), "and it still works");
  await page.evaluate(() => d.close());
  await Promise.all([page.context().close(), pc.context().close()]);
});

test("the page's fetch is untouched: the very Response, an unread body; failures its own, unhandled only when the page left them so", async () => {
  const pc = await pcPage("net-untouched");
  // The page (or a tool before us) wrapped fetch and keeps every promise it returns.
  const page = await appPage(pc, "net-untouched", {
    setup: () => {
      const native = window.fetch;
      window.returned = [];
      window.fetch = function (...args) { const p = native.apply(this, args); returned.push(p); return p; };
    },
  });
  const out = await page.evaluate(async () => {
    const p = fetch("/api/echo?same");
    const res = await p;
    const same = res === await returned.at(-1);
    const unread = res.bodyUsed === false;
    const body = await res.json();
    const failed = await fetch("http://127.0.0.1:1/nothing").then(() => "resolved", (e) => e.name);
    // An event stream is never read: the page's own reading still works, and it can stop it.
    const stop = new AbortController();
    const stream = await fetch("/sse", { signal: stop.signal });
    const reader = stream.body.getReader();
    const first = new TextDecoder().decode((await reader.read()).value).slice(0, 13);
    stop.abort();
    const x = new XMLHttpRequest();
    x.open("GET", "/hold/never");
    x.send();
    x.abort();
    await new Promise((r) => setTimeout(r, 50)); // a tick for any unhandled rejection to be raised
    return { same, unread, method: body.method, failed, first };
  });
  assert.deepEqual(out, { same: true, unread: true, method: "GET", failed: "TypeError", first: "data: hello\n\n" });
  const { byId } = await requestsWhen(pc, () => net().filter((e) => e.phase === "end" || e.phase === "error").length >= 4);
  const o = app.origin;
  const failed = one(byId, "fetch", "http://127.0.0.1:1/nothing");
  assert.deepEqual([failed[1].phase, failed[1].message], ["error", "Failed to fetch"]);
  const stream = one(byId, "fetch", `${o}/sse`);
  assert.deepEqual(stream[1].responseBody, { $: "bin", type: "text/event-stream" });
  const aborted = one(byId, "xhr", `${o}/hold/never`);
  assert.deepEqual(aborted.map((e) => [e.phase, e.message]), [["start", undefined], ["error", "abort"]]);
  assert.deepEqual(await page.evaluate(() => unhandled), [], "our side chains raised nothing");
  // A failed fetch the page never handles raises `unhandledrejection` as it would without us
  // (watching the original promise would have marked it handled), once, with its own error.
  await page.evaluate(() => { fetch("http://127.0.0.1:1/unhandled"); });
  await page.waitForFunction(() => unhandled.length > 0, null, { timeout: WAIT });
  assert.deepEqual(await page.evaluate(() => unhandled), ["TypeError: Failed to fetch"]);
  await page.evaluate(() => d.close());
  await Promise.all([page.context().close(), pc.context().close()]);
});

test("network: false hooks nothing; close() restores fetch, XMLHttpRequest, sendBeacon, WebSocket and EventSource", async () => {
  const pc = await pcPage("net-restore");
  const page = await appPage(pc, null);
  const key = await pc.evaluate(() => s.deviceKey);
  const out = await page.evaluate(async ({ url, key }) => {
    const X = XMLHttpRequest.prototype;
    const now = () => [fetch, X.open, X.setRequestHeader, X.send, navigator.sendBeacon, WebSocket, EventSource];
    const before = now();
    const same = () => now().map((f, i) => f === before[i]);
    const off = await tether.connectDevice({ url, room: "net-restore", secret: key, inspect: { network: false } });
    const withOff = same();
    off.close();
    const on = await tether.connectDevice({ url, room: "net-restore", secret: key, inspect: true });
    const withOn = same();
    // Another tool wraps fetch after us: when we stop, it stays, and ours passes through.
    const ours = window.fetch;
    const tool = function (...args) { return ours.apply(this, args); };
    window.fetch = tool;
    on.close();
    const after = same();
    const kept = window.fetch === tool;
    const res = await fetch("/api/echo?after");
    window.fetch = before[0];
    return { withOff, withOn, after, kept, status: res.status };
  }, { url: relay.ws, key });
  assert.deepEqual(out.withOff, [true, true, true, true, true, true, true]);
  assert.deepEqual(out.withOn, [false, false, false, false, false, false, false]);
  assert.deepEqual(out.after, [false, true, true, true, true, true, true], "all back but the tool's fetch");
  assert.deepEqual([out.kept, out.status], [true, 200]);
  await Promise.all([page.context().close(), pc.context().close()]);
});

test("the SDK's own socket is never captured when it reconnects through the page's WebSocket, with the relay's URL as a person typed it", async () => {
  // A relay of its own, to restart: the SDK's first socket is made before the hooks are in; its
  // next one, after the relay came back, is made through the page's (hooked) WebSocket.
  let own = await startRelay();
  const pc = await sdkPage(browser, own);
  await pc.evaluate(async ({ url }) => {
    window.seen = [];
    window.s = await tether.connectPc({ url, room: "net-own" });
    s.onInspect((e) => seen.push(e));
  }, { url: own.ws });
  const key = await pc.evaluate(() => s.deviceKey);
  const page = await browser.newPage();
  await page.goto(app.origin + "/net.html");
  await page.waitForFunction(() => window.ready, null, { timeout: WAIT });
  // Not as the browser writes it (`/./ws`): the inspector must know it all the same.
  await page.evaluate(async ({ url, key }) => {
    window.d = await tether.connectDevice({ url, room: "net-own", secret: key, inspect: true });
  }, { url: own.ws.replace(/\/ws$/, "/./ws"), key });
  await own.stop();
  own = await startRelay({ listen: own.addr, db: own.db });
  await page.waitForFunction(() => d.status === "linked", null, { timeout: 3 * WAIT });
  await pc.waitForFunction(() => s.status === "linked", null, { timeout: 3 * WAIT });
  await page.evaluate(() => fetch("/api/echo?after-reconnect"));
  await pc.waitForFunction(() => seen.some((e) => e.url?.endsWith("?after-reconnect")), null, { timeout: 3 * WAIT });
  // The page made one request since; nothing else of the network is its (the SDK's socket,
  // its open, its frames, would be "ws" events, most of them without a URL).
  const net = await pc.evaluate(() => seen.filter((e) => e.kind === "network").map((e) => [e.type, e.phase, e.url ?? ""]));
  assert.ok(net.length > 0 && net.every(([type, , url]) => type === "fetch" && !url.includes(own.addr)), JSON.stringify(net));
  await page.evaluate(() => d.close());
  await Promise.all([page.close(), pc.context().close()]);
  await own.stop();
});
