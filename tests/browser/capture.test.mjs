// What the inspector captures (#18, increment 5): every console level with its arguments as
// Values, uncaught errors, unhandled rejections, resources that failed to load, page info;
// the page's filter between capture and the sink. An app's own page (the fixture's plain
// origin, no CSP) loads the inspector module and calls `start(config, sink)` itself, as the
// base SDK does, and the test reads what reached the sink.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchBrowser, WAIT } from "./harness.mjs";
import { startAppServer } from "./fixture/app-server.mjs";

const LEVELS = ["log", "info", "warn", "error", "debug", "trace", "assert", "dir", "table",
  "group", "groupCollapsed", "groupEnd", "clear"];

// The app's page: named functions (so stacks name them), and a body to describe.
const SCRIPT = `<script>
  function thrower() { throw new Error("boom"); }
  function rejecter() { return Promise.reject(new Error("nope")); }
  function callerOfTrace() { console.trace("traced", 1); }
</script>`;
// A page that starts the inspector while an image keeps its load event waiting.
const EARLY = `<img src="/hold/early">
<script type="module">
  const insp = await import("/sdk/tether_inspect.js");
  await insp.default();
  window.events = [];
  window.running = insp.start({}, (kind, text) => events.push({ kind, text, e: JSON.parse(text) }));
</script>`;

let browser, app;
before(async () => {
  browser = await launchBrowser();
  app = await startAppServer({ pages: { blank: `<div id="app" class="main  wide">app</div>${SCRIPT}`, early: EARLY } });
});
after(async () => {
  await app?.close();
  await browser?.close();
});

/** The app's page with the inspector's module loaded (not started), and its console. */
async function appPage(path = "/blank.html") {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleSeen = [];
  page.on("console", (m) => consoleSeen.push(`${m.type()}: ${m.text()}`));
  await page.goto(app.origin + path);
  await page.evaluate(async () => {
    window.insp = await import("/sdk/tether_inspect.js");
    await insp.default();
    window.events = [];
    window.sink = (kind, text) => events.push({ kind, text, e: JSON.parse(text) });
  });
  /** Waits until the page's console has shown `line` (a string, or a RegExp to match). */
  const shown = (line) => waitFor(() => consoleSeen.some((l) => (line instanceof RegExp ? line.test(l) : l === line)),
    `the console to show ${line}`);
  /** Waits for the page's events to satisfy `pred` (run in the page); returns them all. */
  const eventsWhen = async (pred, arg) => {
    await page.waitForFunction(pred, arg, { timeout: WAIT });
    return page.evaluate(() => events);
  };
  return { page, consoleSeen, shown, eventsWhen };
}

