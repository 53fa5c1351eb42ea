// The PC page's tools for requests (#19), in Chromium against a real relay with two phones
// whose apps disagree: a request sent to both compared side by side with the differences
// marked, copy as cURL (what was sent, and with a device's cookies: run by bash to see each
// argument), edit and resend from the recent and the stored history, a stored request to
// several devices compared again, and the room's history exported as a HAR file that a HAR 1.2
// validator accepts.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startRelay, launchBrowser, mockTencentNews, WAIT } from "./harness.mjs";

const WWW = join(ROOT, "www", "dist");
const DESKTOP = { width: 1440, height: 900 };
const ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";
const IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const statusIs = (page, status) =>
  page.waitForFunction((s) => document.querySelector('[data-testid="status"]')?.dataset.status === s, status, { timeout: WAIT });
const waitText = (page, testid, text) =>
  page.waitForFunction(([id, t]) => document.querySelector(`[data-testid="${id}"]`)?.innerText.includes(t), [testid, text], { timeout: WAIT });
const cardsDone = (page, n) =>
  page.waitForFunction((k) => document.querySelectorAll(".result-card:not(.pending)").length === k, n, { timeout: WAIT });

/** The iOS app of the same news client: another code, its own cookie, an extra field. */
function mockIosNews() {
  document.cookie = "uid=7";
  // A cookie a shell would run, were it not quoted: the cURL command must keep it inert.
  document.cookie = "note=$(exit 9)'x`id`";
  window.TencentNews = {
    post(url, body, callback, options) {
      setTimeout(() => callback({ code: 2, url, body, method: options && options.method, region: "cn" }), 5);
    },
    invoke(method, ...args) {
      const callback = args.pop();
      setTimeout(() => callback({ method, args }), 5);
    },
  };
}

/** The arguments bash gives `curl` when it runs `command` (curl stubbed to print them). */
function curlArgs(command) {
  return execFileSync("bash", ["-c", `curl() { printf '%s\\0' "$@"; }\n${command}`], { encoding: "utf8" }).split("\0").slice(0, -1);
}

async function phone(relay, link, userAgent, mock) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, userAgent });
  await context.addInitScript(mock);
  const page = await context.newPage();
  page.on("pageerror", (e) => assert.fail(`device page error: ${e}`));
  await page.goto(link);
  await statusIs(page, "linked");
  return page;
}

