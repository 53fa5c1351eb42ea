// The pages a developer uses, end to end in Chromium: the PC page and the device page served
// by a real relay, the QR code read back from a screenshot, screenshots saved for people.
// Over 500 lines: one test per thing a developer does with the two pages, sharing one relay.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ROOT, startRelay, launchBrowser, mockTencentNews, WAIT } from "./harness.mjs";

const ARTIFACTS = join(ROOT, "test-artifacts");
const WWW = join(ROOT, "www", "dist");
const DESKTOP = { width: 1440, height: 900 };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36" };

let browser;
before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await launchBrowser();
});
after(async () => { await browser?.close(); });

const statusIs = (page, status) =>
  page.waitForFunction((s) => document.querySelector('[data-testid="status"]')?.dataset.status === s, status, { timeout: WAIT });
const textOf = (page, testid) => page.getByTestId(testid).innerText();
const waitText = (page, testid, text) =>
  page.waitForFunction(([id, t]) => document.querySelector(`[data-testid="${id}"]`)?.innerText.includes(t), [testid, text], { timeout: WAIT });

/** Does `action`, which reloads the page, and waits until the new page is linked. */
async function reloadedBy(page, action) {
  await Promise.all([page.waitForEvent("framenavigated"), action()]);
  await statusIs(page, "linked");
}

/** Records every Content-Security-Policy violation on the page (an init script). */
function watchCsp() {
  window.cspViolations = [];
  document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
}

/** Fails on any CSP violation the page saw or logged. */
async function assertNoCspViolation(page, what, consoleErrors) {
  assert.deepEqual(await page.evaluate(() => window.cspViolations), [], `${what}: CSP violations`);
  assert.deepEqual(consoleErrors.filter((m) => /Content Security Policy/i.test(m)), [], `${what}: CSP errors in the console`);
}

/** Console messages of a page, to look for CSP reports in. */
function consoleOf(page) {
  const messages = [];
  page.on("console", (m) => messages.push(m.text()));
  return messages;
}

/** Another origin the simulated bridge may fetch: answers JSON saying whether cookies came along. */
async function otherOrigin() {
  const { createServer } = await import("node:http");
  const seen = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url, cookie: req.headers.cookie ?? null });
    res.writeHead(200, { "content-type": "application/json", "access-control-allow-origin": "*" });
    res.end(JSON.stringify({ ok: true, path: req.url }));
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => new Promise((r) => server.close(r)) };
}

