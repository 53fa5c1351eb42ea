// The PC page's inspection panels (#18, increment 9) against a real relay: a fake device (a raw
// WebSocket speaking the protocol, from a blank page of its own) sends console, error, page and
// network events — hostile text among them — and answers storage, eval and post. Asserted: the
// panels show it all as text and run none of it; filters and search; the losses said; the cURL
// command exactly, and inert in a shell; Send through the app sends the right `post`; the HAR
// export; storage edits greyed without `allow` and sent right with it; eval results and refusals.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startRelay, launchBrowser, WAIT } from "./harness.mjs";

const WWW = join(ROOT, "www", "dist");
const DESKTOP = { width: 1440, height: 900 };
/** Written only if some device text ran as code (in the page or in a shell). */
const HOSTILE = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>";

let browser, relay;
before(async () => {
  browser = await launchBrowser();
  // A higher --inspect-rate: the bounds test sends 5,000 events at once.
  relay = await startRelay({ www: WWW, args: ["--inspect-rate", "16777216"] });
});
after(async () => {
  await relay?.stop();
  await browser?.close();
});

const statusIs = (page, status) =>
  page.waitForFunction((s) => document.querySelector('[data-testid="status"]')?.dataset.status === s, status, { timeout: WAIT });
const waitText = (page, testid, text) =>
  page.waitForFunction(([id, t]) => document.querySelector(`[data-testid="${id}"]`)?.innerText.includes(t), [testid, text], { timeout: WAIT });
const textOf = (page, testid) => page.getByTestId(testid).innerText();

/** The PC page in `room`, linked, and the device key its QR link carries. */
async function pcPage(room) {
  const context = await browser.newContext({ viewport: DESKTOP, acceptDownloads: true });
  await context.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective));
  });
  const pc = await context.newPage();
  pc.on("pageerror", (e) => assert.fail(`PC page error: ${e}`));
  await pc.goto(`${relay.http}/?room=${room}`);
  await statusIs(pc, "linked");
  const link = await pc.getByTestId("device-link").innerText();
  return { pc, key: new URL(link).searchParams.get("secret") };
}

/** A device that speaks the protocol by hand, from a page of the relay's origin (Chromium keeps
 *  a blank page from reaching a loopback address; the relay's CSP forbids eval, so answers are
 *  tables, not code). Every frame it got is in `got`. */
