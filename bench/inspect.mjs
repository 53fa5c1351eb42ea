// Scenario 7, seeing inside the page: Tether's inspector beside vConsole and eruda (both from
// npm, pinned in bench/peers), in the same headless Chromium and the same test page, served by a
// plain Node server of its own (no CSP, one origin). For each tool:
//
// - bytes: what the page downloads for the tool (JS and wasm), gzip -9, cross-checked against
//   the page's own resource list (so nothing else loaded);
// - ready: navigation start to the tool ready (vConsole: `new VConsole()` returned; eruda:
//   `eruda.init()` returned), p50/p99 over fresh contexts;
// - per console.log and per fetch: the page's main-thread time (CDP `Performance.getMetrics`,
//   TaskDuration) over N calls plus a second of settling (a tool that renders later pays then),
//   divided by N, less the same with no tool (the floor: Chromium's own console and fetch);
// - the JS heap after the logs (a tool that keeps every logged object grows it).
//
// Appends JSON lines to --out as tether-bench does (`scenario: "inspect"`).
//
//   node bench/inspect.mjs --samples 20 --logs 5000 --fetches 300 --out bench/results/raw.jsonl
import { appendFileSync, existsSync, readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { execFileSync } from "node:child_process";
import { launchBrowser, ROOT, WAIT } from "../tests/browser/harness.mjs";

const { values: opts } = parseArgs({
  options: {
    samples: { type: "string", default: "20" },
    logs: { type: "string", default: "5000" },
    fetches: { type: "string", default: "300" },
    tools: { type: "string", default: "none,vconsole,eruda,tether" },
    out: { type: "string" },
  },
});
const SAMPLES = Number(opts.samples);
const LOGS = Number(opts.logs);
const FETCHES = Number(opts.fetches);

function emit(line) {
  const text = JSON.stringify({ scenario: "inspect", ...line });
  console.log(text);
  if (opts.out) appendFileSync(opts.out, text + "\n");
}

const PEERS = join(ROOT, "bench", "peers", "node_modules");
const PKG = join(ROOT, "sdk-wasm", "pkg");

// What each tool loads (served path → file) and how the page starts it. `ready` is set to
// performance.now() once the tool is ready.
const TOOLS = {
  none: { files: {}, boot: `window.ready = performance.now();` },
  vconsole: {
    files: { "/vconsole.min.js": join(PEERS, "vconsole", "dist", "vconsole.min.js") },
    head: `<script src="/vconsole.min.js"></script>`,
    boot: `window.vc = new VConsole(); window.ready = performance.now();`,
  },
  eruda: {
    files: { "/eruda.js": join(PEERS, "eruda", "eruda.js") },
    head: `<script src="/eruda.js"></script>`,
    boot: `eruda.init(); window.ready = performance.now();`,
  },
};
// Tether's inspector, once the SDK package carries it (issue #18): its files are in size.json.
const size = existsSync(join(PKG, "size.json")) ? JSON.parse(readFileSync(join(PKG, "size.json"), "utf8")) : {};
if (size.inspect) {
  TOOLS.tether = {
    files: Object.fromEntries(
      (size.inspect.loads ?? []).map((f) => [`/sdk/${f}`, join(PKG, f)]),
    ),
    boot: `import("/sdk/index.js").then((t) => t.startInspector()).then(() => { window.ready = performance.now(); });`,
    module: true,
  };
}

function page(tool) {
  const t = TOOLS[tool];
  const type = t.module ? ` type="module"` : "";
  return `<!doctype html><html><head><meta charset="utf-8"><title>inspect bench: ${tool}</title>${t.head ?? ""}</head>` +
    `<body><p>bench page</p><script${type}>${t.boot}</script></body></html>`;
}

const server = createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname === "/") {
    const tool = url.searchParams.get("tool");
    if (!TOOLS[tool]) return res.writeHead(404).end();
    res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    return res.end(page(tool));
  }
  if (url.pathname === "/small.json") {
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
    return res.end(JSON.stringify({ id: 1, name: "small", tags: ["a", "b"], nested: { x: 1, y: [1, 2, 3] } }));
  }
  for (const t of Object.values(TOOLS)) {
    const file = t.files[url.pathname];
    if (file) {
      const type = file.endsWith(".wasm") ? "application/wasm" : "text/javascript";
      res.writeHead(200, { "content-type": type });
      return res.end(readFileSync(file));
    }
  }
  res.writeHead(404).end();
});
await new Promise((r) => server.listen(0, "127.0.0.1", r));
const origin = `http://127.0.0.1:${server.address().port}`;