/** Reads the QR code shown on the PC page, from a screenshot, as a phone's camera would. */
async function scanQr(page, name) {
  const png = join(ARTIFACTS, name);
  await page.getByTestId("qr").screenshot({ path: png });
  // stderr is captured: zbarimg complains about D-Bus, harmlessly, where none runs.
  return execFileSync("zbarimg", ["--quiet", "--raw", png], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

test("PC page and device page: QR, devices, post, call, history, reload", async () => {
  const relay = await startRelay({ www: WWW });
  try {
    const pcContext = await browser.newContext({ viewport: DESKTOP });
    await pcContext.addInitScript(watchCsp);
    const pc = await pcContext.newPage();
    const pcConsole = consoleOf(pc);
    pc.on("pageerror", (e) => assert.fail(`PC page error: ${e}`));
    await pc.goto(relay.http + "/");
    await pc.getByTestId("room-input").fill("news-debug");
    await pc.getByTestId("connect").click();
    await statusIs(pc, "linked");

    assert.equal(await pc.locator("#alarms-card").isHidden(), true, "no alarm source: no alarms panel");
    const link = await scanQr(pc, "qr.png");
    // The QR code carries the device key, never the PC secret.
    assert.match(link, new RegExp(`^${relay.http}/d/news-debug\\?secret=dk\\.[A-Za-z0-9_-]{22}$`));

    const phoneContext = await browser.newContext(PHONE);
    await phoneContext.addInitScript(mockTencentNews);
    await phoneContext.addInitScript(watchCsp);
    const phone = await phoneContext.newPage();
    const phoneConsole = consoleOf(phone);
    phone.on("pageerror", (e) => assert.fail(`device page error: ${e}`));
    await phone.goto(link);
    await statusIs(phone, "linked");
    assert.match(await textOf(phone, "bridge"), /Native bridge window\.TencentNews found/);

    await waitText(pc, "device-list", "Android · TencentNews");
    assert.match(await textOf(pc, "device-list"), /online/);

    // A request through the phone's "native" network stack.
    await pc.getByTestId("post-url").fill("https://api.example/v1/answer?qID=506336");
    await pc.getByTestId("post-body").fill('{"a": 1}');
    await pc.getByTestId("post-send").click();
    await waitText(pc, "result", "uid=42");
    const result = await textOf(pc, "result");
    assert.match(result, /POST https:\/\/api\.example\/v1\/answer\?qID=506336/);
    assert.match(result, /Android · TencentNews/);
    assert.match(result, /\d+ ms/);
    await waitText(phone, "log", "done");

    // A JS-API call.
    await pc.locator('[data-tab="call"]').click();
    await pc.getByTestId("call-method").fill("login");
    await pc.getByTestId("call-params").fill('["qqorweixin"]');
    await pc.getByTestId("call-send").click();
    await waitText(pc, "result", "login(\"qqorweixin\")");
    await pc.waitForFunction(() => document.querySelectorAll(".result-card:not(.pending) .reply").length === 2, null, { timeout: WAIT });

    // Both in the recent history and in the relay's stored history.
    const recent = await textOf(pc, "history-recent");
    assert.match(recent, /login/);
    assert.match(recent, /api\.example/);
    await pc.locator('[data-htab="server"]').click();
    await pc.waitForFunction(() => document.querySelectorAll('[data-testid="history-server"] > li > details').length === 2, null, { timeout: WAIT });

    // Run again from history: one click.
    await pc.locator('[data-htab="recent"]').click();
    await pc.getByTestId("history-recent").getByText("login").click();
    await pc.waitForFunction(() => document.querySelectorAll(".result-card:not(.pending) .reply").length === 3, null, { timeout: WAIT });

    await pc.screenshot({ path: join(ARTIFACTS, "pc-desktop.png"), fullPage: true });
    await phone.screenshot({ path: join(ARTIFACTS, "device-phone.png"), fullPage: true });

    // A reload keeps the room, its secret, and so the device.
    await pc.reload();
    await statusIs(pc, "linked");
    assert.equal(await pc.getByTestId("room-input").inputValue(), "news-debug");
    await waitText(pc, "device-list", "Android · TencentNews");
    assert.equal(await scanQr(pc, "qr-after-reload.png"), link);

    // The app's scheme wraps the link; the QR code carries the wrapped one.
    await pc.locator("#scheme-box summary").click();
    await pc.getByTestId("scheme").fill("newsapp://open?url={url}");
    await pc.getByTestId("scheme").press("Enter");
    await pc.getByTestId("scheme").blur();
    await waitText(pc, "device-link", "newsapp://");
    assert.equal(await scanQr(pc, "qr-scheme.png"), `newsapp://open?url=${encodeURIComponent(link)}`);

    // Both pages worked under the relay's Content-Security-Policy (wasm, WebSockets, styles,
    // the QR canvas) without a single violation.
    await assertNoCspViolation(pc, "PC page", pcConsole);
    await assertNoCspViolation(phone, "device page", phoneConsole);

    // Both pages at the other width too, for people to look at.
    await pc.setViewportSize({ width: 390, height: 844 });
    await pc.screenshot({ path: join(ARTIFACTS, "pc-phone.png"), fullPage: true });
    await phone.setViewportSize(DESKTOP);
    await phone.screenshot({ path: join(ARTIFACTS, "device-desktop.png"), fullPage: true });
  } finally {
    await relay.stop();
  }
});

test("a pair the relay stored cut (--history-max-record) says so in the stored history, with its sizes", async () => {
  const relay = await startRelay({ www: WWW });
  try {
    const pc = await browser.newPage({ viewport: DESKTOP });
    pc.on("pageerror", (e) => assert.fail(`PC page error: ${e}`));
    await pc.goto(`${relay.http}/?room=cut-room`);
    await statusIs(pc, "linked");
    const link = await pc.getByTestId("device-link").innerText();
    const phoneContext = await browser.newContext(PHONE);
    await phoneContext.addInitScript(mockTencentNews);
    const phone = await phoneContext.newPage();
    await phone.goto(link);
    await statusIs(phone, "linked");
    await waitText(pc, "device-list", "TencentNews");

    // The app echoes the body: a 300 KB request and a reply as large, 256 KiB stored in all.
    const big = JSON.stringify({ big: "x".repeat(300_000) });
    await pc.getByTestId("post-url").fill("https://api.example/v1/big");
    await pc.getByTestId("post-body").fill(big);
    await pc.getByTestId("post-send").click();
    await pc.waitForFunction(() => document.querySelectorAll(".result-card:not(.pending) .reply").length === 1, null, { timeout: WAIT });
    // The PC got the reply whole.
    assert.ok((await textOf(pc, "result")).includes("x".repeat(1000)));

    await pc.locator('[data-htab="server"]').click();
    const mark = pc.getByTestId("history-server").getByTestId("cut-mark");
    await mark.waitFor({ timeout: WAIT });
    const text = await mark.innerText();
    const sizes = text.match(/^cut \(request: (\d+) bytes, result: (\d+) bytes\)$/);
    assert.ok(sizes, text);
    assert.ok(Number(sizes[1]) > 300_000 && Number(sizes[2]) > 300_000, text);
    // Opened, each cut field carries its own mark before the start of it.
    await pc.getByTestId("history-server").locator("summary").first().click();
    assert.equal(await pc.getByTestId("history-server").locator(".kv .cut-mark").count(), 2);
    const box = await pc.getByTestId("history").boundingBox();
    await pc.screenshot({ path: join(ARTIFACTS, "pc-history-cut.png"), fullPage: true,
      clip: { x: box.x, y: box.y, width: box.width, height: Math.min(box.height, 520) } });
  } finally {
    await relay.stop();
  }
});

test("two browser tabs: the simulated bridge, and readable errors", async () => {
  const relay = await startRelay({ www: WWW });
  const api = await otherOrigin();
  try {
    const pc = await browser.newPage({ viewport: DESKTOP });
    await pc.goto(`${relay.http}/?room=two-tabs`);
    await statusIs(pc, "linked");

    // No device yet: the error says what to do.
    await pc.getByTestId("post-url").fill(`${api.url}/v1/answer`);
    await pc.getByTestId("post-send").click();
    await waitText(pc, "result", "Scan the QR code with the app first");

    const link = await pc.getByTestId("device-link").innerText();
    const tab = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await tab.goto(link);
    await statusIs(tab, "linked");
    assert.match(await textOf(tab, "bridge"), /SIMULATED/);
    // The simulation is the user's choice: tick it (the page reloads to apply it).
    assert.equal(await tab.getByTestId("simulate").isChecked(), false);
    await reloadedBy(tab, () => tab.getByTestId("simulate").click());
    assert.equal(await tab.getByTestId("simulate").isChecked(), true);
    await waitText(pc, "device-list", "browser");

    // post through the simulated bridge: a real fetch from the "phone" tab, to another origin.
    await pc.getByTestId("post-method").selectOption("GET");
    await pc.getByTestId("post-body").fill("");
    await pc.getByTestId("post-send").click();
    await waitText(pc, "result", "simulated");
    assert.match(await textOf(pc, "result"), /ok: true/);
    assert.deepEqual(api.seen.map((r) => r.url), ["/v1/answer"]);

    await pc.locator('[data-tab="call"]').click();
    await pc.getByTestId("call-method").fill("getAppInfo");
    await pc.getByTestId("call-params").fill("");
    await pc.getByTestId("call-send").click();
    await waitText(pc, "result", "userAgent");

    // A JS-API the simulation does not have: the device's error is shown, not a timeout.
    await pc.getByTestId("call-method").fill("shareToWechat");
    await pc.getByTestId("call-send").click();
    await waitText(pc, "result", "not a simulated JS-API");
    await tab.screenshot({ path: join(ARTIFACTS, "device-simulated.png"), fullPage: true });

    // Bad input on the PC page is refused with a message, nothing is sent.
    await pc.getByTestId("call-params").fill("[not json");
    await pc.getByTestId("call-send").click();
    await pc.waitForFunction(() => !document.getElementById("toast").hidden, null, { timeout: WAIT });
    assert.match(await pc.locator("#toast").innerText(), /Params must be JSON/);
  } finally {
    await api.close();
    await relay.stop();
  }
});

test("the simulated bridge lends nothing: off until ticked, no cookies, never the relay's own origin", async () => {
  const relay = await startRelay({ www: WWW });
  const api = await otherOrigin();
  try {
    const pc = await browser.newPage({ viewport: DESKTOP });
    await pc.goto(`${relay.http}/?room=lend`);
    await statusIs(pc, "linked");
    const link = await pc.getByTestId("device-link").innerText();
    const send = async (url) => {
      const before = await pc.locator(".result-card:not(.pending)").count();
      await pc.getByTestId("post-method").selectOption("GET");
      await pc.getByTestId("post-url").fill(url);
      await pc.getByTestId("post-send").click();
      await pc.waitForFunction((n) => document.querySelectorAll(".result-card:not(.pending)").length > n, before, { timeout: WAIT });
      return pc.locator(".result-card:not(.pending)").first().innerText();
    };

    // A victim opens the link in a plain browser, where the relay's CS session cookie (any
    // cookie of this host) sits: nothing is fetched for the PC until the user ticks the box.
    const victim = await browser.newPage();
    await victim.goto(link);
    await statusIs(victim, "linked");
    await victim.evaluate(() => { document.cookie = "tether_cs=victims-session; path=/"; });
    await waitText(pc, "device-list", "browser");
    assert.match(await send(`${api.url}/off`), /no native bridge/);
    assert.deepEqual(api.seen, [], "the simulation did not start by itself");

    // Ticked: it fetches other origins, without cookies (same host, other port: a cookie
    // would go along with credentials: "include")...
    await reloadedBy(victim, () => victim.getByTestId("simulate").click());
    assert.match(await send(`${api.url}/on`), /simulated/);
    assert.deepEqual(api.seen, [{ url: "/on", cookie: null }], "no cookie went along");

    // ...and never the relay's own origin, whatever the path.
    for (const url of [`${relay.http}/cs/call`, `${relay.http}/healthz`, "/cs/call"]) {
      assert.match(await send(url), /refused: the simulated bridge does not fetch the relay's own origin/, url);
    }
  } finally {
    await api.close();
    await relay.stop();
  }
});

test("a crafted link cannot pick the bridge; a call reaches only the bridge's own JS-APIs; pages carry a CSP", async () => {
  const relay = await startRelay({ www: WWW, args: ["--bridge-names", "NewsApp,TencentNews"] });
  try {
    // Every page and asset carries the headers.
    const index = await (await fetch(`${relay.http}/`)).text();
    const asset = index.match(/src="(\/assets\/[^"]+\.js)"/)[1];
    for (const path of ["/", "/d/room?secret=x", asset, "/sdk/index.js", "/sdk/tether_sdk_bg.wasm"]) {
      const res = await fetch(relay.http + path);
      assert.equal(res.status, 200, path);
      const csp = res.headers.get("content-security-policy") ?? "";
      assert.match(csp, /script-src 'self' 'wasm-unsafe-eval';/, path);
      assert.doesNotMatch(csp.replace("'wasm-unsafe-eval'", ""), /unsafe-eval|unsafe-inline/, path);
      assert.match(csp, /frame-ancestors 'self'/, path);
      assert.equal(res.headers.get("x-content-type-options"), "nosniff", path);
      assert.equal(res.headers.get("referrer-policy"), "no-referrer", path);
    }
    const devicePage = await (await fetch(`${relay.http}/d/room`)).text();
    assert.match(devicePage, /<meta name="tether-bridges" content="NewsApp,TencentNews">/);

    const pcContext = await browser.newContext({ viewport: DESKTOP });
    await pcContext.addInitScript(watchCsp);
    const pc = await pcContext.newPage();
    const pcConsole = consoleOf(pc);
    await pc.goto(`${relay.http}/?room=crafted`);
    await statusIs(pc, "linked");
    const link = await pc.getByTestId("device-link").innerText();

    // The app's bridge is NewsApp (plain methods, one behind a getter); the link names `window`.
    const phoneContext = await browser.newContext(PHONE);
    await phoneContext.addInitScript(() => {
      window.NewsApp = { login(type, cb) { cb({ loggedIn: type }); } };
      Object.defineProperty(window.NewsApp, "sneaky", { get() { window.ran = "getter"; return (cb) => cb("getter"); } });
    });
    await phoneContext.addInitScript(mockTencentNews);
    await phoneContext.addInitScript(watchCsp);
    const phone = await phoneContext.newPage();
    const phoneConsole = consoleOf(phone);
    await phone.goto(`${link}&bridge=window`);
    await statusIs(phone, "linked");
    assert.match(await textOf(phone, "bridge"), /Native bridge window\.NewsApp found/);

    // A second PC session in the PC page (same room, same secret) sends what an attacker would.
    const refused = ["eval", "constructor", "__proto__", "toString", "valueOf", "hasOwnProperty", "sneaky", "a.b", "setTimeout"];
    const callAll = () => pc.evaluate(async ({ url, names }) => {
      window.s2 ??= await (await import("/sdk/index.js")).connectPc({ url, room: "crafted" });
      return Promise.all(names.map((m) => s2.call(m, ["window.ran = 'eval'"], { timeoutMs: 3000 })
        .then((r) => r.error?.message ?? r.result, (e) => `rejected: ${e.code}`)));
    }, { url: relay.ws, names: [...refused, "login"] });
    const check = async (how) => {
      const answers = await callAll();
      for (const [i, name] of refused.entries()) assert.match(String(answers[i]), /^refused: /, `${how}: call(${name}): ${answers[i]}`);
      assert.deepEqual(answers.at(-1), { loggedIn: "window.ran = 'eval'" }, how);
      assert.equal(await phone.evaluate(() => window.ran), undefined, `${how}: nothing but login ran on the phone`);
      assert.deepEqual(await phone.evaluate(() => window.nativeCalls), [], `${how}: TencentNews, not configured first, saw nothing`);
    };
    await check("through the SDK's bridge");
    // With the Guard on, the page's own dispatch runs the calls: the same refusals.
    await phone.evaluate(() => localStorage.setItem("tether.device.guard", JSON.stringify({ urls: ["https://api.example/*"] })));
    await reloadedBy(phone, () => phone.reload());
    await check("through the device page's guard");

    // The pages ran without a violation, and the policy holds: no eval on the relay's origin.
    await assertNoCspViolation(pc, "PC page", pcConsole);
    await assertNoCspViolation(phone, "device page", phoneConsole);
    // (DevTools' evaluate may compile strings; a timer's string is the page's own eval.)
    const evalOutcome = await phone.evaluate(() => new Promise((resolve) => {
      document.addEventListener("securitypolicyviolation", (e) => resolve(`blocked: ${e.violatedDirective} ${e.blockedURI}`), { once: true });
      document.addEventListener("evalran", () => resolve("eval ran"), { once: true });
      setTimeout("document.dispatchEvent(new Event('evalran'))", 0);
    }));
    assert.match(evalOutcome, /^blocked: script-src/);
    await phoneContext.close();
    await pcContext.close();
  } finally {
    await relay.stop();
  }
});

test("the alarms panel shows the relay's alarms live", async () => {
  const { createSocket } = await import("node:dgram");
  const probe = createSocket("udp4");
  await new Promise((r) => probe.bind(0, "127.0.0.1", r));
  const port = probe.address().port;
  probe.close();
  // The page holds no CS session: this relay opens /alarms on purpose.
  const relay = await startRelay({ www: WWW, args: ["--alarm-listen", `127.0.0.1:${port}`, "--alarms-public"] });
  const sender = createSocket("udp4");
  try {
    const pc = await browser.newPage({ viewport: DESKTOP });
    await pc.goto(`${relay.http}/?room=alarms`);
    await statusIs(pc, "linked");
    await pc.locator("#alarms-card").waitFor({ state: "visible", timeout: WAIT });
    // The page subscribes on load; send once it is listening.
    const deadline = Date.now() + WAIT;
    while (!(await (await fetch(`${relay.http}/metrics`)).text()).includes("tether_alarm_subscribers 1\n")) {
      assert.ok(Date.now() < deadline, "the page never subscribed to alarms");
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const payload of ['{"zone": 7, "level": "fire"}', '<alarm zone="3"><level>smoke</level></alarm>', "DOOR 12 OPEN"]) {
      await new Promise((r) => sender.send(payload, port, "127.0.0.1", r));
    }
    await waitText(pc, "alarms", "DOOR 12 OPEN");
    const text = await textOf(pc, "alarms");
    assert.match(text, /zone/);
    assert.match(await pc.locator("#alarms-count").innerText(), /\(3\)/);
    await pc.screenshot({ path: join(ARTIFACTS, "pc-alarms.png"), fullPage: true });
  } finally {
    sender.close();
    await relay.stop();
  }
});

test("the alarms panel says what opens a relay's closed alarms instead of retrying", async () => {
  const { createSocket } = await import("node:dgram");
  const probe = createSocket("udp4");
  await new Promise((r) => probe.bind(0, "127.0.0.1", r));
  const port = probe.address().port;
  probe.close();
  // No --alarms-public, no CS session in this browser: /alarms is closed to the page.
  const relay = await startRelay({ www: WWW, args: ["--alarm-listen", `127.0.0.1:${port}`] });
  try {
    const pc = await browser.newPage({ viewport: DESKTOP });
    await pc.goto(`${relay.http}/?room=closed-alarms`);
    await statusIs(pc, "linked");
    await pc.getByTestId("alarms-locked").waitFor({ timeout: WAIT });
    assert.match(await textOf(pc, "alarms"), /need a CS session.*--alarms-public/s);
    const metrics = await (await fetch(`${relay.http}/metrics`)).text();
    assert.match(metrics, /tether_alarm_subscribers 0\n/, "the page did not subscribe");
  } finally {
    await relay.stop();
  }
});

test("the phone's guard: a JS-API allowlist, a URL allowlist and a confirmation before each, set on the phone", async () => {
  const relay = await startRelay({ www: WWW });
  try {
    const pc = await browser.newPage({ viewport: DESKTOP });
    await pc.goto(`${relay.http}/?room=guarded`);
    await statusIs(pc, "linked");
    const link = await pc.getByTestId("device-link").innerText();

    const phoneContext = await browser.newContext(PHONE);
    await phoneContext.addInitScript(mockTencentNews);
    const phone = await phoneContext.newPage();
    await phone.goto(link);
    await statusIs(phone, "linked");
    assert.match(await textOf(phone, "guard-state"), /off/);

    // Set on the phone: only getAppInfo, and ask first. Saving reloads the page.
    await phone.getByTestId("guard").locator("summary").click();
    await phone.getByTestId("guard-allow").fill("getAppInfo");
    await phone.getByTestId("guard-confirm").check();
    await reloadedBy(phone, () => phone.getByTestId("guard-save").click());
    assert.match(await textOf(phone, "guard-state"), /only getAppInfo, asks first/);
    await waitText(pc, "device-list", "Android · TencentNews");

    const dialogs = [];
    let answer = true;
    phone.on("dialog", (d) => { dialogs.push(d.message()); void (answer ? d.accept() : d.dismiss()); });
    await pc.locator('[data-tab="call"]').click();
    const call = async (method) => {
      await pc.getByTestId("call-method").fill(method);
      await pc.getByTestId("call-params").fill("[1]");
      await pc.getByTestId("call-send").click();
    };

    // Not in the allowlist: refused on the phone without asking; the app never sees it.
    await call("shareToWechat");
    await waitText(pc, "result", "not allowed on this phone");
    // Allowed, and accepted on the phone: the app runs it.
    await call("getAppInfo");
    await waitText(pc, "result", "args");
    // Allowed, but declined on the phone.
    answer = false;
    await call("getAppInfo");
    await waitText(pc, "result", "declined on the phone");

    assert.equal(dialogs.length, 2, dialogs.join(" | "));
    assert.match(dialogs[0], /The PC asks to run getAppInfo\(1\)/);
    const calls = await phone.evaluate(() => window.nativeCalls.filter((c) => c.api === "invoke").map((c) => c.method));
    assert.deepEqual(calls, ["getAppInfo"], "only the allowed, accepted call reached the app");

    // Requests too: a URL allowlist, and the same question before each.
    await phone.getByTestId("guard").locator("summary").click();
    await phone.getByTestId("guard-urls").fill("https://api.example/v1/*  https://cdn.example/app.json");
    await reloadedBy(phone, () => phone.getByTestId("guard-save").click());
    assert.match(await textOf(phone, "guard-state"), /only getAppInfo, URLs https:\/\/api\.example\/v1\/\* https:\/\/cdn\.example\/app\.json, asks first/);
    await waitText(pc, "device-list", "Android · TencentNews");
    dialogs.length = 0;
    await pc.locator('[data-tab="post"]').click();
    const cards = () => pc.locator(".result-card:not(.pending)").count();
    const post = async (url) => {
      const before = await cards();
      await pc.getByTestId("post-url").fill(url);
      await pc.getByTestId("post-send").click();
      await pc.waitForFunction((n) => document.querySelectorAll(".result-card:not(.pending)").length > n, before, { timeout: WAIT });
      return pc.locator(".result-card:not(.pending)").first().innerText();
    };
    // Not on the list (another host, a look-alike host, a sibling path): refused without asking.
    for (const url of ["https://evil.example/v1/x", "https://api.example.evil/v1/x", "https://api.example/v2/x",
      "https://cdn.example/app.json.evil"]) {
      assert.match(await post(url), /is not allowed on this phone \(its URL allowlist/, url);
    }
    assert.deepEqual(dialogs, [], "refused requests are not even asked about");
    // On the list, and declined on the phone.
    answer = false;
    assert.match(await post("https://api.example/v1/answer?q=1"), /declined on the phone/);
    // On the list, and accepted: the app makes it.
    answer = true;
    assert.match(await post("https://api.example/v1/answer?q=2"), /api\.example\/v1\/answer\?q=2/);
    assert.match(dialogs[0], /The PC asks to request POST https:\/\/api\.example\/v1\/answer\?q=1 on this phone/);
    assert.equal(dialogs.length, 2, dialogs.join(" | "));
    const posts = await phone.evaluate(() => window.nativeCalls.filter((c) => c.api === "post").map((c) => c.url));
    assert.deepEqual(posts, ["https://api.example/v1/answer?q=2"], "only the allowed, accepted request reached the app");
    await phone.screenshot({ path: join(ARTIFACTS, "device-guard.png"), fullPage: true });
    await phoneContext.close();
  } finally {
    await relay.stop();
  }
});
