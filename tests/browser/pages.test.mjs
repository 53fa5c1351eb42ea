// The pages a developer uses, end to end in Chromium: the PC page and the device page served
// by a real relay, the QR code read back from a screenshot, screenshots saved for people.
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
    const pc = await pcContext.newPage();
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
    const phone = await phoneContext.newPage();
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
    await pc.locator("details.scheme summary").click();
    await pc.getByTestId("scheme").fill("newsapp://open?url={url}");
    await pc.getByTestId("scheme").press("Enter");
    await pc.getByTestId("scheme").blur();
    await waitText(pc, "device-link", "newsapp://");
    assert.equal(await scanQr(pc, "qr-scheme.png"), `newsapp://open?url=${encodeURIComponent(link)}`);

    // Both pages at the other width too, for people to look at.
    await pc.setViewportSize({ width: 390, height: 844 });
    await pc.screenshot({ path: join(ARTIFACTS, "pc-phone.png"), fullPage: true });
    await phone.setViewportSize(DESKTOP);
    await phone.screenshot({ path: join(ARTIFACTS, "device-desktop.png"), fullPage: true });
  } finally {
    await relay.stop();
  }
});

test("two browser tabs: the simulated bridge, and readable errors", async () => {
  const relay = await startRelay({ www: WWW });
  try {
    const pc = await browser.newPage({ viewport: DESKTOP });
    await pc.goto(`${relay.http}/?room=two-tabs`);
    await statusIs(pc, "linked");

    // No device yet: the error says what to do.
    await pc.getByTestId("post-url").fill(`${relay.http}/healthz`);
    await pc.getByTestId("post-send").click();
    await waitText(pc, "result", "Scan the QR code with the app first");

    const link = await pc.getByTestId("device-link").innerText();
    const tab = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await tab.goto(link);
    await statusIs(tab, "linked");
    assert.match(await textOf(tab, "bridge"), /SIMULATED/);
    assert.equal(await tab.getByTestId("simulate").isChecked(), true);
    await waitText(pc, "device-list", "browser");

    // post through the simulated bridge: a real fetch from the "phone" tab.
    await pc.getByTestId("post-method").selectOption("GET");
    await pc.getByTestId("post-body").fill("");
    await pc.getByTestId("post-send").click();
    await waitText(pc, "result", "simulated");
    assert.match(await textOf(pc, "result"), /"ok"/);

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

test("the phone's guard: a JS-API allowlist and a confirmation before each call, set on the phone", async () => {
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
    await phone.getByTestId("guard-save").click();
    await phone.waitForLoadState("load");
    await statusIs(phone, "linked");
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
    await phoneContext.close();
  } finally {
    await relay.stop();
  }
});