test("compare two devices' replies, copy as cURL, edit and resend, export HAR", async () => {
  const relay = await startRelay({ www: WWW });
  const dir = mkdtempSync(join(tmpdir(), "tether-automate-"));
  try {
    const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: relay.http });
    const pc = await context.newPage();
    pc.on("pageerror", (e) => assert.fail(`PC page error: ${e}`));
    await pc.goto(`${relay.http}/?room=compare-room`);
    await statusIs(pc, "linked");
    const link = await pc.getByTestId("device-link").innerText();
    await phone(relay, link, ANDROID, mockTencentNews);
    await phone(relay, link, IPHONE, mockIosNews);
    await waitText(pc, "device-list", "Android · TencentNews");
    await waitText(pc, "device-list", "iOS · TencentNews");

    // One request to every device: both answer in the same card.
    await pc.getByTestId("post-url").fill("https://api.example/v1/feed?tab=top");
    await pc.getByTestId("post-body").fill('{"page": 1}');
    await pc.getByTestId("post-headers").fill('{"X-Trace": "it\'s 7"}');
    await pc.getByTestId("post-send").click();
    await cardsDone(pc, 1);
    await pc.waitForFunction(() => document.querySelectorAll(".result-card .reply").length === 2, null, { timeout: WAIT });

    // Compare: the fields that differ are marked, the same ones hidden until asked for.
    const card = pc.locator(".result-card").first();
    await card.getByTestId("card-compare").click();
    const summary = await card.getByTestId("compare-summary").innerText();
    assert.match(summary, /^\d+ of \d+ fields differ between the 2 devices: /, summary);
    const differing = await card.locator("tr.differs").evaluateAll((rows) => rows.map((r) => r.dataset.path));
    for (const path of ["result.code", "result.region", "cookie"]) assert.ok(differing.includes(path), `${path} in ${differing}`);
    const same = differing.filter((p) => /^result\.(url|method|body)\b/.test(p));
    assert.deepEqual(same, [], "what both apps echo back is the same");
    const region = await card.locator('tr[data-path="result.region"] td').allInnerTexts();
    assert.equal(region.filter((t) => t === "(absent)").length, 1, String(region));
    assert.equal(await card.locator('tr[data-path="result.url"]').isVisible(), false);
    await card.getByTestId("compare-only").uncheck();
    assert.equal(await card.locator('tr[data-path="result.url"]').isVisible(), true);
    mkdirSync(join(ROOT, "test-artifacts"), { recursive: true });
    await pc.screenshot({ path: join(ROOT, "test-artifacts", "pc-compare.png") });
    const headers = await card.locator("table.compare thead th").allInnerTexts();
    assert.deepEqual(headers.slice(1).sort(), ["Android · TencentNews", "iOS · TencentNews"]);

    // Copy as cURL: what the PC sent, on the clipboard and shown; bash hands curl exactly it.
    await card.getByTestId("card-curl").click();
    const command = await card.getByTestId("curl-text").innerText();
    assert.equal(await pc.evaluate(() => navigator.clipboard.readText()), command);
    assert.deepEqual(curlArgs(command), [
      "--url", "https://api.example/v1/feed?tab=top",
      "-H", "X-Trace: it's 7", "-H", "Content-Type: application/json", "--data-raw", '{"page":1}',
    ]);
    assert.match((await card.getByTestId("curl-note").allInnerTexts()).join(" "), /without the app's own headers and cookies/);
    // With one device's cookies: the command runs as that phone's user.
    const ios = card.locator(".reply", { hasText: "iOS" });
    await ios.getByTestId("reply-curl-cookie").click();
    const withCookie = curlArgs(await ios.getByTestId("curl-text").innerText());
    assert.deepEqual(withCookie, [
      "--url", "https://api.example/v1/feed?tab=top",
      "-H", "X-Trace: it's 7", "-H", "Content-Type: application/json", "-H", "Cookie: uid=7; note=$(exit 9)'x`id`",
      "--data-raw", '{"page":1}',
    ]);

    // Edit from the recent history: the form holds it, nothing is sent until the button is.
    await pc.getByTestId("history-recent").getByTestId("recent-edit").first().click();
    assert.equal(await pc.getByTestId("post-url").inputValue(), "https://api.example/v1/feed?tab=top");
    assert.equal(await pc.getByTestId("post-body").inputValue(), '{"page":1}');
    assert.equal(await pc.getByTestId("post-headers").inputValue(), '{"X-Trace":"it\'s 7"}');
    assert.equal(await pc.locator(".result-card").count(), 1);
    await pc.getByTestId("post-url").fill("https://api.example/v1/feed?tab=local");
    await pc.getByTestId("target").selectOption({ label: "Android · TencentNews" });
    await pc.getByTestId("post-send").click();
    await cardsDone(pc, 2);
    assert.match(await pc.locator(".result-card").first().innerText(), /tab=local[\s\S]*Android/);

    // The stored history: the request to both devices can be compared again, and resent.
    await pc.locator('[data-htab="server"]').click();
    await pc.waitForFunction(() => document.querySelectorAll('[data-testid="history-server"] > li > details').length === 3, null, { timeout: WAIT });
    const stored = pc.getByTestId("history-server");
    assert.equal(await stored.getByTestId("stored-compare").count(), 1);
    await stored.getByTestId("stored-compare").click();
    const storedDiff = await stored.locator("tr.differs").evaluateAll((rows) => rows.map((r) => r.dataset.path));
    assert.ok(storedDiff.includes("result.code") && storedDiff.includes("cookie"), String(storedDiff));
    // Resend the newest (to Android): it goes to that device again.
    await pc.getByTestId("target").selectOption({ value: "" });
    await stored.locator("li").first().getByTestId("stored-resend").click();
    await cardsDone(pc, 3);
    const resent = pc.locator(".result-card").first();
    assert.match(await resent.innerText(), /tab=local/);
    assert.equal(await resent.locator(".reply").count(), 1);
    assert.match(await resent.locator(".reply").innerText(), /Android/);
    // Edit the oldest stored pair: the form again.
    await stored.locator("li").last().getByTestId("stored-edit").click();
    assert.equal(await pc.getByTestId("post-url").inputValue(), "https://api.example/v1/feed?tab=top");

    // Export HAR: a download of every stored pair, valid HAR 1.2, the newest included.
    await pc.locator('[data-htab="server"]').click();
    const [download] = await Promise.all([pc.waitForEvent("download", { timeout: WAIT }), pc.getByTestId("export-har").click()]);
    assert.match(download.suggestedFilename(), /^tether-compare-room-[\d-]+\.har$/);
    const file = join(dir, "room.har");
    await download.saveAs(file);
    const text = readFileSync(file, "utf8");
    const har = JSON.parse(text);
    // 2 (both devices) + 1 (Android) + 1 (resent), oldest first.
    assert.deepEqual(har.log.entries.map((e) => e.request.url), [
      "https://api.example/v1/feed?tab=top", "https://api.example/v1/feed?tab=top",
      "https://api.example/v1/feed?tab=local", "https://api.example/v1/feed?tab=local",
    ]);
    const valid = execFileSync("node", [join(ROOT, "tests", "har", "validate.mjs")], { input: text, encoding: "utf8" });
    assert.match(valid, /valid HAR 1\.2: 4 entries/);
    await waitText(pc, "export-status", "Saved 4 pairs");
    const secret = await pc.evaluate(() => localStorage.getItem("tether.secret.compare-room"));
    assert.ok(secret && !text.includes(secret), "the secret is not in the file");
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await relay.stop();
  }
});