async function fakeDevice(room, key, name, allow) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${relay.http}/healthz`);
  const url = `${relay.ws}?room=${room}&role=device&secret=${key}&name=${name}`;
  await page.evaluate(async ({ url, name, allow }) => {
    window.got = [];
    window.answers = {};
    const ws = (window.ws = new WebSocket(url));
    window.send = (f) => ws.send(JSON.stringify(f));
    ws.onmessage = (m) => {
      const f = JSON.parse(m.data);
      got.push(f);
      // An answer: the table's entry for the request's `op` (storage) or `code` (eval), else `otherwise`.
      const a = answers[f.type];
      if (a) send({ type: `${f.type}Cb`, id: f.id, msg: a.table?.[f.msg.op ?? f.msg.code] ?? a.otherwise });
    };
    await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
    send({ type: "hello", msg: { name, inspect: { console: true, network: true, storage: true, allow } } });
  }, { url, name, allow });
  // Batches go only to PCs that watch: wait until the PC page is listed as one.
  await page.waitForFunction(() => got.some((f) => f.type === "devices" && f.msg.members.some((m) => m.role === "pc" && m.inspect)), null, { timeout: WAIT });
  let n = 0;
  return {
    page,
    /** Sends one `inspect` batch; events get the next numbers unless they carry their own `n`. */
    batch(events, extra = {}) {
      const numbered = [];
      for (const e of events) {
        n = e.n ?? n + 1;
        numbered.push({ at: Date.now(), ...e, n });
      }
      return page.evaluate((msg) => send({ type: "inspect", msg }), { events: numbered, ...extra });
    },
    /** Answers each `type` request with `table[op or code]`, else `otherwise`. */
    answer: (type, otherwise, table = {}) => page.evaluate(([type, otherwise, table]) => { answers[type] = { otherwise, table }; }, [type, otherwise, table]),
    /** The `msg` of each frame of `type` it got, less the `timeoutMs` the PC SDK adds to each. */
    async frames(type) {
      const msgs = await page.evaluate((type) => got.filter((f) => f.type === type).map((f) => f.msg), type);
      return msgs.map(({ timeoutMs, ...msg }) => (assert.equal(typeof timeoutMs, "number"), msg));
    },
    /** Leaves the room cleanly (a close frame): the relay drops it from the list at once. */
    leave: () => page.evaluate(() => ws.close()),
    close: () => context.close(),
  };
}

/** Nothing a device sent ran, loaded or linked; no CSP violation either. */
async function assertInert(pc) {
  assert.equal(await pc.evaluate(() => window.pwned), undefined, "device text ran as script");
  assert.equal(await pc.locator("img, script:not([src]), iframe").count(), 0, "device text became an element");
  assert.deepEqual(await pc.evaluate(() => [...document.querySelectorAll("a[href]")].map((a) => a.href)), [], "device text became a link");
  assert.deepEqual(await pc.evaluate(() => window.cspViolations), []);
}

test("console: levels, values, errors and page info as text; search, filters, devices and losses", async () => {
  const { pc, key } = await pcPage("insp-console");
  const phone = await fakeDevice("insp-console", key, "phone", false);
  const tablet = await fakeDevice("insp-console", key, "tablet", false);
  await pc.getByTestId("tab-console").click();

  await phone.batch([
    { k: "console", level: "log", args: ["hello %s, %d%c", "world", 42.7, "color: red; background: url(https://evil.example/x)", { a: { b: [1, 2] } }] },
    { k: "console", level: "warn", args: [HOSTILE] },
    { k: "console", level: "error", args: [{ $: "error", name: "TypeError", message: "<b>bad</b>", stack: "TypeError: <b>bad</b>\n    at f (app.js:1:2)" }] },
    { k: "error", source: "uncaught", message: HOSTILE, url: "javascript:alert(1)", line: 3, col: 4, stack: "Error: x\n    at g (app.js:3:4)" },
    { k: "error", source: "rejection", message: "Uncaught (in promise)", value: { $: "obj", class: "Weird", v: { code: 7 } } },
    { k: "page", url: "https://app.example/h5?x=1", title: "<i>News</i>", viewport: [390, 844, 3], userAgent: "UA", timing: { ttfb: 12, domContentLoaded: 80, load: 120 } },
    { k: "console", level: "debug", args: [{ $: "str", head: "abc", len: 10003 }, { $: "map", size: 2, v: [["k", 1], ["j", { $: "cycle" }]] },
      { $: "node", d: "div#app.main" }, { $: "undefined" }, { $: "bin", type: "Uint8Array", len: 1024 }, { $: "fn", name: "onClick" }] },
  ]);
  // The two devices' batches travel on their own sockets: the tablet's goes once the phone's is in.
  await waitText(pc, "console-list", "ƒ onClick()");
  await tablet.batch([{ k: "console", level: "info", args: ["from the tablet"] }]);
  await waitText(pc, "console-list", "from the tablet");
  const list = (await textOf(pc, "console-list")).replace(/\s+/g, " ");
  assert.match(list, /hello world, 42 \{a: \{…\}\}/, "format string applied, %c dropped");
  assert.ok(list.includes(HOSTILE), "hostile console text shown as text");
  assert.match(list, /TypeError: <b>bad<\/b>/);
  assert.match(list, /uncaught/);
  assert.ok(list.includes(`${HOSTILE} javascript:alert(1):3:4`), "a device URL is text");
  assert.match(list, /rejection Uncaught \(in promise\) Weird \{code: 7\}/);
  assert.match(list, /<i>News<\/i> https:\/\/app\.example\/h5\?x=1/);
  assert.match(list, /viewport 390×844 @3x · first byte 12 ms · DOMContentLoaded 80 ms · load 120 ms/);
  assert.match(list, /abc… 10,000 more characters Map\(2\) <div#app\.main> undefined Uint8Array \(1,024 bytes\) ƒ onClick\(\)/);
  // Interleaved, each row with its device's name.
  assert.deepEqual(await pc.locator('[data-testid="console-list"] .pill.dev').allInnerTexts(),
    ["phone", "phone", "phone", "phone", "phone", "phone", "phone", "tablet"]);

  // A folded value opens on a click, built then.
  const row = pc.locator('[data-testid="console-list"] li').first();
  await row.locator("summary").first().click();
  await pc.waitForFunction(() => document.querySelector('[data-testid="console-list"] li .j-children')?.innerText.includes("b:"), null, { timeout: WAIT });
  // A stack folds under its error.
  await pc.locator('[data-testid="console-list"] li.error details.stack summary').click();
  assert.match(await pc.locator('[data-testid="console-list"] li.error details.stack pre').innerText(), /at g \(app\.js:3:4\)/);

  // Search and level chips.
  const shown = () => pc.locator('[data-testid="console-list"] li.crow:not(.notice)').count();
  await pc.getByTestId("console-search").fill("onerror");
  await pc.waitForFunction(() => document.querySelectorAll('[data-testid="console-list"] li.crow').length === 2, null, { timeout: WAIT });
  await pc.getByTestId("console-search").fill("");
  await pc.locator('.chip[data-level="error"]').click();
  await pc.waitForFunction(() => document.querySelectorAll('[data-testid="console-list"] li.lvl-error').length === 0, null, { timeout: WAIT });
  assert.equal(await shown(), 5);
  await pc.locator('.chip[data-level="error"]').click();
  // One device only: its rows, no badges.
  await pc.getByTestId("inspect-device").selectOption({ label: "tablet" });
  assert.equal(await shown(), 1);
  assert.equal(await pc.locator('[data-testid="console-list"] .pill.dev').count(), 0);
  await pc.getByTestId("inspect-device").selectOption("");

  // Losses: the phone's ring let 5 go (their numbers are explained); 6 more go missing on the way.
  await phone.batch([{ k: "console", level: "log", args: ["after the ring"], n: 13 }], { dropped: { console: 4, network: 1 }, droppedBytes: 900 });
  await phone.batch([{ k: "console", level: "log", args: ["after a gap"], n: 20 }]);
  await waitText(pc, "console-list", "after a gap");
  assert.match(await textOf(pc, "console-list"), /5 events lost on the phone \(its buffer was full: 4 console, 1 network\)[\s\S]*after the ring[\s\S]*6 events lost on the way/);
  assert.equal(await textOf(pc, "console-notes"), "5 events lost on the phone · 6 lost on the way");
  // Export JSON: the rows shown, as the events came (and the notices).
  const [saved] = await Promise.all([pc.waitForEvent("download"), pc.getByTestId("console-export").click()]);
  const exported = JSON.parse(readFileSync(await saved.path(), "utf8"));
  assert.equal(exported.length, 12);
  assert.deepEqual(exported[1].args, [HOSTILE]);
  assert.equal(exported.filter((r) => r.kind === "notice").length, 2);
  await assertInert(pc);
  await pc.screenshot({ path: join(ROOT, "test-artifacts", "pc-inspect-console.png"), fullPage: true });
  await phone.close();
  await tablet.close();
  await pc.context().close();
});

const HAR_BODY = JSON.stringify({ items: [1, 2] });

test("network: list, filters, detail, cURL (inert), Send through the app, HAR", async () => {
  const { pc, key } = await pcPage("insp-net");
  const phone = await fakeDevice("insp-net", key, "phone", false);
  await phone.answer("post", { method: "post", result: { ok: true }, cookie: "uid=42", appInfo: null });
  await pc.getByTestId("tab-network").click();

  const dir = mkdtempSync(join(tmpdir(), "tether-curl-"));
  const hostileUrl = `https://evil.example/a'$(touch ${dir}/url)'/x?q=[1-9]&c=\`touch ${dir}/tick\``;
  const hostileBody = `it's $(touch ${dir}/body)\n\`touch ${dir}/body2\`\u0003 rm -rf ~`;
  await phone.batch([
    { k: "network", id: "r1", type: "fetch", phase: "start", method: "GET", url: "https://api.example/v1/items?page=2",
      requestHeaders: [["accept", "application/json"], ["authorization", "‹redacted 10 chars›"], ["accept-encoding", "gzip"]] },
    { k: "network", id: "r2", type: "xhr", phase: "start", method: "POST", url: hostileUrl,
      requestHeaders: [["content-type", "text/plain"], ["x-evil", "'; rm -rf ~; '"], ["x-sub", `$(touch ${dir}/header)`],
        ["x-nl", "a\nrm -rf ~"], ["@/etc/passwd", "x"], ["host", "evil.example"], ["content-length", "5"]], requestBody: hostileBody },
    { k: "network", id: "r1", type: "fetch", phase: "end", status: 200, statusText: "OK", ms: 42,
      responseHeaders: [["content-type", "application/json; charset=utf-8"]], responseBody: HAR_BODY },
    { k: "network", id: "r2", type: "xhr", phase: "end", status: 500, statusText: "Server Error", ms: 7, responseBody: HOSTILE },
    { k: "network", id: "r3", type: "fetch", phase: "start", method: "PUT", url: "https://api.example/v1/upload",
      requestBody: { $: "str", head: "abc", len: 100000 } },
    { k: "network", id: "r3", type: "fetch", phase: "end", status: 201, ms: 300 },
    { k: "network", id: "r4", type: "fetch", phase: "start", method: "GET", url: "https://api.example/a\r\nX-Injected: 1" },
    { k: "network", id: "r5", type: "fetch", phase: "start", method: "GET\r\nX-Injected: 1", url: "https://api.example/b" },
    { k: "network", id: "w1", type: "ws", phase: "open", url: "wss://ws.example/socket" },
    { k: "network", id: "w1", type: "ws", phase: "message", dir: "send", data: "hi" },
    { k: "network", id: "w1", type: "ws", phase: "message", dir: "recv", data: HOSTILE },
  ]);
  await pc.waitForFunction(() => document.querySelectorAll('[data-testid="network-list"] tr[data-id]').length === 6, null, { timeout: WAIT });
  const rows = await pc.locator('[data-testid="network-list"] tr[data-id]').evaluateAll((trs) =>
    trs.filter((tr) => !["r4", "r5"].includes(tr.dataset.id)).map((tr) => [...tr.cells].map((td) => td.innerText)));
  const hostilePath = rows[1][2]; // as the browser's URL parser encodes it
  assert.ok(hostilePath.startsWith("/a'$(touch") && hostilePath.includes("?q=[1-9]"), hostilePath);
  rows[1][2] = "(path)";
  assert.deepEqual(rows, [
    ["200", "GET", "/v1/items?page=2", "fetch · json", "15 B", "42 ms", "phone"],
    ["500", "POST", "(path)", "xhr", `${HOSTILE.length} B`, "7 ms", "phone"],
    ["201", "PUT", "/v1/upload", "fetch", "", "300 ms", "phone"],
    ["open", "GET", "/socket", "ws", "", "", "phone"],
  ]);
  // A line break in the URL or the method (no browser sends one): neither cURL nor replay.
  for (const [id, why] of [["r4", "its URL has control characters"], ["r5", "its method is not a valid method name"]]) {
    await pc.locator(`[data-testid="network-list"] tr[data-id="${id}"]`).click();
    assert.equal(await pc.getByTestId("net-curl").isDisabled(), true, id);
    assert.equal(await pc.getByTestId("net-replay").isDisabled(), true, id);
    assert.equal(await textOf(pc, "net-replay-why"), `Cannot send through the app: ${why}.`);
  }

  // Filters: text, type, failures.
  const count = () => pc.locator('[data-testid="network-list"] tr[data-id]').count();
  await pc.getByTestId("network-search").fill("items");
  assert.equal(await count(), 1);
  await pc.getByTestId("network-search").fill("");
  await pc.getByTestId("network-type").selectOption("ws");
  assert.equal(await count(), 1);
  await pc.getByTestId("network-type").selectOption("");
  await pc.getByTestId("network-errors").check();
  assert.deepEqual(await pc.locator('[data-testid="network-list"] tr[data-id] td:nth-child(1)').allInnerTexts(), ["500"]);
  await pc.getByTestId("network-errors").uncheck();

  // Detail: JSON pretty-printed; a WebSocket's messages, the hostile one as text.
  await pc.locator('[data-testid="network-list"] tr[data-id="r1"]').click();
  assert.equal(await pc.locator('[data-testid="network-detail"] pre.body').innerText(), JSON.stringify({ items: [1, 2] }, null, 2));
  await pc.locator('[data-testid="network-list"] tr[data-id="w1"]').click();
  assert.ok((await textOf(pc, "net-messages")).includes(HOSTILE));
  assert.match(await textOf(pc, "net-replay-why"), /a WebSocket is not a request that can be sent again/);
  assert.equal(await pc.getByTestId("net-curl").isDisabled(), true);
  // A body cut on the phone cannot be sent again.
  await pc.locator('[data-testid="network-list"] tr[data-id="r3"]').click();
  assert.equal(await pc.getByTestId("net-replay").isDisabled(), true);
  assert.match(await textOf(pc, "net-replay-why"), /its body was cut on the phone/);

  // Copy as cURL of the hostile request: exactly this, and inert in a shell.
  await pc.locator('[data-testid="network-list"] tr[data-id="r2"]').click();
  await pc.getByTestId("net-curl").click();
  const q = (s) => `'${s.replaceAll("'", "'\\''")}'`;
  const expected = [
    `curl --url ${q(hostileUrl)}`,
    "--globoff",
    "-H 'content-type: text/plain'",
    `-H 'x-evil: '\\''; rm -rf ~; '\\'''`,
    `-H ${q(`x-sub: $(touch ${dir}/header)`)}`,
    `--data-raw $'it\\x27s $(touch ${dir}/body)\\n\`touch ${dir}/body2\`\\x03 rm -rf ~'`,
  ].join(" \\\n  ");
  const command = await textOf(pc, "curl-text");
  assert.equal(command, expected);
  assert.deepEqual(await pc.getByTestId("curl-note").allInnerTexts(), [
    "x-nl was left out: its value has control characters",
    'a header with an invalid name was left out ("@/etc/passwd")',
  ]);
  // bash runs it with a curl that prints its arguments: each is what the page sent, and no
  // command in them ran; dash (no $'…') runs it too, and runs nothing either.
  const args = execFileSync("bash", ["-c", `curl() { printf '%s\\0' "$@"; }\n${command}`], { encoding: "utf8" }).split("\0").slice(0, -1);
  assert.deepEqual(args, ["--url", hostileUrl, "--globoff", "-H", "content-type: text/plain", "-H", "x-evil: '; rm -rf ~; '",
    "-H", `x-sub: $(touch ${dir}/header)`, "--data-raw", hostileBody]);
  execFileSync("sh", ["-c", `curl() { :; }\n${command}`]);
  for (const f of ["url", "tick", "header", "body", "body2"]) assert.equal(existsSync(join(dir, f)), false, `${f} ran`);
  await pc.screenshot({ path: join(ROOT, "test-artifacts", "pc-inspect-network.png"), fullPage: true });

  // Send through the app: the hostile request, as a post to that device, without the headers
  // a client makes itself or that would not survive; the reply lands in the Request tab.
  await pc.getByTestId("net-replay").click();
  await pc.waitForFunction(() => document.querySelectorAll(".result-card:not(.pending) .reply").length === 1, null, { timeout: WAIT });
  assert.deepEqual(await phone.frames("post"), [{ url: hostileUrl, method: "POST", body: hostileBody,
    headers: { "content-type": "text/plain", "x-evil": "'; rm -rf ~; '", "x-sub": `$(touch ${dir}/header)` } }]);
  assert.equal(await pc.getByTestId("post-url").inputValue(), hostileUrl);
  assert.equal(await pc.getByTestId("target").inputValue(), await phone.page.evaluate(() => got.find((f) => f.type === "welcome").msg.member));
  assert.match(await textOf(pc, "result"), /uid=42/);
  // And a GET: the redacted header is not sent (the app adds its own).
  await pc.getByTestId("tab-network").click();
  await pc.locator('[data-testid="network-list"] tr[data-id="r1"]').click();
  await pc.getByTestId("net-replay").click();
  await pc.waitForFunction(() => document.querySelectorAll(".result-card:not(.pending) .reply").length === 2, null, { timeout: WAIT });
  assert.deepEqual((await phone.frames("post"))[1], { url: "https://api.example/v1/items?page=2", method: "GET", headers: { accept: "application/json" } });

  // Export HAR: the requests shown, as HAR 1.2.
  await pc.getByTestId("tab-network").click();
  const [download] = await Promise.all([pc.waitForEvent("download"), pc.getByTestId("network-har").click()]);
  assert.match(download.suggestedFilename(), /^tether-.*\.har$/);
  const har = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.equal(har.log.version, "1.2");
  assert.deepEqual(har.log.entries.map((e) => [e._id, e.request.method, e.response.status, e._device, e._type]), [
    ["r1", "GET", 200, "phone", "fetch"], ["r2", "POST", 500, "phone", "xhr"], ["r3", "PUT", 201, "phone", "fetch"],
    ["r4", "GET", 0, "phone", "fetch"], ["r5", "GET\r\nX-Injected: 1", 0, "phone", "fetch"], ["w1", "GET", 101, "phone", "ws"]]);
  const [r1, r2, r3, , , w1] = har.log.entries;
  assert.deepEqual(r1.request.queryString, [{ name: "page", value: "2" }]);
  assert.deepEqual(r1.response.content, { size: 15, mimeType: "application/json; charset=utf-8", text: HAR_BODY });
  assert.equal(r1.time, 42);
  assert.deepEqual(r2.request.postData, { mimeType: "text/plain", text: hostileBody });
  assert.match(r3.request.postData.comment, /cut on the phone: 100000 characters/);
  assert.deepEqual(w1._webSocketMessages.map((m) => [m.type, m.data]), [["send", "hi"], ["receive", HOSTILE]]);

  // The device leaves: its requests stay, and cannot be sent through it any more.
  await phone.leave();
  await waitText(pc, "net-replay-why", "has left the room");
  assert.equal(await pc.getByTestId("net-replay").isDisabled(), true);
  await assertInert(pc);
  await phone.close();
  await pc.context().close();
});

