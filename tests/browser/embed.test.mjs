// The app's own H5 pages, on their own origin, loading the SDK from the relay (#21), in
// Chromium: a page served from another host name and port joins a room as a device through the
// module import (under a strict Content-Security-Policy, as README recommends) and through the
// classic <script src=…/sdk/tether.js>, answers a post and a call, and the PC sees the replies;
// the loader joins from the page's own address only after the phone's user said yes, and takes
// the key out of the address; a webview without WebAssembly gets a clear error.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startRelay, launchBrowser, sdkPage, mockTencentNews, WAIT } from "./harness.mjs";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

/** The app's web server: another host name (localhost, not 127.0.0.1) and another port. Pages
 *  are `{path: {html, csp?}}`; each request's path is noted. */
async function appServer(pages) {
  const seen = [];
  const server = createServer((req, res) => {
    const path = req.url.split("?")[0];
    seen.push(req.url);
    const page = pages[path];
    if (path === "/favicon.ico") return res.writeHead(204).end();
    if (!page) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", ...(page.csp ? { "content-security-policy": page.csp } : {}) });
    res.end(page.html);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { base: `http://localhost:${server.address().port}`, seen, close: () => new Promise((r) => server.close(r)) };
}

/** A PC in `room` (its SDK page on the relay) and the room's device key. */
async function openRoom(relay, room) {
  const pc = await sdkPage(browser, relay);
  const key = await pc.evaluate(async ({ url, room }) => {
    window.s = await tether.connectPc({ url, room });
    return s.deviceKey;
  }, { url: relay.ws, room });
  return { pc, key };
}

async function phonePage(url, { init, dialog } = {}) {
  const context = await browser.newContext();
  if (init) await context.addInitScript(init);
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  if (dialog) page.on("dialog", dialog);
  await page.goto(url);
  return { page, errors };
}

const devicesOf = (pc) => pc.evaluate(() => s.devices.filter((m) => m.role === "device").map((m) => m.name));

test("a page on another origin imports the SDK module from the relay, joins, and answers", async () => {
  const relay = await startRelay();
  const room = "embed-module";
  const { pc, key } = await openRoom(relay, room);
  const relayHost = relay.http.replace("http://", "");
  const app = await appServer({
    "/article.html": {
      // What README recommends for a page that embeds Tether, and nothing more.
      csp: `default-src 'self'; script-src 'self' 'unsafe-inline' ${relay.http} 'wasm-unsafe-eval'; connect-src ${relay.http} ws://${relayHost}`,
      html: `<!doctype html><meta charset="utf-8"><title>article</title>
<script type="module">
  import { connectDevice } from "${relay.http}/sdk/index.js";
  window.session = await connectDevice({ url: "${relay.ws}", room: "${room}", secret: "${key}", name: "module page",
    onPost: (r) => ({ echoed: r.url, via: "module" }), onCall: (method, params) => ({ method, params }) });
</script>`,
    },
  });
  try {
    const { page, errors } = await phonePage(`${app.base}/article.html`);
    await page.waitForFunction(() => window.session?.status === "linked", null, { timeout: WAIT });
    await pc.waitForFunction(() => s.devices.some((m) => m.name === "module page"), null, { timeout: WAIT });
    const reply = await pc.evaluate(() => s.post("https://api.example/v1/me", { method: "GET" }));
    assert.deepEqual(reply.result, { echoed: "https://api.example/v1/me", via: "module" });
    const call = await pc.evaluate(() => s.call("getUser", [7]));
    assert.deepEqual(call.result, { method: "getUser", params: [7] });
    assert.deepEqual(errors, [], "no CORS, MIME or CSP error on the app's page");
  } finally {
    await app.close();
    await relay.stop();
  }
});

test("the classic script: data attributes join, the app's bridge answers, files come from the build's path", async () => {
  const relay = await startRelay();
  const room = "embed-classic";
  const { pc, key } = await openRoom(relay, room);
  const build = (await (await fetch(`${relay.http}/healthz`)).json()).sdk;
  const app = await appServer({
    "/classic.html": {
      html: `<!doctype html><meta charset="utf-8"><title>classic</title>
<script src="${relay.http}/sdk/tether.js" data-room="${room}" data-secret="${key}" data-name="classic page"></script>
<script>Tether.auto.then(function (s) { window.session = s; });</script>`,
    },
  });
  try {
    const { page, errors } = await phonePage(`${app.base}/classic.html`, { init: mockTencentNews });
    await page.waitForFunction(() => window.session?.status === "linked", null, { timeout: WAIT });
    assert.equal(await page.evaluate(() => Tether.build), build);
    assert.equal(await page.evaluate(() => Tether.supported), true);
    await pc.waitForFunction(() => s.devices.some((m) => m.name === "classic page"), null, { timeout: WAIT });
    const reply = await pc.evaluate(() => s.post("https://api.example/v1/feed", { body: { page: 1 } }));
    assert.equal(reply.result.code, 0, JSON.stringify(reply));
    assert.equal(reply.cookie, "uid=42");
    const call = await pc.evaluate(() => s.call("share", ["hi"]));
    assert.deepEqual(call.result, { method: "share", args: ["hi"] });
    // Everything after the loader came from this build's immutable path.
    const loaded = await page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name));
    const sdkFiles = loaded.filter((u) => u.includes("/sdk/"));
    assert.ok(sdkFiles.includes(`${relay.http}/sdk/tether.js`), String(sdkFiles));
    for (const f of ["tether-global.js", "index.js", "tether_sdk.js", "tether_sdk_bg.wasm"]) {
      assert.ok(sdkFiles.includes(`${relay.http}/sdk/@${build}/${f}`), `${f} in ${sdkFiles}`);
    }
    assert.deepEqual(errors, []);
  } finally {
    await app.close();
    await relay.stop();
  }
});

