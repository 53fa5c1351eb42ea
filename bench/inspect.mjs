// Scenario 7, seeing inside the page: Tether's inspector beside vConsole and eruda (both from
// npm, pinned in bench/peers), in the same headless Chromium and the same test page, served by a
// plain Node server of its own (no CSP, one origin). For each tool:
//
// - bytes: every file the page loaded for the tool (from its own resource list), GNU gzip -9;
// - ready: navigation start to the tool ready (vConsole: `new VConsole()` returned; eruda:
//   `eruda.init()` returned; Tether: `connectDevice({inspect: true})` resolved, linked to a relay
//   this script starts), p50/p99 over fresh contexts;
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
import { join, normalize } from "node:path";
import { parseArgs } from "node:util";
import { execFileSync } from "node:child_process";
import { launchBrowser, ROOT, startRelay, WAIT } from "../tests/browser/harness.mjs";

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
// Tether's inspector, once the SDK package carries it (issue #18): the page connects as a
// device with `inspect: true` to a relay of its own (no PC watching: events go to the phone's
// ring), and counts as ready when `connectDevice` resolved (linked, hooks in).
const size = existsSync(join(PKG, "size.json")) ? JSON.parse(readFileSync(join(PKG, "size.json"), "utf8")) : {};
let relay;
if (size.inspect && opts.tools.split(",").includes("tether")) {
  relay = await startRelay({ args: ["--max-conns-per-ip", "0", "--max-new-rooms-per-ip", "0"] });
  TOOLS.tether = {
    // Whatever the page loads under /sdk/ is served from the package and counted.
    files: {},
    dir: PKG,
    boot: `import("/sdk/index.js").then((t) => t.connectDevice({ url: ${JSON.stringify(relay.ws)},
      room: "bench-" + Math.random().toString(36).slice(2), secret: "bench-secret-0123456789", inspect: true }))
      .then((s) => { window.session = s; window.ready = performance.now(); });`,
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
  const file = fileFor(url.pathname);
  if (file) {
    const type = file.endsWith(".wasm") ? "application/wasm" : "text/javascript";
    res.writeHead(200, { "content-type": type });
    return res.end(readFileSync(file));
  }
  res.writeHead(404).end();
});

/** The file behind a served path: a tool's own, or one of the SDK package under /sdk/. */
function fileFor(path) {
  for (const t of Object.values(TOOLS)) {
    if (t.files[path]) return t.files[path];
    if (t.dir && path.startsWith("/sdk/")) {
      const file = normalize(join(t.dir, path.slice(5)));
      if (file.startsWith(t.dir) && existsSync(file)) return file;
    }
  }
  return undefined;
}

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
    // Ready: a fresh context (empty cache) per sample. The first also lists what the page
    // loaded: those files are the tool's bytes (each gzip -9 with GNU gzip, as build-sdk).
    const ready = [];
    let loaded = [];
    for (let i = 0; i < SAMPLES; i++) {
      const context = await browser.newContext();
      const p = await context.newPage();
      await p.goto(`${origin}/?tool=${tool}`);
      await p.waitForFunction(() => typeof window.ready === "number", null, { timeout: WAIT });
      ready.push(await p.evaluate(() => window.ready));
      if (i === 0) {
        loaded = await p.evaluate(() =>
          performance.getEntriesByType("resource").map((e) => new URL(e.name)).filter((u) => u.port === location.port)
            .map((u) => u.pathname).filter((n) => n !== "/favicon.ico"),
        );
      }
      await context.close();
    }
    let gzip = 0;
    let raw = 0;
    for (const path of new Set(loaded)) {
      const file = fileFor(path);
      if (!file) continue; // the test page's own /small.json is not the tool's
      raw += readFileSync(file).length;
      gzip += execFileSync("gzip", ["-9c", file], { maxBuffer: 64 << 20 }).length;
    }
    const files = [...new Set(loaded)].filter((f) => fileFor(f));
    emit({ peer: tool, mode: "bytes", gzip, raw, files });
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
  await relay?.stop?.();
}
