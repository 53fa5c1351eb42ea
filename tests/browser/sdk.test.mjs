// The SDK in a real browser against a real relay: post/call between a PC page and a device
// page, restarts, giving up, and typed errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startRelay, launchBrowser, sdkPage, mockTencentNews, countSockets, WAIT } from "./harness.mjs";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

async function connectPair(relay, room) {
  const pc = await sdkPage(browser, relay, { initScript: countSockets });
  await pc.evaluate(async ({ url, room }) => {
    window.statuses = [];
    window.replies = [];
    window.s = await tether.connectPc({ url, room, retries: 3, retryDelayMs: 300 });
    s.onStatus((st) => statuses.push(st));
    s.onReply((r) => replies.push(r));
  }, { url: relay.ws, room });
  const secret = await pc.evaluate(() => s.secret);
  assert.match(secret, /^[0-9a-f]{32}$/, "a random 128-bit secret");
  // The phone joins with the device key the QR link carries, never the PC secret.
  const deviceKey = await pc.evaluate(() => s.deviceKey);
  assert.match(deviceKey, /^dk\.[A-Za-z0-9_-]{22}$/);
  const device = await sdkPage(browser, relay, { initScript: mockTencentNews });
  await device.evaluate(async ({ url, room, deviceKey }) => {
    window.statuses = [];
    window.log = [];
    window.d = await tether.connectDevice({ url, room, secret: deviceKey, name: "Mock phone", appInfo: { app: "news", v: "7.2" } });
    d.onStatus((st) => statuses.push(st));
    d.onCommand((e) => log.push(e));
  }, { url: relay.ws, room, deviceKey });
  const deviceId = await device.evaluate(() => d.member);
  await pc.waitForFunction((id) => s.devices.some((m) => m.id === id && m.name === "Mock phone" && !m.away),
    deviceId, { timeout: WAIT });
  return { pc, device, deviceId, secret };
}

test("post and call go through the device's native bridge and come back", async () => {
  const relay = await startRelay();
  try {
    const { pc, device, deviceId } = await connectPair(relay, "round-trip");
    const reply = await pc.evaluate(() => s.post("https://api.example/answer?qID=5", { body: { a: 1 }, method: "POST" }));
    assert.equal(reply.type, "postCb");
    assert.equal(reply.device, deviceId);
    assert.deepEqual(reply.result, { code: 0, url: "https://api.example/answer?qID=5", body: { a: 1 }, method: "POST" });
    assert.equal(reply.cookie, "uid=42");
    assert.deepEqual(reply.appInfo, { app: "news", v: "7.2" });
    assert.ok(reply.ms >= 0 && reply.ms < WAIT);

    const call = await pc.evaluate(() => s.call("login", ["qqorweixin"]));
    assert.equal(call.type, "callCb");
    assert.deepEqual(call.result, { method: "login", args: ["qqorweixin"] });

    // The device saw both, in its log, through the native bridge.
    const native = await device.evaluate(() => window.nativeCalls.map((c) => c.api));
    assert.deepEqual(native, ["post", "invoke"]);
    const log = await device.evaluate(() => log.map((e) => `${e.type}:${e.state}`));
    assert.deepEqual(log, ["post:running", "post:done", "call:running", "call:done"]);

    // Local history, newest first; server history has both pairs.
    const local = await pc.evaluate(() => s.history().map((h) => `${h.type} ${h.target}`));
    assert.deepEqual(local, ["call login", "post https://api.example/answer?qID=5"]);
    const server = await pc.evaluate(() => s.serverHistory({ limit: 10 }));
    assert.deepEqual(server.map((h) => h.type), ["call", "post"]);
    assert.equal(server[1].cookie, "uid=42");
    assert.equal(await pc.evaluate(() => replies.length), 2, "onReply saw both replies");

    // The QR link carries the room and its device key, not the PC secret; the key cannot
    // join as a PC.
    const link = await pc.evaluate(() => s.deviceLink());
    assert.equal(link, `${relay.http}/d/round-trip?secret=${await pc.evaluate(() => s.deviceKey)}`);
    assert.ok(!link.includes(await pc.evaluate(() => s.secret)));
    const asPc = await device.evaluate(({ url, key }) =>
      tether.connectPc({ url, room: "round-trip", secret: key, retries: 0 }).then(() => "joined", (e) => e.code),
    { url: relay.ws, key: await pc.evaluate(() => s.deviceKey) });
    assert.equal(asPc, "unauthorized");
  } finally {
    await relay.stop();
  }
});

