// The H5 device page: what the QR code opens inside the app. It joins the room from the link,
// answers the PC through the app's native bridge, and logs every command it ran. In a normal
// browser (no native bridge) it offers a clearly labelled simulated bridge, off until the user
// ticks it, so the whole flow can be tried with two browser tabs.
//
// What the link may say: the room and its secret, nothing else. Which global is the app's
// bridge is the relay's configuration (`--bridge-names`, in a <meta> tag of this page); a
// `call` reaches only that object's own functions; what the PC may run at all is the Guard's,
// set on the phone.
import { connectDevice, type CommandLog, type DeviceSession, type InspectRequest, type PostRequest } from "tether-sdk";
import { byTestId, clock, describeError, el, jsonView, setStatus, toast } from "./ui";

const params = new URLSearchParams(location.search);
const room = decodeURIComponent(location.pathname.split("/d/")[1] ?? "").replace(/\/$/, "");
const secret = params.get("secret") ?? "";

/**
 * JavaScript's own names, never a bridge or a JS-API (the SDK refuses the same ones): what every
 * object inherits from Object.prototype, code from text, and the globals that are the page itself.
 */
const NEVER = new Set(["eval", "Function", "constructor", "prototype", "__proto__", "toString", "toLocaleString",
  "valueOf", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "__defineGetter__", "__defineSetter__",
  "__lookupGetter__", "__lookupSetter__", "window", "self", "globalThis", "top", "parent", "frames", "document"]);

/** A plain JS identifier, not one of JavaScript's own names: fit to be a bridge or a JS-API. */
function plainName(name: string): boolean {
  return /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/.test(name) && !NEVER.has(name);
}

/** The bridge globals the relay names (`--bridge-names`); "TencentNews" where none does (the Vite dev server). */
const bridgeNames = (document.querySelector<HTMLMetaElement>('meta[name="tether-bridges"]')?.content ?? "TencentNews")
  .split(",").map((n) => n.trim()).filter(plainName);
const isObject = (v: unknown): v is object => typeof v === "object" && v !== null;
/** The first of them that exists here, else the first (for the messages). */
const bridgeName = bridgeNames.find((n) => isObject((window as any)[n])) ?? bridgeNames[0] ?? "TencentNews";
const hasNative = isObject((window as any)[bridgeName]);
const SIMULATE = "tether.device.simulate";

const GUARD = "tether.device.guard";

/**
 * What the PC may run on this phone, set on the phone (kept in localStorage; the link and the
 * PC cannot change it): the JS-APIs allowed (empty: any), the URLs a request may go to (empty:
 * any), and whether to ask before each call and each request.
 */
interface Guard {
  allow: string[];
  urls: string[];
  confirm: boolean;
}

function loadGuard(): Guard {
  const strings = (v: unknown) => (Array.isArray(v) ? v.filter((m: unknown): m is string => typeof m === "string" && m !== "") : []);
  try {
    const g = JSON.parse(localStorage.getItem(GUARD) ?? "{}");
    return { allow: strings(g.allow), urls: strings(g.urls), confirm: g.confirm === true };
  } catch {
    return { allow: [], urls: [], confirm: false };
  }
}

const guardOn = (g: Guard) => g.allow.length > 0 || g.urls.length > 0 || g.confirm;

function renderGuard(guard: Guard) {
  const allow = byTestId("guard-allow") as HTMLInputElement;
  const urls = byTestId("guard-urls") as HTMLInputElement;
  const confirmBox = byTestId("guard-confirm") as HTMLInputElement;
  allow.value = guard.allow.join(", ");
  urls.value = guard.urls.join(" ");
  confirmBox.checked = guard.confirm;
  const parts = [guard.allow.length > 0 ? `only ${guard.allow.join(", ")}` : "any JS-API"];
  if (guard.urls.length > 0) parts.push(`URLs ${guard.urls.join(" ")}`);
  if (guard.confirm) parts.push("asks first");
  byTestId("guard-state").textContent = guardOn(guard) ? `· ${parts.join(", ")}` : "· off";
  byTestId("guard-save").addEventListener("click", () => {
    const next: Guard = {
      allow: allow.value.split(",").map((m) => m.trim()).filter((m) => m !== ""),
      urls: urls.value.split(/[\s,]+/).filter((u) => u !== ""),
      confirm: confirmBox.checked,
    };
    localStorage.setItem(GUARD, JSON.stringify(next));
    location.reload();
  });
}

/**
 * Whether `url` is one the pattern allows: `*` stands for any run of characters and the
 * pattern must cover the whole URL (`https://api.example.com/*`); a pattern without `*` is the
 * URL itself or a prefix of it ending at a path, query or fragment boundary.
 */