async function waitFor(cond, what) {
  const end = Date.now() + WAIT;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("every console level is recorded with its arguments as Values, with the caller's stack where the level has one", async () => {
  const { page, shown } = await appPage();
  const events = await page.evaluate(() => {
    const i = insp.start({}, sink);
    const big = 10n ** 20n;
    console.log("row", 1, { id: 1, tags: ["a"], nested: { x: null } }, true);
    console.info(undefined, NaN, -0, Infinity, big, Symbol("s"), 2.5);
    console.warn(function named() {}, new Date(0), /a+/g, new Uint8Array(16));
    console.error(new TypeError("bad thing"));
    console.debug(new Map([["k", { v: 1 }]]), new Set([1, "two"]));
    callerOfTrace();
    console.assert(1 === 1, "not shown");
    console.assert(1 === 2, "failed", { why: "math" });
    console.dir({ a: { b: { c: { d: { e: 1 } } } } });
    console.table([{ x: 1 }, { x: 2 }]);
    console.group("g");
    console.groupCollapsed("gc");
    console.groupEnd();
    console.clear();
    i.stop();
    return events;
  });
  assert.equal(events[0].e.k, "page", "the page event at start comes first");
  const calls = events.slice(1);
  assert.ok(calls.every((c) => c.kind === "console" && c.e.k === "console"), JSON.stringify(calls.map((c) => c.kind)));
  assert.deepEqual(calls.map((c) => c.e.n), calls.map((_, i) => i + 2), "numbered on from the page event, no gap");
  assert.deepEqual(calls.map((c) => c.e.level),
    ["log", "info", "warn", "error", "debug", "trace", "assert", "dir", "table", "group", "group", "groupEnd", "clear"]);
  const args = calls.map((c) => c.e.args);
  assert.deepEqual(args[0], ["row", 1, { id: 1, tags: ["a"], nested: { x: null } }, true]);
  assert.deepEqual(args[1], [{ $: "undefined" }, { $: "num", v: "NaN" }, { $: "num", v: "-0" }, { $: "num", v: "Infinity" },
    { $: "bigint", v: "100000000000000000000" }, { $: "sym", v: "Symbol(s)" }, 2.5]);
  assert.deepEqual(args[2], [{ $: "fn", name: "named" }, { $: "date", v: "1970-01-01T00:00:00.000Z" },
    { $: "regexp", v: "/a+/g" }, { $: "bin", type: "Uint8Array", len: 16 }]);
  assert.equal(args[3][0].$, "error");
  assert.equal(args[3][0].name, "TypeError");
  assert.equal(args[3][0].message, "bad thing");
  assert.match(args[3][0].stack, /^TypeError: bad thing\n/);
  assert.deepEqual(args[4], [{ $: "map", size: 1, v: [["k", { v: 1 }]] }, { $: "set", size: 2, v: [1, "two"] }]);
  assert.deepEqual(args[5], ["traced", 1]);
  assert.deepEqual(args[6], ["failed", { why: "math" }], "a failing assert, without its condition; a passing one is not recorded");
  assert.deepEqual(args[7], [{ a: { b: { c: { d: { $more: 1 } } } } }], "walked four levels deep");
  assert.deepEqual(args[8], [[{ x: 1 }, { x: 2 }]]);
  assert.deepEqual(args.slice(9), [["g"], ["gc"], [], []]);
  // Stacks: error, trace and assert have the caller's (not the wrapper's) first.
  assert.deepEqual(calls.map((c) => "stack" in c.e),
    [false, false, false, true, false, true, true, false, false, false, false, false, false]);
  assert.match(calls[5].e.stack.split("\n")[0], /callerOfTrace/);
  assert.doesNotMatch(calls[5].e.stack, /hooks\.js/, "the wrapper's frame is not in the stack");
  // The page's console still showed each of them.
  await shown(/^log: row 1 \{id: 1, /);
  await shown(/^error: TypeError: bad thing/);
  await shown(/^assert: failed/);
  await page.context().close();
});

test("cycles, DOM nodes, windows, getters that throw and long strings are described, not walked", async () => {
  const { page } = await appPage();
  const [, e] = await page.evaluate(() => {
    const i = insp.start({}, sink);
    const a = { name: "a", list: [1] };
    a.self = a;
    a.list.push(a);
    const tricky = { ok: 1, get bad() { throw new Error("getter"); }, $: "mine" };
    console.log(a, document.getElementById("app"), document.body.firstChild.firstChild, document, window, tricky, "x".repeat(100_000));
    i.stop();
    return events.map((x) => x.e);
  });
  assert.deepEqual(e.args.slice(0, 5), [
    { name: "a", list: [1, { $: "cycle" }], self: { $: "cycle" } },
    { $: "node", d: "div#app.main.wide" },
    { $: "node", d: "#text" },
    { $: "win", class: "HTMLDocument" },
    { $: "win", class: "Window" },
  ]);
  assert.deepEqual(e.args[5], { $: "obj", class: "Object", v: { ok: 1, bad: { $: "threw" }, $: "mine" } });
  assert.equal(e.args[6].$, "str");
  assert.equal(e.args[6].len, 100_000);
  assert.equal(e.args[6].head, "x".repeat(8192));
  await page.context().close();
});

test("an uncaught error and an unhandled rejection, with their stacks", async () => {
  const { page, eventsWhen } = await appPage();
  await page.evaluate(() => {
    window.running = insp.start({}, sink);
    setTimeout(thrower);
    rejecter();
  });
  const events = await eventsWhen(() => events.filter((x) => x.e.k === "error").length >= 2);
  const errors = events.filter((x) => x.e.k === "error");
  assert.ok(errors.every((x) => x.kind === "error"));
  const uncaught = errors.find((x) => x.e.source === "uncaught").e;
  assert.equal(uncaught.message, "Uncaught Error: boom");
  assert.match(uncaught.stack, /^Error: boom\n\s+at thrower /);
  assert.equal(uncaught.url, `${app.origin}/blank.html`);
  assert.ok(uncaught.line > 0 && uncaught.col > 0, `line ${uncaught.line}, col ${uncaught.col}`);
  assert.equal(uncaught.value, undefined, "an Error is said by message and stack, not repeated as a value");
  const rejection = errors.find((x) => x.e.source === "rejection").e;
  assert.equal(rejection.message, "nope");
  assert.match(rejection.stack, /at rejecter /);
  assert.deepEqual([rejection.value.$, rejection.value.name, rejection.value.message], ["error", "Error", "nope"]);

  // A rejection with a plain value, and a thrown non-Error.
  await page.evaluate(() => {
    Promise.reject({ code: 7 });
    setTimeout(() => { throw { code: 8 }; });
  });
  const more = await eventsWhen(() => events.filter((x) => x.e.k === "error").length >= 4);
  const [plain, thrown] = more.filter((x) => x.e.k === "error").slice(2).map((x) => x.e)
    .sort((a, b) => a.source.localeCompare(b.source));
  assert.deepEqual([plain.source, plain.message, plain.value], ["rejection", "Uncaught (in promise)", { code: 7 }]);
  assert.deepEqual([thrown.source, thrown.value], ["uncaught", { code: 8 }]);
  await page.evaluate(() => running.stop());
  await page.context().close();
});

test("a resource that failed to load is recorded, unless it is the SDK's own", async () => {
  const { page } = await appPage();
  const events = await page.evaluate(async (origin) => {
    window.running = insp.start({ own: [`${origin}/sdk/`] }, sink);
    const failed = (el) => new Promise((resolve) => { el.onerror = resolve; document.body.append(el); });
    // Both fail (404); our capture-phase listener has run by the time their own onerror does.
    await failed(Object.assign(document.createElement("script"), { src: "/sdk/missing.js" }));
    await failed(Object.assign(document.createElement("img"), { src: "/missing.png", id: "logo" }));
    await failed(Object.assign(document.createElement("link"), { rel: "stylesheet", href: "/missing.css" }));
    running.stop();
    return events.filter((x) => x.e.k === "error").map((x) => x.e);
  }, app.origin);
  assert.deepEqual(events.map((e) => [e.source, e.message, e.url]), [
    ["resource", "img#logo failed to load", `${app.origin}/missing.png`],
    ["resource", "link failed to load", `${app.origin}/missing.css`],
  ]);
  await page.context().close();
});

test("page info is sent at start and again at load, with the load timing", async () => {
  const { page } = await appPageEarly();
  const first = await page.evaluate(() => events.filter((x) => x.e.k === "page").map((x) => x.e));
  assert.equal(first.length, 1, "only the start's until the page has loaded");
  const info = await page.evaluate(() => ({ ua: navigator.userAgent, w: innerWidth, h: innerHeight, dpr: devicePixelRatio }));
  assert.deepEqual([first[0].n, first[0].url, first[0].title, first[0].viewport, first[0].userAgent],
    [1, `${app.origin}/early.html`, "app", [info.w, info.h, info.dpr], info.ua]);
  assert.equal(first[0].timing?.load, undefined, "not loaded yet");
  assert.ok(first[0].timing.ttfb >= 0);

  app.release("early");
  await page.waitForFunction(() => events.filter((x) => x.e.k === "page").length === 2, null, { timeout: WAIT });
  const second = await page.evaluate(() => events.filter((x) => x.e.k === "page").map((x) => x.e)[1]);
  assert.equal(second.n, 2);
  assert.ok(second.timing.load > 0 && second.timing.load >= second.timing.domContentLoaded,
    `load timing ${JSON.stringify(second.timing)}`);
  await page.evaluate(() => running.stop());
  await page.context().close();
});

/** The page whose own module starts the inspector before its load event (an image held). */
async function appPageEarly() {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(app.origin + "/early.html", { waitUntil: "commit" });
  await page.waitForFunction(() => window.running, null, { timeout: WAIT });
  return { page };
}

test("the page's filter: what it returns is what the sink gets; null drops; a throw drops and leaves a gap", async () => {
  const { page, shown } = await appPage();
  const token = `tok-${Math.random().toString(36).slice(2)}`;
  const out = await page.evaluate((token) => {
    const seen = [];
    const i = insp.start({
      filter(e) {
        seen.push(e.k);
        console.log("the filter saw", e.k); // not recorded (it runs inside the inspector)
        const text = JSON.stringify(e);
        if (text.includes("drop-me")) return null;
        if (text.includes("throw-me")) throw new Error("a broken filter");
        return JSON.parse(text.replaceAll(token, "[token]"));
      },
    }, sink);
    console.log(`Bearer ${token}`, { auth: token, nested: [token] });
    console.log("drop-me");
    console.log("throw-me", token);
    console.warn("after");
    i.stop();
    return { seen, events };
  }, token);
  assert.deepEqual(out.seen, ["page", "console", "console", "console", "console"]);
  for (const x of out.events) assert.ok(!x.text.includes(token), `the token appears nowhere: ${x.text}`);
  assert.deepEqual(out.events.map((x) => [x.e.n, x.e.level ?? x.e.k]), [[1, "page"], [2, "log"], [4, "warn"]],
    "a deliberate drop spends no n; a throw's n is missing, so a PC sees the loss");
  assert.deepEqual(out.events[1].e.args, ["Bearer [token]", { auth: "[token]", nested: ["[token]"] }]);
  assert.ok(!out.events.some((x) => x.text.includes("the filter saw")), "what the filter logs is not recorded");
  await shown("log: the filter saw console");
  await page.context().close();
});

test("the page's console behaves as before: same output, this and return values; stop() restores it all", async () => {
  const { page, shown } = await appPage();
  const out = await page.evaluate((levels) => {
    // A page (or a tool before us) whose console.log returns something and looks at `this`.
    const calls = [];
    const own = function (...args) { calls.push({ self: this === console, args }); return 42; };
    console.log = own;
    const before = Object.fromEntries(levels.map((l) => [l, console[l]]));
    const i = insp.start({}, sink);
    const returned = console.log("a", 1);
    const hooked = levels.filter((l) => console[l] !== before[l]);
    i.stop();
    const restored = levels.filter((l) => console[l] !== before[l]);
    const count = events.length;
    console.log("after stop");
    window.dispatchEvent(new ErrorEvent("error", { message: "after stop" }));
    return { returned, calls, hooked, restored, recorded: events.map((x) => x.e.k), more: events.length - count };
  }, LEVELS);
  assert.equal(out.returned, 42);
  assert.deepEqual(out.calls, [{ self: true, args: ["a", 1] }, { self: true, args: ["after stop"] }]);
  assert.deepEqual(out.hooked, LEVELS);
  assert.deepEqual(out.restored, [], "every original is back");
  assert.deepEqual(out.recorded, ["page", "console"]);
  assert.equal(out.more, 0, "nothing is recorded after stop(): the listeners are gone too");
  await page.evaluate(() => console.info("plain info"));
  await shown("info: plain info");
  await page.context().close();
});