test("both ends come back with their member ids after the relay restarts, and no reply is lost", async () => {
  const relay = await startRelay();
  const { pc, device, deviceId } = await connectPair(relay, "restart");
  const pcId = await pc.evaluate(() => s.member);
  // A request the app is still working on when the relay stops.
  await device.evaluate(() => { window.holdNative = true; });
  await pc.evaluate(() => {
    window.slow = s.post("https://api.example/slow", { timeoutMs: 60000 }).catch((e) => ({ error: e.code }));
  });
  await device.waitForFunction(() => typeof window.release === "function", null, { timeout: WAIT });
  await relay.stop("SIGTERM");
  await pc.waitForFunction(() => statuses.includes("reconnecting"), null, { timeout: WAIT });
  await device.waitForFunction(() => statuses.includes("reconnecting"), null, { timeout: WAIT });
  // The app answers while the relay is down: the SDK keeps the reply until it is back.
  await device.evaluate(() => { window.holdNative = false; window.release(); });
  const again = await startRelay({ listen: relay.addr, db: relay.db });
  try {
    const slow = await pc.evaluate(() => window.slow);
    assert.equal(slow.result?.url, "https://api.example/slow", JSON.stringify(slow));
    assert.equal(slow.device, deviceId);
    await pc.waitForFunction(() => statuses.at(-1) === "linked", null, { timeout: WAIT });
    await device.waitForFunction(() => statuses.at(-1) === "linked", null, { timeout: WAIT });
    assert.deepEqual(await pc.evaluate(() => statuses), ["linked", "reconnecting", "linked"]);
    assert.equal(await pc.evaluate(() => s.member), pcId);
    assert.equal(await device.evaluate(() => d.member), deviceId);
    await pc.waitForFunction((id) => s.devices.some((m) => m.id === id && !m.away), deviceId, { timeout: WAIT });
    const reply = await pc.evaluate((to) => s.post("https://api.example/after", { to }), deviceId);
    assert.equal(reply.result.url, "https://api.example/after");
  } finally {
    await again.stop();
  }
});

test("with the relay kept down, the status ends unlink after 3 retries", async () => {
  const relay = await startRelay();
  const pc = await sdkPage(browser, relay, { initScript: countSockets });
  await pc.evaluate(async ({ url }) => {
    window.statuses = [];
    window.errors = [];
    window.s = await tether.connectPc({ url, room: "down", retries: 3, retryDelayMs: 100 });
    s.onStatus((st) => statuses.push(st));
    s.onError((e) => errors.push(e.code));
  }, { url: relay.ws });
  await relay.stop("SIGKILL");
  await pc.waitForFunction(() => statuses.at(-1) === "unlink", null, { timeout: WAIT });
  assert.deepEqual(await pc.evaluate(() => statuses), ["linked", "reconnecting", "unlink"]);
  assert.equal(await pc.evaluate(() => socketsOpened), 1 + 3, "the first connection and three retries");
  assert.deepEqual(await pc.evaluate(() => errors), ["disconnected"]);
  const err = await pc.evaluate(() => s.post("https://x/").catch((e) => ({ code: e.code, message: e.message, isError: e instanceof Error })));
  assert.deepEqual({ code: err.code, isError: err.isError }, { code: "disconnected", isError: true });

  // The network comes back ("online"): a fresh round of retries finds the restarted relay,
  // and the member keeps its id.
  const member = await pc.evaluate(() => s.member);
  const again = await startRelay({ listen: relay.addr, db: relay.db });
  try {
    await pc.evaluate(() => window.dispatchEvent(new Event("online")));
    await pc.waitForFunction(() => statuses.at(-1) === "linked", null, { timeout: WAIT });
    assert.deepEqual(await pc.evaluate(() => statuses), ["linked", "reconnecting", "unlink", "reconnecting", "linked"]);
    assert.equal(await pc.evaluate(() => s.member), member);
  } finally {
    await again.stop();
  }
});