function urlMatches(pattern: string, url: string): boolean {
  if (pattern.includes("*")) {
    const re = pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*");
    return new RegExp(`^${re}$`, "s").test(url);
  }
  if (url === pattern) return true;
  return url.startsWith(pattern) && (pattern.endsWith("/") || "/?#".includes(url[pattern.length]));
}

/** Whether the guard lets the PC request `url`: the text sent and its normalised form must both match. */
function urlAllowed(guard: Guard, url: string): boolean {
  if (guard.urls.length === 0) return true;
  let normal: string;
  try {
    normal = new URL(url).href;
  } catch {
    return false;
  }
  return guard.urls.some((p) => urlMatches(p, url) && urlMatches(p, normal));
}

/**
 * The bridge's API function `name`: a data property of the bridge or of a prototype of its own
 * (a bridge built by a class), never one from `Object.prototype`, and no getter run.
 */
function ownFunction(bridge: object, name: string): ((...a: unknown[]) => unknown) | undefined {
  let obj: object | null = bridge;
  for (let depth = 0; depth < 8 && obj !== null && obj !== Object.prototype; depth++) {
    const d = Object.getOwnPropertyDescriptor(obj, name);
    if (d) return typeof d.value === "function" ? d.value : undefined;
    obj = Object.getPrototypeOf(obj);
  }
  return undefined;
}

/**
 * The app's JS-API, called the way the SDK calls it: its own `invoke(method, ...params, cb)`,
 * else its own `bridge[method](...params, cb)`; a name that is not a plain JS-API name, or not
 * the bridge's own function, is refused.
 */
function nativeCall(method: string, args: unknown[]): Promise<unknown> {
  const bridge = (window as any)[bridgeName];
  return new Promise((resolve, reject) => {
    if (!isObject(bridge)) return reject(new Error(`no native bridge: window.${bridgeName} is missing`));
    if (!plainName(method)) return reject(new Error(`refused: ${JSON.stringify(method)} is not a JS-API name`));
    try {
      const invoke = ownFunction(bridge, "invoke");
      const direct = ownFunction(bridge, method);
      if (invoke) invoke.call(bridge, method, ...args, resolve);
      else if (direct) direct.call(bridge, ...args, resolve);
      else reject(new Error(`refused: window.${bridgeName} has neither invoke nor ${method}`));
    } catch (e) {
      reject(e);
    }
  });
}

let nextCallback = 1;

/**
 * A request through the app's network stack, the way the SDK makes it: `bridge.post(url, body,
 * cb, {method, headers}, {})`, else `bridge.postData(url, bodyText, okName, errorName)`.
 */
function nativePost(req: PostRequest): Promise<unknown> {
  const bridge = (window as any)[bridgeName];
  return new Promise((resolve, reject) => {
    if (!isObject(bridge)) return reject(new Error(`no native bridge: window.${bridgeName} is missing`));
    const b = bridge as Record<string, any>;
    const body = req.body ?? {};
    try {
      if (typeof b.post === "function") {
        b.post(req.url, body, resolve, { method: req.method ?? null, headers: req.headers ?? null }, {});
      } else if (typeof b.postData === "function") {
        const n = nextCallback++;
        const [ok, err] = [`__tether_ok_${n}`, `__tether_err_${n}`];
        const w = window as any;
        const done = (f: (v: any) => void) => (v: unknown) => { delete w[ok]; delete w[err]; f(v); };
        w[ok] = done(resolve);
        w[err] = done((e) => reject(e instanceof Error ? e : new Error(typeof e === "string" ? e : JSON.stringify(e))));
        b.postData(req.url, typeof body === "string" ? body : JSON.stringify(body), ok, err);
      } else {
        reject(new Error(`no native bridge: window.${bridgeName}.post or .postData not found`));
      }
    } catch (e) {
      reject(e);
    }
  });
}

/** `run`, behind the phone's guard: a JS-API not allowed, or declined, fails with a clear error the PC sees. */
function guarded(guard: Guard, run: (method: string, args: unknown[]) => unknown) {
  return async (method: string, args: unknown[]): Promise<unknown> => {
    if (guard.allow.length > 0 && !guard.allow.includes(method)) {
      throw new Error(`${method} is not allowed on this phone (its JS-API allowlist: ${guard.allow.join(", ")})`);
    }
    const shown = args.map((a) => JSON.stringify(a)).join(", ");
    if (guard.confirm && !window.confirm(`The PC asks to run ${method}(${shown}) on this phone. Allow it?`)) {
      throw new Error(`${method} was declined on the phone`);
    }
    return run(method, args);
  };
}