test("from the page's address: joins only after the phone's user says yes, and takes the key out", async () => {
  const relay = await startRelay();
  const room = "embed url";
  const { pc, key } = await openRoom(relay, room);
  const page = `<!doctype html><meta charset="utf-8"><title>app page</title>
<script src="${relay.http}/sdk/tether.js" data-from-url></script>
<script>Tether.auto.then(function (s) { window.session = s; }, function (e) { window.refused = e.code + ": " + e.message; });</script>`;
  const app = await appServer({ "/news/article.html": { html: page } });
  const link = (k) => `${app.base}/news/article.html?id=5#/comments&tether_room=${encodeURIComponent(room)}&tether_key=${k}`;
  try {
    // Declined: not joined, said why, and the key is gone from the address all the same.
    let asked = "";
    const no = await phonePage(link(key), { init: mockTencentNews, dialog: (d) => { asked = d.message(); void d.dismiss(); } });
    await no.page.waitForFunction(() => window.refused !== undefined, null, { timeout: WAIT });
    assert.match(await no.page.evaluate(() => window.refused), /^declined: /);
    assert.match(asked, new RegExp(`^Tether relay 127\\.0\\.0\\.1:\\d+: let the computer in its debug room \u201c${room}\u201d make requests`), asked);
    assert.equal(no.page.url(), `${app.base}/news/article.html?id=5#/comments`);
    assert.deepEqual(await devicesOf(pc), []);

    // A link that carries something other than a device key: refused without asking.
    let dialogs = 0;
    const bad = await phonePage(link("0123456789abcdef0123456789abcdef"), { init: mockTencentNews, dialog: (d) => { dialogs += 1; void d.dismiss(); } });
    await bad.page.waitForFunction(() => window.refused !== undefined, null, { timeout: WAIT });
    assert.match(await bad.page.evaluate(() => window.refused), /^bad_request: /);
    assert.equal(dialogs, 0);

    // Yes: joined, and the PC's post goes through the app.
    const yes = await phonePage(link(key), { init: mockTencentNews, dialog: (d) => void d.accept() });
    await yes.page.waitForFunction(() => window.session?.status === "linked", null, { timeout: WAIT });
    assert.equal(yes.page.url(), `${app.base}/news/article.html?id=5#/comments`);
    await pc.waitForFunction(() => s.devices.some((m) => m.role === "device"), null, { timeout: WAIT });
    const reply = await pc.evaluate(() => s.post("https://api.example/v1/me"));
    assert.equal(reply.result.code, 0);
    // In the query (an app whose pages route by fragment): taken out of the address as well.
    const query = `${app.base}/news/article.html?tether_room=${encodeURIComponent(room)}&id=5&tether_key=${key}#/comments`;
    const q = await phonePage(query, { init: mockTencentNews, dialog: (d) => void d.accept() });
    await q.page.waitForFunction(() => window.session?.status === "linked", null, { timeout: WAIT });
    assert.equal(q.page.url(), `${app.base}/news/article.html?id=5#/comments`);

    // A room name that could pass for the question's own words: refused without asking.
    for (const hostile of ["x\u201d. Your bank asks: tap OK", "x\u2028\u2028Tap OK", "x\u202eKO pat", "r".repeat(65)]) {
      let asked2 = 0;
      const h = await phonePage(`${app.base}/news/article.html#tether_room=${encodeURIComponent(hostile)}&tether_key=${key}`,
        { dialog: (d) => { asked2 += 1; void d.dismiss(); } });
      await h.page.waitForFunction(() => window.refused !== undefined, null, { timeout: WAIT });
      assert.match(await h.page.evaluate(() => window.refused), /^bad_request: .*will not ask about/, hostile);
      assert.equal(asked2, 0, hostile);
    }
  } finally {
    await app.close();
    await relay.stop();
  }
});

