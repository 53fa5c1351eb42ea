// Helpers for the browser tests: the relay binary on a free port, and Debian's Chromium.
import { spawn } from "node:child_process";
import { mkdtempSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const BIN = process.env.TETHER_RELAY_BIN ?? join(ROOT, "target", "debug", "tether-relay");
export const WAIT = 10_000;

/** A tether-relay process serving the test page and the built SDK. */
export async function startRelay({ listen = "127.0.0.1:0", db, www, args = [] } = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo build -p tether-relay (scripts/test does)`);
  db ??= join(mkdtempSync(join(tmpdir(), "tether-browser-")), "tether.db");
  const child = spawn(BIN, [
    "--listen", listen, "--db", `sqlite://${db}`,
    "--www", www ?? join(ROOT, "tests", "browser", "fixture"), "--sdk", join(ROOT, "sdk-wasm", "pkg"),
    "--log", "warn,tether_relay=info", ...args,
  ], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, NO_COLOR: "1" } });
  const { scheme, addr } = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("relay did not start in time")), WAIT);
    let buf = "";
    child.stdout.on("data", (chunk) => {
      buf += chunk;
      // `on https://ADDR/` when the relay was given --tls-cert and --tls-key.
      const m = buf.match(/on (https?):\/\/([^/\s]+)\//);
      if (m) { clearTimeout(timer); resolve({ scheme: m[1], addr: m[2] }); }
    });
    child.on("exit", (code) => reject(new Error(`relay exited (${code}) before listening`)));
  });
  // RELAY_LOG=1 shows the relay's log (with RUST_LOG=tether_relay=debug for more).
  child.stdout.on("data", (c) => { if (process.env.RELAY_LOG) process.stderr.write(c); });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    addr, db, tls: scheme === "https", http: `${scheme}://${addr}`,
    ws: `${scheme === "https" ? "wss" : "ws"}://${addr}/ws`,
    /** Sends a signal and waits for the process to end. */
    async stop(signal = "SIGTERM") { child.kill(signal); await exited; },
  };
}

/** Headless Debian Chromium with a fresh profile, no background networking (and `extraArgs`). */
export function launchBrowser(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--no-first-run", "--disable-quic", ...extraArgs],
  });
}

/** A page (in its own context, so its own localStorage) with the SDK loaded. */
export async function sdkPage(browser, relay, { initScript } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  if (initScript) await page.addInitScript(initScript);
  await page.goto(relay.http + "/");
  await page.waitForFunction(() => window.tetherReady === true, null, { timeout: WAIT });
  return page;
}

/** A stand-in for the news app's native bridge, as seed 004 calls it. */
export function mockTencentNews() {
  document.cookie = "uid=42";
  window.nativeCalls = [];
  window.TencentNews = {
    post(url, body, callback, options) {
      window.nativeCalls.push({ api: "post", url, body, options });
      const answer = () => callback({ code: 0, url, body, method: options && options.method });
      // With holdNative set, the app keeps the request until the test calls window.release().
      if (window.holdNative) window.release = answer;
      else setTimeout(answer, 5);
    },
    invoke(method, ...args) {
      const callback = args.pop();
      window.nativeCalls.push({ api: "invoke", method, args });
      setTimeout(() => callback({ method, args }), 5);
    },
  };
}

/** Counts WebSocket connections the page opens (to count retries). */
export function countSockets() {
  window.socketsOpened = 0;
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...a) { super(...a); window.socketsOpened += 1; }
  };
}