/** `run`, behind the phone's guard: a URL not allowed, or a request declined, fails with a clear error the PC sees. */
function guardedPost(guard: Guard, run: (req: PostRequest) => unknown) {
  return async (req: PostRequest): Promise<unknown> => {
    const url = String(req.url ?? "");
    if (!urlAllowed(guard, url)) {
      throw new Error(`${url} is not allowed on this phone (its URL allowlist: ${guard.urls.join(" ")})`);
    }
    const method = req.method ?? (req.body === undefined ? "GET" : "POST");
    if (guard.confirm && !window.confirm(`The PC asks to request ${method} ${url} on this phone. Allow it?`)) {
      throw new Error(`the request to ${url} was declined on the phone`);
    }
    return run(req);
  };
}

/**
 * What the phone's user lets the PC do to this page beyond reading it: run JavaScript, edit
 * its storage. Off each time the page opens, never remembered: a grant lasts while the user
 * watches this page, and nothing a PC writes into storage can turn it on for the next visit
 * (the SDK's `tether.*` keys are not editable from the PC anyway). The checkboxes take effect
 * at once, without the reload the Guard's Save does.
 */
const grants = { eval: false, storage: false };

function renderGrants() {
  for (const what of ["eval", "storage"] as const) {
    const box = byTestId(`guard-${what}`) as HTMLInputElement;
    box.checked = grants[what];
    box.addEventListener("change", () => { grants[what] = box.checked; });
  }
}

/** How much of a PC's code or value the "ask first" dialog shows. */
const SHOWN = 500;

/** The SDK's `inspect.allow`: a PC's eval or storage edit, behind the grants (and "ask first"). */
function allowInspect(guard: Guard) {
  return (req: InspectRequest): boolean => {
    if (!(req.type === "eval" ? grants.eval : grants.storage)) return false;
    // Never a part of it: what is not shown is said, so that a PC cannot hide the payload
    // after 500 harmless characters (a phone's dialog shows little more anyway).
    const shown = (t: string) => t.length > SHOWN ? `${t.slice(0, SHOWN)}\n… and ${t.length - SHOWN} more characters not shown` : t;
    const what = req.type === "eval"
      ? `run this JavaScript on this phone:\n\n${shown(req.code)}`
      : `${req.op} ${req.area === "cookie" ? "cookies" : `${req.area}Storage`}${req.key === undefined ? "" : ` ${JSON.stringify(req.key)}`}${req.op === "set" ? ` = ${shown(JSON.stringify(req.value ?? ""))}` : ""} on this phone`;
    return !guard.confirm || window.confirm(`The PC asks to ${what}\n\nAllow it?`);
  };
}

/** A readable name for this phone, from its user agent. */
function deviceName(): string {
  const ua = navigator.userAgent;
  const os = /iPhone|iPad/.test(ua) ? "iOS" : /Android/.test(ua) ? "Android" : /Mac OS X/.test(ua) ? "macOS" : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "device";
  const app = hasNative ? bridgeName : "browser";
  return `${os} · ${app}`;
}

// The simulated bridge: post through fetch, and a few JS-APIs. Its fetches carry no cookies
// (credentials: "omit"), and never go to the relay's own origin: it is a stand-in for the
// app's network stack, not a way for a PC to act as this browser on the relay.
async function simulatedPost(req: PostRequest): Promise<unknown> {
  const target = new URL(req.url, location.href);
  if (target.origin === location.origin) {
    throw new Error(`refused: the simulated bridge does not fetch the relay's own origin (${location.origin})`);
  }
  const method = req.method ?? (req.body === undefined ? "GET" : "POST");
  const body = req.body === undefined || method === "GET" ? undefined : typeof req.body === "string" ? req.body : JSON.stringify(req.body);
  const res = await fetch(target, { method, headers: req.headers, body, credentials: "omit" });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    /* not JSON: keep the text */
  }
  return { status: res.status, body: parsed, simulated: true };
}

function simulatedCall(method: string, args: unknown[]): unknown {
  switch (method) {
    case "getAppInfo":
      return { simulated: true, userAgent: navigator.userAgent, language: navigator.language, screen: `${screen.width}x${screen.height}` };
    case "login":
      return { isLogined: true, loginType: args[0] ?? "simulated", simulated: true };
    case "toast":
      toast(String(args[0] ?? ""));
      return { shown: true, simulated: true };
    default:
      throw new Error(`${method} is not a simulated JS-API (try getAppInfo, login or toast)`);
  }
}