test("storage: read; edits greyed without allow, sent right with it; eval: results and refusals", async () => {
  const { pc, key } = await pcPage("insp-store");
  const locked = await fakeDevice("insp-store", key, "locked", false);
  const open = await fakeDevice("insp-store", key, "open", true);
  const stored = { result: { local: [["theme", "dark"], ["tether.device.guard", "{}"], ["x", '<img src=x onerror="window.pwned=1">'], ["big", { $: "str", head: "abc", len: 20000 }]], session: [], cookie: [["uid", "42"]] } };
  await locked.answer("storage", stored);
  await open.answer("storage", stored, { set: { result: { local: [["theme", "light"]], session: [], cookie: [["lang", "zh"]] } } });
  await pc.getByTestId("tab-storage").click();

  // Two devices and none picked: storage goes to one device at a time.
  assert.match(await textOf(pc, "storage-why"), /Pick one device above/);
  await pc.getByTestId("inspect-device").selectOption({ label: "locked" });
  assert.match(await textOf(pc, "storage-why"), /Read only\. This page has no allow hook: the phone refuses every storage edit\./);
  await pc.getByTestId("storage-read").click();
  await waitText(pc, "storage-local", "theme");
  assert.deepEqual(await locked.frames("storage"), [{ op: "read" }]);
  assert.ok((await textOf(pc, "storage-local")).includes('<img src=x onerror="window.pwned=1">'));
  // Without allow, every edit control is greyed, with the reason.
  for (const id of ["storage-edit", "storage-remove", "storage-set-local", "storage-new-key-local", "storage-clear-local", "storage-set-cookie"]) {
    const controls = await pc.getByTestId(id).all();
    assert.ok(controls.length > 0, id);
    for (const c of controls) {
      assert.equal(await c.isDisabled(), true, id);
      assert.match(await c.getAttribute("title"), /no allow hook/, id);
    }
  }

  await pc.getByTestId("inspect-device").selectOption({ label: "open" });
  await pc.getByTestId("storage-read").click();
  await waitText(pc, "storage-local", "theme");
  // The SDK's own key has no edit control; the others do.
  assert.equal(await pc.getByTestId("storage-local").getByTestId("storage-edit").count(), 3);
  // A value the phone cut says so, and can be removed but not edited (the rest would be lost).
  const big = pc.locator('[data-testid="storage-local"] tr[data-key="big"]');
  assert.match(await big.innerText(), /abc … \(cut: 20000 characters in all\)/);
  assert.deepEqual([await big.getByTestId("storage-edit").isDisabled(), await big.getByTestId("storage-remove").isDisabled()], [true, false]);
  assert.match(await pc.locator('[data-testid="storage-local"] tr[data-key="tether.device.guard"]').innerText(), /never editable/);
  await pc.locator('[data-testid="storage-local"] tr[data-key="theme"]').getByTestId("storage-edit").click();
  await pc.getByTestId("storage-value").fill("light");
  await pc.getByTestId("storage-save").click();
  await waitText(pc, "storage-local", "light");
  assert.deepEqual((await open.frames("storage")).at(-1), { op: "set", area: "local", key: "theme", value: "light" });
  await pc.getByTestId("storage-new-key-cookie").fill("lang");
  await pc.getByTestId("storage-new-value-cookie").fill("zh");
  await pc.getByTestId("storage-set-cookie").click();
  await open.page.waitForFunction(() => got.filter((f) => f.type === "storage").length === 3, null, { timeout: WAIT });
  assert.deepEqual((await open.frames("storage")).at(-1), { op: "set", area: "cookie", key: "lang", value: "zh" });
  await pc.screenshot({ path: join(ROOT, "test-artifacts", "pc-inspect-storage.png"), fullPage: true });

  // Eval: greyed where the page has no allow hook; a result, a refusal and a throw where it has.
  await pc.getByTestId("tab-eval").click();
  await pc.getByTestId("inspect-device").selectOption({ label: "locked" });
  assert.equal(await pc.getByTestId("eval-run").isDisabled(), true);
  assert.match(await textOf(pc, "eval-why"), /no allow hook: the phone refuses every eval/);
  await pc.getByTestId("inspect-device").selectOption({ label: "open" });
  await open.answer("eval", { error: { code: "not_allowed", message: "eval is off on this phone" } }, {
    "1 + 1": { result: 2 },
    "boom()": { error: { code: "threw", message: "boom is not defined", value: { $: "error", name: "ReferenceError", message: "boom is not defined" } } },
  });
  await pc.getByTestId("eval-code").fill("1 + 1");
  await pc.getByTestId("eval-code").press("Control+Enter");
  await pc.waitForFunction(() => document.querySelector('[data-testid="eval-output"] .eval-result:not(.muted)')?.innerText.match(/ms 2$/), null, { timeout: WAIT });
  await pc.getByTestId("eval-code").fill("document.cookie");
  await pc.getByTestId("eval-run").click();
  await waitText(pc, "eval-output", "Not allowed on this phone: eval is off on this phone.");
  await pc.getByTestId("eval-code").fill("boom()");
  await pc.getByTestId("eval-run").click();
  await waitText(pc, "eval-output", "ReferenceError: boom is not defined");
  assert.match(await pc.locator('[data-testid="eval-output"] li').first().innerText(), /It threw: boom is not defined\./);
  assert.deepEqual(await open.frames("eval"), [{ code: "1 + 1" }, { code: "document.cookie" }, { code: "boom()" }]);
  assert.deepEqual(await locked.frames("eval"), []);
  await assertInert(pc);
  await pc.screenshot({ path: join(ROOT, "test-artifacts", "pc-inspect-eval.png"), fullPage: true });
  await locked.close();
  await open.close();
  await pc.context().close();
});