test("a webview whose WebAssembly is too old for the SDK is told so", async () => {
  const relay = await startRelay();
  const app = await appServer({
    "/old.html": {
      html: `<!doctype html><meta charset="utf-8"><title>old webview</title>
<script src="${relay.http}/sdk/tether.js"></script>
<script>Tether.connectDevice({ room: "r", secret: "dk.aaaaaaaaaaaaaaaaaaaaaa" }).then(null, function (e) { window.refused = e.code + ": " + e.message; });</script>`,
    },
  });
  try {
    // What a webview without reference types or bulk memory answers for the loader's probe.
    const { page } = await phonePage(`${app.base}/old.html`, { init: () => { WebAssembly.validate = () => false; } });
    await page.waitForFunction(() => window.refused !== undefined, null, { timeout: WAIT });
    assert.equal(await page.evaluate(() => window.refused),
      "unsupported: this webview's WebAssembly is too old (Tether needs iOS 15+ or Android System WebView 96+)");
  } finally {
    await app.close();
    await relay.stop();
  }
});

test("a webview without WebAssembly gets a clear error from the loader, not silence", async () => {
  const relay = await startRelay();
  const app = await appServer({
    "/old.html": {
      html: `<!doctype html><meta charset="utf-8"><title>old webview</title>
<script src="${relay.http}/sdk/tether.js" data-room="r" data-secret="dk.aaaaaaaaaaaaaaaaaaaaaa"></script>
<script>Tether.auto.then(null, function (e) { window.refused = e.code + ": " + e.message; });</script>`,
    },
  });
  try {
    const { page, errors } = await phonePage(`${app.base}/old.html`, { init: () => { delete window.WebAssembly; } });
    await page.waitForFunction(() => window.refused !== undefined, null, { timeout: WAIT });
    assert.match(await page.evaluate(() => window.refused), /^unsupported: this webview has no WebAssembly/);
    assert.equal(await page.evaluate(() => Tether.supported), false);
    const direct = await page.evaluate(() => Tether.connectPc({ room: "x" }).then(() => "linked", (e) => e.code));
    assert.equal(direct, "unsupported");
    assert.ok(errors.some((e) => e.includes("[tether] this webview has no WebAssembly")), String(errors));
  } finally {
    await app.close();
    await relay.stop();
  }
});

