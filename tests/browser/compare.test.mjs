// The PC page's side-by-side comparison of several devices' replies (www/src/compare.ts), in
// Node: the paths it flattens to, which rows it marks, what a missing field counts as, and its
// bounds on what a device can make it draw. (No browser: the file is transpiled with the
// pages' own TypeScript.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { ROOT } from "./harness.mjs";

const ts = createRequire(join(ROOT, "www", "package.json"))("typescript");
const source = readFileSync(join(ROOT, "www", "src", "compare.ts"), "utf8");
const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
const { compare, comparable, flatten, shown, MAX_DEPTH, MAX_LEAVES, MAX_SHOWN } =
  await import(`data:text/javascript;base64,${Buffer.from(js).toString("base64")}`);

test("replies flatten to their leaves; the rows that differ are marked, a missing one differs", () => {
  const ios = comparable({ result: { status: 200, body: { uid: 42, tags: ["a", "b"], "x-y z": 1 } }, cookie: "uid=42", appInfo: { os: "ios" }, error: null });
  const android = comparable({ result: { status: 200, body: { uid: 43, tags: ["a"], "x-y z": 1 } }, cookie: "uid=42", appInfo: { os: "android" } });
  assert.deepEqual([...flatten(ios).keys()], [
    "result.status", "result.body.uid", "result.body.tags[0]", "result.body.tags[1]", 'result.body["x-y z"]', "cookie", "appInfo.os",
  ]);
  const rows = compare([ios, android]);
  const differing = rows.filter((r) => r.differs).map((r) => r.path);
  assert.deepEqual(differing, ["result.body.uid", "result.body.tags[1]", "appInfo.os"]);
  const tags1 = rows.find((r) => r.path === "result.body.tags[1]");
  assert.deepEqual(tags1.values, ['"b"', undefined]);
  assert.equal(shown(tags1.values[1]), "(absent)");
  // The same replies: nothing differs. An error on one side only: its row differs.
  assert.equal(compare([ios, ios]).some((r) => r.differs), false);
  const failed = comparable({ result: null, error: { message: "denied" } });
  assert.deepEqual(compare([comparable({ result: null }), failed]).filter((r) => r.differs).map((r) => r.path), ["error.message"]);
});

test("types count: 1 and \"1\" differ, {} and [] are leaves and differ", () => {
  const rows = compare([{ a: 1, b: {}, c: null }, { a: "1", b: [], c: null }]);
  assert.deepEqual(rows.map((r) => [r.path, r.differs]), [["a", true], ["b", true], ["c", false]]);
});

test("bounded: past MAX_DEPTH a subtree is one leaf, past MAX_LEAVES the rest is one row", () => {
  let deep = { v: 1 };
  for (let i = 0; i < MAX_DEPTH + 5; i++) deep = { d: deep };
  const flat = flatten(deep);
  assert.equal(flat.size, 1);
  const [[path, text]] = [...flat];
  assert.equal(path.split(".").length, MAX_DEPTH);
  assert.match(text, /"v":1/);

  const wide = Object.fromEntries(Array.from({ length: MAX_LEAVES * 3 }, (_, i) => [`k${i}`, i]));
  const many = flatten({ result: wide });
  assert.equal(many.size, MAX_LEAVES);
  assert.match([...many.keys()].at(-1), /^result\.…$/);
  // A difference past the cap still shows, in the last row.
  const other = { ...wide, [`k${MAX_LEAVES * 3 - 1}`]: "changed" };
  const rows = compare([{ result: wide }, { result: other }]);
  assert.equal(rows.length, MAX_LEAVES);
  assert.deepEqual(rows.filter((r) => r.differs).map((r) => r.path), ["result.…"]);

  // A huge result does not crowd out the other fields: the same 600 items, other cookies.
  const items = Array.from({ length: 600 }, (_, i) => ({ id: i }));
  const ios = comparable({ result: { list: items, more: true }, cookie: "uid=7" });
  const android = comparable({ result: { list: items, more: false }, cookie: "uid=42" });
  const diff = compare([ios, android]).filter((r) => r.differs).map((r) => r.path);
  assert.deepEqual(diff, ["result.…", "cookie"], "the rest of the outer level, and the cookie");
  // Every level left unfinished has its row: a difference deep past the cap is seen.
  const deepRows = [...flatten({ result: { a: { b: items, c: 1 }, d: 2 } }).keys()];
  assert.deepEqual(deepRows.slice(-3), ["result.a.b.…", "result.a.…", "result.…"]);

  assert.equal(shown("x".repeat(MAX_SHOWN + 50)).length < MAX_SHOWN + 40, true);
  assert.match(shown("x".repeat(MAX_SHOWN + 50)), /… \(250 characters\)$/);
});