test("typed errors: no device, wrong secret, timeout", async () => {
  const relay = await startRelay();
  try {
    const pc = await sdkPage(browser, relay);
    const noDevice = await pc.evaluate(async (url) => {
      window.s = await tether.connectPc({ url, room: "empty" });
      return s.post("https://x/").then(() => "resolved", (e) => ({ code: e.code, message: e.message }));
    }, relay.ws);
    assert.equal(noDevice.code, "no_target");
    assert.match(noDevice.message, /no device/);

    const intruder = await sdkPage(browser, relay);
    const refused = await intruder.evaluate((url) =>
      tether.connectDevice({ url, room: "empty", secret: "guess" }).then(() => "joined", (e) => e.code), relay.ws);
    assert.equal(refused, "unauthorized");

    // A PC that mistypes the secret is refused, and the good secret it kept is not replaced.
    const kept = await pc.evaluate(() => localStorage.getItem("tether.secret.empty"));
    assert.equal(kept, await pc.evaluate(() => s.secret));
    const typo = await pc.evaluate((url) =>
      tether.connectPc({ url, room: "empty", secret: "typo", retries: 0 }).then(() => "joined", (e) => e.code), relay.ws);
    assert.equal(typo, "unauthorized");
    assert.equal(await pc.evaluate(() => localStorage.getItem("tether.secret.empty")), kept);

    // A device whose app never answers: the PC's request times out on both sides.
    const secret = await pc.evaluate(() => s.secret);
    const silent = await sdkPage(browser, relay);
    await silent.evaluate(async ({ url, secret }) => {
      window.d = await tether.connectDevice({ url, room: "empty", secret, onPost: () => new Promise(() => {}) });
    }, { url: relay.ws, secret });
    await pc.waitForFunction(() => s.devices.some((m) => m.role === "device"), null, { timeout: WAIT });
    const timedOut = await pc.evaluate(() => s.post("https://x/slow", { timeoutMs: 300 }).then(() => "resolved", (e) => e.code));
    assert.equal(timedOut, "timeout");
  } finally {
    await relay.stop();
  }
});