test("an export past one page of the relay's history follows the pages, oldest first", async () => {
  // 501 pairs > the relay's page of 500: the export needs two pages and keeps them in order.
  const relay = await startRelay({ www: WWW, args: ["--rate-limit", "2000", "--rate-burst", "4000"] });
  const dir = mkdtempSync(join(tmpdir(), "tether-automate-"));
  try {
    const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
    const pc = await context.newPage();
    pc.on("pageerror", (e) => assert.fail(`PC page error: ${e}`));
    await pc.goto(`${relay.http}/?room=many-room`);
    await statusIs(pc, "linked");
    const link = await pc.getByTestId("device-link").innerText();
    await phone(relay, link, ANDROID, mockTencentNews);
    await waitText(pc, "device-list", "TencentNews");
    const secret = await pc.evaluate(() => localStorage.getItem("tether.secret.many-room"));
    // Through the HTTP API: quicker than 501 clicks, the same history.
    for (let i = 0; i < 501; i++) {
      const res = await fetch(`${relay.http}/api/rooms/many-room/post`, {
        method: "POST", headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
        body: JSON.stringify({ url: `https://api.example/v1/n?i=${i}`, method: "GET" }),
      });
      assert.equal(res.status, 200, await res.text());
    }
    await pc.locator('[data-htab="server"]').click();
    const [download] = await Promise.all([pc.waitForEvent("download", { timeout: WAIT }), pc.getByTestId("export-har").click()]);
    const file = join(dir, "many.har");
    await download.saveAs(file);
    const har = JSON.parse(readFileSync(file, "utf8"));
    assert.equal(har.log.entries.length, 501);
    const order = har.log.entries.map((e) => Number(new URL(e.request.url).searchParams.get("i")));
    assert.deepEqual(order, Array.from({ length: 501 }, (_, i) => i));
    await waitText(pc, "export-status", "Saved 501 pairs");
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await relay.stop();
  }
});
