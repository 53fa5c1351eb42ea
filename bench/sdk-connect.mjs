// Scenario 6, the SDK in Chromium: how long a page takes to load it (module + wasm, from
// navigation start), and the time from `connectPc` (and `connectDevice`) to linked, each in a
// fresh room. Starts its own relay (TETHER_RELAY_BIN, release in bench/run) serving the SDK
// from sdk-wasm/pkg; appends JSON lines to --out, as tether-bench does.
//
//   node bench/sdk-connect.mjs --samples 50 --out bench/results/raw.jsonl
import { appendFileSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startRelay, launchBrowser, ROOT, WAIT } from "../tests/browser/harness.mjs";

const { values: opts } = parseArgs({
  options: { samples: { type: "string", default: "50" }, out: { type: "string" } },
});
const samples = Number(opts.samples);

function emit(line) {
  const text = JSON.stringify(line);
  console.log(text);
  if (opts.out) appendFileSync(opts.out, text + "\n");
}

function summary(mode, ms) {
  ms.sort((a, b) => a - b);
  const pct = (p) => ms[Math.min(ms.length - 1, Math.floor(ms.length * p))];
  return { scenario: "sdk", peer: "tether", mode, samples: ms.length, p50_ms: pct(0.5), p99_ms: pct(0.99), max_ms: ms[ms.length - 1] };
}

const size = JSON.parse(readFileSync(join(ROOT, "sdk-wasm", "pkg", "size.json"), "utf8"));
emit({ scenario: "sdk", peer: "tether", mode: "size", ...size });

const relay = await startRelay({ args: ["--rate-limit", "1000000", "--rate-burst", "1000000", "--max-conns-per-ip", "0"] });
const browser = await launchBrowser();
try {
  // Loading: a fresh context (empty cache) per sample.
  const load = [];
  for (let i = 0; i < Math.min(samples, 20); i++) {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(relay.http + "/");
    await page.waitForFunction(() => window.tetherReady === true, null, { timeout: WAIT });
    load.push(await page.evaluate(() => window.tetherReadyAt));
    await context.close();
  }
  emit(summary("page load to SDK ready (fresh cache)", load));

  const context = await browser.newContext();
  const pc = await context.newPage();
  const device = await (await browser.newContext()).newPage();
  for (const p of [pc, device]) {
    await p.goto(relay.http + "/");
    await p.waitForFunction(() => window.tetherReady === true, null, { timeout: WAIT });
  }
  const pcMs = [];
  const deviceMs = [];
  for (let i = 0; i < samples; i++) {
    const room = `sdk-bench-${process.pid}-${i}`;
    const { ms, secret } = await pc.evaluate(async ({ url, room }) => {
      const t0 = performance.now();
      window.s = await tether.connectPc({ url, room });
      return { ms: performance.now() - t0, secret: s.secret };
    }, { url: relay.ws, room });
    pcMs.push(ms);
    deviceMs.push(await device.evaluate(async ({ url, room, secret }) => {
      const t0 = performance.now();
      const d = await tether.connectDevice({ url, room, secret, name: "bench" });
      const ms = performance.now() - t0;
      d.close();
      return ms;
    }, { url: relay.ws, room, secret }));
    await pc.evaluate(() => s.close());
  }
  emit(summary("connectPc to linked", pcMs));
  emit(summary("connectDevice to linked", deviceMs));
} finally {
  await browser.close();
  await relay.stop();
}