function renderBridge(useSimulated: boolean, onToggle: (on: boolean) => void) {
  const card = byTestId("bridge");
  card.replaceChildren();
  if (hasNative) {
    card.append(el("p", {}, "Native bridge ", el("code", {}, `window.${bridgeName}`), " found: commands run in the app."));
    return;
  }
  const box = el("input", { type: "checkbox", id: "simulate", testid: "simulate", checked: useSimulated });
  box.addEventListener("change", () => onToggle(box.checked));
  card.classList.toggle("simulated", useSimulated);
  card.append(
    el("p", {}, el("strong", {}, "No native bridge here"), ` (window.${bridgeName} is missing): this is a normal browser, not the app.`),
    el("label", { class: "toggle" }, box,
      el("span", {}, "Use the ", el("strong", {}, "SIMULATED"), " bridge: post through this browser's fetch (no cookies, never this relay); JS-APIs getAppInfo, login and toast.")),
  );
  if (!useSimulated) card.append(el("p", { class: "hint" }, "Off: commands from the PC fail with “no native bridge” until you tick it."));
}

function logEntry(e: CommandLog) {
  const log = byTestId("log");
  log.querySelector(".empty")?.remove();
  const id = `cmd-${e.id.replace(/[^a-zA-Z0-9_-]/g, "_")}`;
  const target = e.type === "post" ? String(e.msg?.url ?? "") : `${e.msg?.method ?? ""}(${(e.msg?.params ?? []).map((p: unknown) => JSON.stringify(p)).join(", ")})`;
  const state = e.state === "running" ? "pending" : e.state === "done" ? "ok" : "bad";
  const item = el("li", { id, class: `log-item ${state}` },
    el("div", { class: "log-head" },
      el("span", { class: `pill ${e.type}` }, e.type),
      el("span", { class: "target-text" }, target),
      el("span", { class: `pill ${state}` }, e.state),
      e.ms !== undefined ? el("span", { class: "muted" }, `${e.ms} ms`) : null,
      el("span", { class: "muted" }, clock())),
    e.state === "done" ? el("details", {}, el("summary", {}, "result"), jsonView(e.result, false)) : null,
    e.error ? el("p", { class: "error-text" }, e.error) : null);
  const existing = document.getElementById(id);
  if (existing) existing.replaceWith(item);
  else log.prepend(item);
}

async function main() {
  document.getElementById("room-name")!.textContent = room ? `· ${room}` : "";
  if (!room || !secret) {
    setStatus("unlink");
    byTestId("bridge").append(el("p", { class: "error-text" }, "Open this page from the QR code on the PC page: the link carries the room and its secret."));
    return;
  }
  // Off until the user ticks it (a link alone never starts it); the choice survives the
  // reload that applies it (per tab).
  const simulate = !hasNative && sessionStorage.getItem(SIMULATE) === "on";
  renderBridge(simulate, (on) => {
    sessionStorage.setItem(SIMULATE, on ? "on" : "off");
    location.reload();
  });
  const guard = loadGuard();
  renderGuard(guard);
  renderGrants();
  const checked = guardOn(guard);
  // Commands go to the simulation, or to the app (through the SDK's own bridge unless the
  // guard must look at them first).
  const onCall = simulate ? guarded(guard, simulatedCall) : checked ? guarded(guard, nativeCall) : undefined;
  const onPost = simulate ? guardedPost(guard, simulatedPost) : checked ? guardedPost(guard, nativePost) : undefined;
  setStatus("connecting");
  try {
    // Without a native bridge and without the simulation, the SDK answers each command with
    // a "no native bridge" error, which the PC shows.
    const session: DeviceSession = await connectDevice({
      url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
      room,
      secret,
      name: deviceName(),
      bridge: bridgeName,
      // The PC sees this page's console, errors, network and storage; eval and storage edits
      // only as the grants above allow.
      inspect: { allow: allowInspect(guard) },
      ...(onPost ? { onPost } : {}),
      ...(onCall ? { onCall } : {}),
    });
    // Held for the page's lifetime: the SDK leaves the room when its session object is
    // garbage-collected, which a local of `main` alone would allow once `main` returns.
    (window as any).tetherSession = session;
    session.onStatus(setStatus);
    session.onCommand(logEntry);
    session.onError((e) => toast(describeError(e)));
    byTestId("member").textContent = `member ${session.member}`;
  } catch (e) {
    setStatus("unlink");
    byTestId("bridge").append(el("p", { class: "error-text" }, describeError(e)));
  }
}

void main();
