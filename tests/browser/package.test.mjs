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
  assert.deepEqual(files, ["README.md", "index.d.ts", "index.js", "package.json", "tether_sdk.d.ts", "tether_sdk.js", "tether_sdk_bg.wasm"]);

  const app = join(work, "app");
  run("mkdir", ["-p", app], work);
  writeFileSync(join(app, "package.json"), JSON.stringify({
    name: "vite-app", private: true, type: "module",
    dependencies: { "tether-sdk": `file:${join(work, packed[0].filename)}` },
  }));
  writeFileSync(join(app, "index.html"), '<!doctype html><meta charset="utf-8"><script type="module" src="/main.js"></script>');
  writeFileSync(join(app, "main.js"), [
    'import { connectPc } from "tether-sdk";',
    "window.connectPc = connectPc;",
    "window.bundled = true;",
  ].join("\n"));
  run("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error"], app);
  // The same Vite the pages are built with (www/).
  run(join(ROOT, "www", "node_modules", ".bin", "vite"), ["build", "--logLevel", "error"], app);
  const assets = readdirSync(join(app, "dist", "assets"));
  assert.ok(assets.some((f) => f.endsWith(".wasm")), `the .wasm is emitted as an asset: ${assets}`);
  assert.match(readFileSync(join(app, "dist", "index.html"), "utf8"), /assets\/.*\.js/);

  const relay = await startRelay({ www: join(app, "dist") });
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.error("page error:", e));
    await page.goto(relay.http + "/");
    await page.waitForFunction(() => window.bundled === true, null, { timeout: WAIT });
    const status = await page.evaluate(async (url) => {
      const s = await window.connectPc({ url, room: "vite" });
      return s.status;
    }, relay.ws);
    assert.equal(status, "linked");
  } finally {
    await relay.stop();
  }
});