test("other bridge shapes: postData with named callbacks, direct methods, page handlers, none", async () => {
  const relay = await startRelay();
  try {
    const pc = await sdkPage(browser, relay);
    await pc.evaluate(async (url) => { window.s = await tether.connectPc({ url, room: "shapes" }); }, relay.ws);
    const secret = await pc.evaluate(() => s.secret);
    const join = async (page, extra) => {
      await page.evaluate(async ({ url, secret, extra }) => {
        window.d = await tether.connectDevice({ url, room: "shapes", secret, ...extra });
      }, { url: relay.ws, secret, extra });
      return page.evaluate(() => d.member);
    };

    // The seed's second native API: postData(url, bodyString, okCallbackName, errorCallbackName),
    // and a bridge whose JS-APIs are plain methods (no invoke).
    const legacy = await sdkPage(browser, relay, { initScript: () => {
      window.TencentNews = {
        postData(url, body, ok, err) { setTimeout(() => window[ok]({ via: "postData", url, body: JSON.parse(body) }), 5); },
        login(type, cb) { cb({ loggedIn: type }); },
      };
    } });
    const legacyId = await join(legacy, {});
    const viaPostData = await pc.evaluate((to) => s.post("https://x/pd", { to, body: { q: 1 } }), legacyId);
    assert.deepEqual(viaPostData.result, { via: "postData", url: "https://x/pd", body: { q: 1 } });
    const leftovers = await legacy.evaluate(() => Object.keys(window).filter((k) => k.startsWith("__tether_")));
    assert.deepEqual(leftovers, [], "the named callbacks are removed once used");
    const direct = await pc.evaluate((to) => s.call("login", ["qq"], { to }), legacyId);
    assert.deepEqual(direct.result, { loggedIn: "qq" });

    // A normal browser page that answers by itself, set after connecting.
    const handled = await sdkPage(browser, relay);
    const handledId = await join(handled, { name: "handlers" });
    await handled.evaluate(() => {
      d.onPost((req) => ({ handled: req.url, method: req.method ?? null }));
      d.onCall((method, params) => Promise.resolve({ method, params }));
    });
    const p = await pc.evaluate((to) => s.post("https://x/h", { to, method: "GET" }), handledId);
    assert.deepEqual(p.result, { handled: "https://x/h", method: "GET" });
    const c = await pc.evaluate((to) => s.call("share", [{ title: "t" }, 2], { to }), handledId);
    assert.deepEqual(c.result, { method: "share", params: [{ title: "t" }, 2] });

    // No bridge at all: the PC hears why, instead of waiting for a timeout.
    const bare = await sdkPage(browser, relay);
    const bareId = await join(bare, {});
    const none = await pc.evaluate((to) => s.post("https://x/none", { to }), bareId);
    assert.equal(none.result, null);
    assert.match(none.error.message, /no native bridge: window\.TencentNews/);
  } finally {
    await relay.stop();
  }
});

test("a call reaches only the bridge's own JS-APIs, by a plain name; the bridge option is a plain name", async () => {
  const relay = await startRelay();
  try {
    const pc = await sdkPage(browser, relay);
    await pc.evaluate(async (url) => { window.s = await tether.connectPc({ url, room: "own-apis" }); }, relay.ws);
    const secret = await pc.evaluate(() => s.secret);

    // The bridge is the page's setting, and only ever a plain global name.
    const bare = await sdkPage(browser, relay);
    for (const bridge of ["window", "globalThis", "self", "eval", "document", "TencentNews.invoke", "constructor"]) {
      const code = await bare.evaluate(({ url, secret, bridge }) =>
        tether.connectDevice({ url, room: "own-apis", secret, bridge }).then(() => "connected", (e) => e.code), { url: relay.ws, secret, bridge });
      assert.equal(code, "bad_option", `bridge ${bridge} must be refused`);
    }

    // A bridge of plain methods (no invoke), one from its own prototype (a bridge built by a
    // class), one behind a getter.
    const direct = await sdkPage(browser, relay, { initScript: () => {
      const proto = { inherited(_arg, cb) { window.ran = "inherited"; cb("inherited ran"); } };
      window.TencentNews = Object.assign(Object.create(proto), { login(type, cb) { cb({ loggedIn: type }); } });
      Object.defineProperty(window.TencentNews, "sneaky", { get() { window.ran = "getter"; return (cb) => cb("getter ran"); } });
    } });
    await direct.evaluate(async ({ url, secret }) => {
      window.d = await tether.connectDevice({ url, room: "own-apis", secret, name: "direct" });
    }, { url: relay.ws, secret });
    const directId = await direct.evaluate(() => d.member);
    const calls = (to, names) => pc.evaluate(({ to, names }) => Promise.all(names.map((m) =>
      s.call(m, ["window.ran = 'eval'"], { to, timeoutMs: 3000 }).then((r) => r.error?.message ?? r.result, (e) => `rejected: ${e.code}`))),
    { to, names });
    const refused = ["toString", "valueOf", "constructor", "__proto__", "hasOwnProperty", "__defineGetter__", "eval",
      "sneaky", "login.call", "constructor.constructor", "", "a b"];
    const answers = await calls(directId, [...refused, "inherited", "login"]);
    for (const [i, name] of refused.entries()) assert.match(String(answers[i]), /^refused: /, `call(${JSON.stringify(name)}): ${answers[i]}`);
    assert.match(answers[0], /"toString" is not a JS-API name/);
    assert.match(answers[7], /has neither invoke nor sneaky/, "a getter is never run");
    assert.match(answers[11], /"a b" is not a JS-API name/);
    assert.equal(answers.at(-2), "inherited ran", "a method of the bridge's own prototype is its API");
    assert.deepEqual(answers.at(-1), { loggedIn: "window.ran = 'eval'" });
    assert.equal(await direct.evaluate(() => window.ran), "inherited", "nothing but inherited and login ran on the page");

    // An invoke-style bridge gets the name as data, and only a plain one.
    const invoking = await sdkPage(browser, relay, { initScript: mockTencentNews });
    await invoking.evaluate(async ({ url, secret }) => {
      window.d = await tether.connectDevice({ url, room: "own-apis", secret, name: "invoke" });
    }, { url: relay.ws, secret });
    const invokeId = await invoking.evaluate(() => d.member);
    const viaInvoke = await calls(invokeId, ["a.b", "constructor", "__proto__", "getAppInfo"]);
    for (const a of viaInvoke.slice(0, 3)) assert.match(String(a), /^refused: .* is not a JS-API name/);
    assert.equal(viaInvoke[3].method, "getAppInfo");
    const seen = await invoking.evaluate(() => window.nativeCalls.map((c) => c.method));
    assert.deepEqual(seen, ["getAppInfo"], "only the plain name reached invoke");
  } finally {
    await relay.stop();
  }
});

