// The npm package as a user gets it: `npm pack`, installed into a Vite project, bundled, and
// run in Chromium against a real relay.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, startRelay, launchBrowser, WAIT } from "./harness.mjs";

let browser;
before(async () => { browser = await launchBrowser(); });
after(async () => { await browser?.close(); });

const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

test("npm pack gives a package that Vite bundles and a browser runs", async () => {
  const work = mkdtempSync(join(tmpdir(), "tether-vite-"));
  const packed = JSON.parse(run("npm", ["pack", join(ROOT, "sdk-wasm", "pkg"), "--json", "--pack-destination", work], work));
  const files = packed[0].files.map((f) => f.path).sort();
  // The inspector's JS shim, where wasm-bindgen puts it (the hash is its crate's).
  const shim = files.filter((f) => f.startsWith("snippets/"));
  assert.equal(shim.length, 1, `one shim: ${shim}`);
  assert.match(shim[0], /^snippets\/tether-sdk-inspect-[0-9a-f]+\/src\/web\/hooks\.js$/);
  assert.deepEqual(files.filter((f) => !f.startsWith("snippets/")), [
    "README.md", "index.d.ts", "index.js", "package.json", "tether-global.js", "tether.js", "tether_inspect.js", "tether_inspect_bg.wasm",
    "tether_sdk.d.ts", "tether_sdk.js", "tether_sdk_bg.wasm",
  ]);

  const app = join(work, "app");
  run("mkdir", ["-p", app], work);
  writeFileSync(join(app, "package.json"), JSON.stringify({
    name: "vite-app", private: true, type: "module",
    dependencies: { "tether-sdk": `file:${join(work, packed[0].filename)}` },
  }));
  writeFileSync(join(app, "index.html"), '<!doctype html><meta charset="utf-8"><script type="module" src="/main.js"></script>');
  writeFileSync(join(app, "main.js"), [
    'import { connectPc, connectDevice } from "tether-sdk";',
    "window.connectPc = connectPc;",
    "window.connectDevice = connectDevice;",
    "window.bundled = true;",
  ].join("\n"));
  run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], app);
  // The same Vite the pages are built with (www/).
  run(join(ROOT, "www", "node_modules", ".bin", "vite"), ["build", "--logLevel", "error"], app);
  const assets = readdirSync(join(app, "dist", "assets"));
  // The base module and the inspector's, which Vite splits off behind its dynamic import.
  assert.equal(assets.filter((f) => f.endsWith(".wasm")).length, 2, `both .wasm are emitted as assets: ${assets}`);
  assert.match(readFileSync(join(app, "dist", "index.html"), "utf8"), /assets\/.*\.js/);

  const relay = await startRelay({ www: join(app, "dist") });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.error("page error:", e));
    await page.goto(relay.http + "/");
    await page.waitForFunction(() => window.bundled === true, null, { timeout: WAIT });
    const { status, deviceKey } = await page.evaluate(async (url) => {
      window.pc = await window.connectPc({ url, room: "vite" });
      return { status: pc.status, deviceKey: pc.deviceKey };
    }, relay.ws);
    assert.equal(status, "linked");
    const wasmLoaded = () => page.evaluate(() =>
      performance.getEntriesByType("resource").filter((e) => e.name.endsWith(".wasm")).length);
    assert.equal(await wasmLoaded(), 1, "the inspector is not fetched until a page asks for it");
    // The bundled inspector loads from its chunk and hooks the console.
    const hooked = await page.evaluate(async ({ url, deviceKey }) => {
      const log = console.log;
      const d = await window.connectDevice({ url, room: "vite", secret: deviceKey, inspect: true });
      const linked = d.status === "linked";
      const during = console.log !== log;
      d.close();
      return { linked, during, after: console.log === log };
    }, { url: relay.ws, deviceKey });
    assert.deepEqual(hooked, { linked: true, during: true, after: true });
    assert.equal(await wasmLoaded(), 2);
  } finally {
    await relay.stop();
  }
});