const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];
const tools = opts.tools.split(",").filter((t) => {
  if (TOOLS[t]) return true;
  emit({ peer: t, mode: "skipped", why: t === "tether" ? "the SDK package has no inspector yet" : "unknown tool" });
  return false;
});

const browser = await launchBrowser();
const floor = {};
try {
  for (const tool of tools) {
    // Bytes: each file the tool loads, gzip -9 (the page is checked to load exactly these).
    let gzip = 0;
    let raw = 0;
    for (const file of Object.values(TOOLS[tool].files)) {
      const bytes = readFileSync(file);
      raw += bytes.length;
      gzip += execFileSync("gzip", ["-9c", file], { maxBuffer: 64 << 20 }).length; // GNU gzip, as build-sdk
    }
    // Ready: a fresh context (empty cache) per sample.
    const ready = [];
    for (let i = 0; i < SAMPLES; i++) {
      const context = await browser.newContext();
      const p = await context.newPage();
      await p.goto(`${origin}/?tool=${tool}`);
      await p.waitForFunction(() => typeof window.ready === "number", null, { timeout: WAIT });
      ready.push(await p.evaluate(() => window.ready));
      if (i === 0) {
        const loaded = await p.evaluate(() =>
          performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname).filter((n) => n !== "/favicon.ico"),
        );
        const expected = Object.keys(TOOLS[tool].files);
        const extra = loaded.filter((n) => !expected.includes(n));
        if (extra.length) emit({ peer: tool, mode: "warning", why: `loaded more than counted: ${extra.join(", ")}` });
      }
      await context.close();
    }
    emit({ peer: tool, mode: "bytes", gzip, raw, files: Object.keys(TOOLS[tool].files) });
    emit({ peer: tool, mode: "ready", samples: ready.length, p50_ms: pct(ready, 0.5), p99_ms: pct(ready, 0.99) });

    // Per-call costs, in one page with the tool ready.
    const context = await browser.newContext();
    const p = await context.newPage();
    await p.goto(`${origin}/?tool=${tool}`);
    await p.waitForFunction(() => typeof window.ready === "number", null, { timeout: WAIT });
    const cdp = await context.newCDPSession(p);
    await cdp.send("Performance.enable");
    const busy = async () => {
      const { metrics } = await cdp.send("Performance.getMetrics");
      return metrics.find((m) => m.name === "TaskDuration").value * 1000; // ms
    };
    const settle = () => p.evaluate(() => new Promise((r) => setTimeout(r, 1000)));
    await settle();

    let before = await busy();
    const logWall = await p.evaluate((n) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        console.log("row", i, { id: i, name: "user" + i, tags: ["a", "b"], nested: { x: 1 } });
      }
      return performance.now() - t0;
    }, LOGS);
    await settle();
    const logMs = (await busy()) - before;
    const heap = (await cdp.send("Runtime.getHeapUsage")).usedSize;

    before = await busy();
    const fetchWall = await p.evaluate(async (n) => {
      const lat = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        await fetch("/small.json").then((r) => r.json());
        lat.push(performance.now() - t0);
      }
      lat.sort((a, b) => a - b);
      return lat[Math.floor(lat.length / 2)];
    }, FETCHES);
    await settle();
    const fetchMs = (await busy()) - before;
    await context.close();

    const perLog = (logMs * 1000) / LOGS; // µs
    const perFetch = (fetchMs * 1000) / FETCHES;
    if (tool === "none") Object.assign(floor, { perLog, perFetch, heap });
    emit({
      peer: tool,
      mode: "per call",
      logs: LOGS,
      fetches: FETCHES,
      log_us: perLog,
      log_over_floor_us: tool === "none" ? 0 : perLog - (floor.perLog ?? 0),
      log_loop_wall_ms: logWall,
      fetch_us: perFetch,
      fetch_over_floor_us: tool === "none" ? 0 : perFetch - (floor.perFetch ?? 0),
      fetch_p50_ms: fetchWall,
      heap_after_logs: heap,
    });
  }
} finally {
  await browser.close();
  server.close();
}