test("subscribeAlarms: live alarms, and after a relay restart it resumes by itself", async () => {
  const { createSocket } = await import("node:dgram");
  const udp = createSocket("udp4");
  await new Promise((r) => udp.bind(0, "127.0.0.1", r));
  const port = udp.address().port; // a free port for the relay's --alarm-listen
  udp.close();
  // The page holds no CS session: this relay opens /alarms on purpose.
  const args = ["--alarm-listen", `127.0.0.1:${port}`, "--alarms-public"];
  const relay = await startRelay({ args });
  const sender = createSocket("udp4");
  const send = (obj) => new Promise((r) => sender.send(JSON.stringify(obj), port, "127.0.0.1", r));
  const subscribers = async (http, n) => {
    const deadline = Date.now() + WAIT;
    while (!(await (await fetch(`${http}/metrics`)).text()).includes(`tether_alarm_subscribers ${n}\n`)) {
      if (Date.now() > deadline) throw new Error(`never ${n} alarm subscribers`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const page = await sdkPage(browser, relay);
  await page.evaluate(async (url) => {
    window.alarms = [];
    window.sub = await tether.subscribeAlarms({ url }, (f) => alarms.push(f));
  }, relay.ws);
  await subscribers(relay.http, 1);
  await send({ n: 1 });
  await send({ n: 2 });
  await page.waitForFunction(() => alarms.length === 2, null, { timeout: WAIT });
  const [a, b] = await page.evaluate(() => alarms);
  assert.deepEqual([a.type, a.msg.data, b.msg.data], ["alarm", { n: 1 }, { n: 2 }]);
  assert.ok(b.msg.seq > a.msg.seq);
  assert.equal(await page.evaluate(() => sub.lastSeq), b.msg.seq);

  await relay.stop();
  const again = await startRelay({ listen: relay.addr, db: relay.db, args });
  try {
    await subscribers(again.http, 1); // the SDK came back by itself
    await send({ n: 3 });
    await page.waitForFunction(() => alarms.some((f) => f.msg?.data?.n === 3), null, { timeout: WAIT });
    const c = await page.evaluate(() => alarms.find((f) => f.msg?.data?.n === 3));
    assert.ok(c.msg.seq > b.msg.seq, "seqs keep growing across the restart");
    await page.evaluate(() => sub.close());
    await subscribers(again.http, 0);
  } finally {
    sender.close();
    await again.stop();
  }
});