test("the page keeps the latest 5,000 rows and 1,000 requests per device, and says how many it let go", async () => {
  const { pc, key } = await pcPage("insp-bounds");
  const phone = await fakeDevice("insp-bounds", key, "phone", false);
  for (let from = 1; from <= 5003; from += 1000) {
    const events = [];
    for (let i = from; i < Math.min(from + 1000, 5004); i++) events.push({ k: "console", level: "log", args: [`row ${i}`] });
    await phone.batch(events);
  }
  const requests = [];
  for (let i = 1; i <= 1002; i++) requests.push({ k: "network", id: `r${i}`, type: "fetch", phase: "start", method: "GET", url: `https://x.example/${i}` });
  await phone.batch(requests);
  await waitText(pc, "console-notes", "3 older rows let go here (this page keeps the latest 5000 per device, 64 MB in all)");
  assert.equal(await pc.locator('[data-testid="console-list"] li.crow').count(), 5000);
  assert.match(await pc.locator('[data-testid="console-list"] li.crow').first().innerText(), /row 4$/);
  await pc.getByTestId("tab-network").click();
  await waitText(pc, "network-notes", "2 older requests let go here (this page keeps the latest 1000 per device, 64 MB in all)");
  assert.equal(await pc.locator('[data-testid="network-list"] tr[data-id]').count(), 1000);
  assert.match(await pc.locator('[data-testid="network-list"] tr[data-id]').first().innerText(), /\/3\b/);
  await phone.close();
  await pc.context().close();
});