test("the PC page's snippet and its QR code for the app's own page: the phone joins through them", async () => {
  const relay = await startRelay({ www: join(ROOT, "www", "dist") });
  const pages = {};
  const app = await appServer(pages);
  try {
    const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: relay.http });
    const pc = await context.newPage();
    pc.on("pageerror", (e) => assert.fail(`PC page error: ${e}`));
    await pc.goto(`${relay.http}/?room=app-room`);
    await pc.waitForFunction(() => document.querySelector('[data-testid="status"]')?.dataset.status === "linked", null, { timeout: WAIT });

    // The snippet to paste, copied from the PC page, is what the app's page holds.
    await pc.locator("#embed-box summary").click();
    await pc.locator('[data-copy="embed-from-url"]').click();
    const snippet = await pc.evaluate(() => navigator.clipboard.readText());
    assert.equal(snippet, `<script src="${relay.http}/sdk/tether.js" data-from-url></script>`);
    const roomSnippet = await pc.getByTestId("embed-room").innerText();
    assert.match(roomSnippet, /data-room="app-room" data-secret="dk\.[A-Za-z0-9_-]{22}"/);
    assert.match(await pc.getByTestId("embed-module").innerText(), new RegExp(`import \\{ connectDevice \\} from "${relay.http}/sdk/index\\.js"`));
    pages["/h5/article.html"] = { html: `<!doctype html><meta charset="utf-8"><title>article</title>\n${snippet}` };

    // The QR code opens the app's page with the room after '#'.
    await pc.locator("#app-page-box summary").click();
    await pc.getByTestId("app-page").fill(`${app.base}/h5/article.html`);
    await pc.getByTestId("app-page").press("Enter");
    await pc.getByTestId("app-page").blur();
    await pc.waitForFunction(() => document.querySelector('[data-testid="device-link"]')?.textContent.includes("#tether_room="), null, { timeout: WAIT });
    const link = await pc.getByTestId("device-link").innerText();
    assert.match(link, new RegExp(`^${app.base}/h5/article\\.html#tether_room=app-room&tether_key=dk\\.[A-Za-z0-9_-]{22}$`));

    const phone = await phonePage(link, { init: mockTencentNews, dialog: (d) => void d.accept() });
    await pc.waitForFunction(() => document.querySelector('[data-testid="device-list"]')?.innerText.includes("online"), null, { timeout: WAIT });
    await pc.getByTestId("post-url").fill("https://api.example/v1/me");
    await pc.getByTestId("post-send").click();
    await pc.waitForFunction(() => document.querySelector('[data-testid="result"]')?.innerText.includes("uid=42"), null, { timeout: WAIT });
    assert.equal(phone.page.url(), `${app.base}/h5/article.html`);
    assert.deepEqual(phone.errors, []);
  } finally {
    await app.close();
    await relay.stop();
  }
});

