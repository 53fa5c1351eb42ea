// The PC page's store of what the devices' pages sent (www/src/inspect/store.ts), in Node with
// small limits: every list is bounded, the oldest go first and are counted, the bytes held stay
// under the budget across devices, a device that left is forgotten once nothing of it is left,
// and losses on the phone and on the way are told apart. (No browser: the file is transpiled
// with the pages' own TypeScript.)
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { ROOT } from "./harness.mjs";

const ts = createRequire(join(ROOT, "www", "package.json"))("typescript");
const source = readFileSync(join(ROOT, "www", "src", "inspect", "store.ts"), "utf8");
const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
const { InspectStore, LIMITS } = await import(`data:text/javascript;base64,${Buffer.from(js).toString("base64")}`);

/** A store with these limits, and every change it announced. */
function store(limits = {}) {
  const s = new InspectStore({ ...LIMITS, ...limits });
  const changes = [];
  s.listen((c) => changes.push(c));
  return { s, changes };
}

let n = 0;
const log = (device, text, extra = {}) => ({ device, kind: "console", at: 1, n: ++n, level: "log", args: [text], ...extra });
const net = (device, id, phase, extra = {}) => ({ device, kind: "network", at: 1, n: ++n, id, type: "ws", phase, ...extra });

test("each device's rows, requests and messages are bounded: the oldest go and are counted", () => {
  const { s, changes } = store({ rows: 3, requests: 2, messages: 2 });
  for (let i = 1; i <= 5; i++) s.push(log("d1", `row ${i}`));
  s.push(log("d2", "other device"));
  assert.deepEqual(s.rows("d1").map((r) => r.e.args[0]), ["row 3", "row 4", "row 5"]);
  assert.deepEqual(s.rows("").map((r) => r.e.args[0]), ["row 3", "row 4", "row 5", "other device"], "interleaved by arrival");
  assert.deepEqual(changes.filter((c) => c.t === "rowGone").map((c) => [c.row.e.args[0], c.row.gone]), [["row 1", true], ["row 2", true]]);
  assert.equal(s.losses("d1").rows, 2);
  assert.equal(s.losses("d2").rows, 0);

  // Requests merge by id; a third id lets the first go.
  s.push(net("d1", "a", "open", { url: "wss://x/a" }));
  for (let i = 1; i <= 3; i++) s.push(net("d1", "a", "message", { dir: "recv", data: `m${i}` }));
  s.push(net("d1", "b", "open"));
  const a = s.entries("d1")[0];
  assert.deepEqual([a.id, a.f.url, a.messages.map((m) => m.data), a.messagesLetGo], ["a", "wss://x/a", ["m2", "m3"], 1]);
  s.push(net("d1", "c", "open"));
  assert.deepEqual(s.entries("d1").map((e) => e.id), ["b", "c"]);
  assert.equal(a.gone, true);
  assert.equal(s.losses("d1").requests, 1);
});

test("past the byte budget the oldest things go, whatever their device; a device that left is forgotten", () => {
  const { s, changes } = store({ bytes: 2900 });
  const present = new Set(["here"]);
  s.present = (d) => present.has(d);
  const big = "x".repeat(800);
  s.push(log("gone", big));
  s.push(log("here", big));
  s.push(net("gone", "r", "start", { type: "fetch", url: "https://x/", requestBody: big }));
  assert.ok(s.held() <= 2900, `${s.held()} bytes held`);
  s.push(log("here", big));
  s.push(log("here", big));
  assert.ok(s.held() <= 2900, `${s.held()} bytes held`);
  // The first row and the request of "gone" went, oldest first; with nothing left of it, it is forgotten.
  assert.deepEqual(s.known(), ["here"]);
  assert.deepEqual(changes.filter((c) => c.t === "forgot"), [{ t: "forgot", device: "gone" }]);
  assert.equal(s.rows("here").length, 3);
  // "here" is in the room: emptied, it stays known.
  for (let i = 0; i < 4; i++) s.push({ device: "here", kind: "storage", at: 1, n: ++n, area: "local", op: "set", key: "k", value: big });
  assert.ok(s.held() <= 2900);
  assert.equal(s.rows("here").length, 0);
  assert.deepEqual(s.known(), ["here"]);
  assert.ok(s.writes("here").list.length < 4);

  // Clearing gives the bytes back.
  s.push(log("here", "small"));
  const before = s.held();
  s.clearRows("");
  assert.ok(s.held() < before);
  s.reset();
  assert.equal(s.held(), 0);
  assert.deepEqual(s.known(), []);
});

test("losses: the phone's dropped notice explains its gap; any other gap is lost on the way", () => {
  const { s } = store();
  const ev = (num) => ({ device: "d", kind: "console", at: 1, n: num, level: "log", args: [String(num)] });
  s.push(ev(1));
  s.push(ev(2));
  // The ring let 4 go (numbers 3 to 6): no loss on the way.
  s.push({ device: "d", kind: "dropped", at: 1, counts: { console: 3, network: 1, "<b>junk</b>": 9, error: "many" }, bytes: 10 });
  s.push(ev(7));
  // 8 and 9 never came.
  s.push(ev(10));
  // A new session of the page starts again at 1: not a gap.
  s.push(ev(1));
  assert.deepEqual(s.losses("d"), { phone: 4, way: 2, rows: 0, requests: 0 });
  assert.deepEqual(s.rows("d").filter((r) => r.kind === "notice").map((r) => r.text), [
    "4 events lost on the phone (its buffer was full: 3 console, 1 network)",
    "2 events lost on the way (missing from the device's numbering: dropped for a slow PC, or by a page filter that threw)",
  ]);
  // A dropped notice explains only the gap right after it.
  s.push({ device: "d", kind: "dropped", at: 1, counts: { console: 5 }, bytes: 1 });
  s.push(ev(2));
  s.push(ev(5));
  assert.equal(s.losses("d").way, 4);
  // Junk is ignored: no device, not an object, a count that is not a number.
  for (const junk of [null, 5, "x", { kind: "console" }, { device: "d", kind: "dropped", counts: { console: -3 } }]) s.push(junk);
  assert.equal(s.losses("d").phone, 9);
});

test("a request's phases replace its fields, so one socket that reopens for ever holds what it shows", () => {
  const { s } = store();
  s.push(net("d1", "es", "start", { type: "sse", url: "http://x/stream" }));
  s.push(net("d1", "es", "open"));
  s.push(net("d1", "es", "error"));
  const once = s.held();
  for (let i = 0; i < 1000; i++) {
    s.push(net("d1", "es", "open"));
    s.push(net("d1", "es", "error"));
  }
  assert.equal(s.held(), once, "reopening adds nothing held");
  assert.equal(s.entries("d1")[0].f.phase ?? s.entries("d1")[0].phase, "error");
});

test("a time no Date can hold is taken as the time it arrived (a hostile `at` cannot break exports)", () => {
  const { s } = store();
  const before = Date.now();
  s.push(log("d1", "from far away", { at: 1e300 }));
  s.push(net("d1", "r", "start", { type: "fetch", url: "http://x/", at: -1e300 }));
  const [row] = s.rows("d1");
  assert.ok(row.at >= before && row.at <= Date.now(), String(row.at));
  assert.doesNotThrow(() => new Date(s.entries("d1")[0].startAt).toISOString());
});