test("over https and wss, with a certificate made now: the module import, the classic script, the PC page's QR link", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tether-tls-"));
  const made = JSON.parse(execFileSync(join(ROOT, "target", "debug", "test-cert"), [dir], { encoding: "utf8" }));
  const relay = await startRelay({ www: join(ROOT, "www", "dist"), args: ["--tls-cert", made.cert, "--tls-key", made.key] });
  // A browser that trusts exactly this certificate (by its key's hash), as a phone told to would.
  const tlsBrowser = await launchBrowser([`--ignore-certificate-errors-spki-list=${made.spki}`]);
  const pages = {};
  const server = createTlsServer({ cert: readFileSync(made.cert), key: readFileSync(made.key) }, (req, res) => {
    const page = pages[req.url.split("?")[0]];
    if (!page) return res.writeHead(req.url === "/favicon.ico" ? 204 : 404).end();
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(page);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const appBase = `https://localhost:${server.address().port}`;
  try {
    assert.equal(relay.tls, true);
    const pc = await tlsBrowser.newPage({ viewport: { width: 1440, height: 900 } });
    pc.on("pageerror", (e) => assert.fail(`PC page error: ${e}`));
    await pc.goto(`${relay.http}/?room=tls-room`);
    await pc.waitForFunction(() => document.querySelector('[data-testid="status"]')?.dataset.status === "linked", null, { timeout: WAIT });
    // The QR link carries https://, and the snippets the relay's https:// address.
    const link = await pc.getByTestId("device-link").innerText();
    assert.match(link, new RegExp(`^${relay.http}/d/tls-room\\?secret=dk\\.[A-Za-z0-9_-]{22}$`));
    const key = new URL(link).searchParams.get("secret");
    assert.match(await pc.getByTestId("embed-module").textContent(), new RegExp(`url: "${relay.ws}"`));

    pages["/module.html"] = `<!doctype html><meta charset="utf-8"><title>module</title>
<script type="module">
  import { connectDevice } from "${relay.http}/sdk/index.js";
  window.session = await connectDevice({ url: "${relay.ws}", room: "tls-room", secret: "${key}", name: "https module page",
    onPost: (r) => ({ via: "module", url: r.url }) });
</script>`;
    pages["/classic.html"] = `<!doctype html><meta charset="utf-8"><title>classic</title>
<script src="${relay.http}/sdk/tether.js" data-room="tls-room" data-secret="${key}" data-name="https classic page"></script>
<script>Tether.auto.then(function (s) { window.session = s; });</script>`;
    const phones = [];
    for (const [path, init] of [["/module.html", undefined], ["/classic.html", mockTencentNews]]) {
      const context = await tlsBrowser.newContext();
      if (init) await context.addInitScript(init);
      const page = await context.newPage();
      const errors = [];
      page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
      await page.goto(`${appBase}${path}`);
      await page.waitForFunction(() => window.session?.status === "linked", null, { timeout: WAIT });
      phones.push({ page, errors });
    }
    // The classic loader chose wss:// by itself, from where it was loaded.
    assert.equal(await phones[1].page.evaluate(() => Tether.relay), `${relay.http}/`);
    await pc.waitForFunction(() => (document.querySelector('[data-testid="device-list"]')?.innerText.match(/online/g) ?? []).length === 2, null, { timeout: WAIT });
    await pc.getByTestId("post-url").fill("https://api.example/v1/me");
    await pc.getByTestId("post-send").click();
    await pc.waitForFunction(() => document.querySelectorAll(".result-card .reply").length === 2, null, { timeout: WAIT });
    const replies = await pc.locator(".result-card .reply").allInnerTexts();
    assert.ok(replies.some((r) => r.includes("https module page") && r.includes('"module"')), String(replies));
    assert.ok(replies.some((r) => r.includes("https classic page") && r.includes("uid=42")), String(replies));
    // And a JS-API call, answered by the classic page's app bridge.
    await pc.locator('[data-tab="call"]').click();
    await pc.getByTestId("call-method").fill("share");
    await pc.getByTestId("call-params").fill('["over wss"]');
    await pc.getByTestId("target").selectOption({ label: "https classic page" });
    await pc.getByTestId("call-send").click();
    await pc.waitForFunction(() => document.querySelector(".result-card:not(.pending)")?.innerText.includes("over wss"), null, { timeout: WAIT });
    assert.match(await pc.locator(".result-card").first().innerText(), /https classic page[\s\S]*share/);
    for (const p of phones) assert.deepEqual(p.errors, []);
  } finally {
    await new Promise((r) => server.close(r));
    await tlsBrowser.close();
    await relay.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
