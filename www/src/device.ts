// The H5 device page: what the QR code opens inside the app. It joins the room from the link,
// answers the PC through the app's native bridge, and logs every command it ran. In a normal
// browser (no native bridge) it offers a clearly labelled simulated bridge, so the whole flow
// can be tried with two browser tabs.
import { connectDevice, type CommandLog, type DeviceSession, type PostRequest } from "tether-sdk";
import { byTestId, clock, describeError, el, jsonView, setStatus, toast } from "./ui";

const params = new URLSearchParams(location.search);
const room = decodeURIComponent(location.pathname.split("/d/")[1] ?? "").replace(/\/$/, "");
const secret = params.get("secret") ?? "";
const bridgeName = params.get("bridge") ?? "TencentNews";
const hasNative = typeof (window as any)[bridgeName] === "object" && (window as any)[bridgeName] !== null;
const SIMULATE = "tether.device.simulate";
const GUARD = "tether.device.guard";

/**
 * What the PC may run on this phone, set on the phone (kept in localStorage; the link and the
 * PC cannot change it): the JS-APIs allowed (empty: any), and whether to ask before each call.
 */
interface Guard {
  allow: string[];
  confirm: boolean;
}

function loadGuard(): Guard {
  try {
    const g = JSON.parse(localStorage.getItem(GUARD) ?? "{}");
    const allow = Array.isArray(g.allow) ? g.allow.filter((m: unknown): m is string => typeof m === "string" && m !== "") : [];
    return { allow, confirm: g.confirm === true };
  } catch {
    return { allow: [], confirm: false };
  }
}

function renderGuard(guard: Guard) {
  const allow = byTestId("guard-allow") as HTMLInputElement;
  const confirmBox = byTestId("guard-confirm") as HTMLInputElement;
  allow.value = guard.allow.join(", ");
  confirmBox.checked = guard.confirm;
  const on = guard.allow.length > 0 || guard.confirm;
  byTestId("guard-state").textContent = on
    ? `· ${guard.allow.length > 0 ? `only ${guard.allow.join(", ")}` : "any JS-API"}${guard.confirm ? ", asks first" : ""}`
    : "· off";
  byTestId("guard-save").addEventListener("click", () => {
    const next: Guard = {
      allow: allow.value.split(",").map((m) => m.trim()).filter((m) => m !== ""),
      confirm: confirmBox.checked,
    };
    localStorage.setItem(GUARD, JSON.stringify(next));
    location.reload();
  });
}

/** The app's JS-API, called the way the SDK calls it: `invoke(method, ...params, cb)`, else `bridge[method](...params, cb)`. */
function nativeCall(method: string, args: unknown[]): Promise<unknown> {
  const bridge = (window as any)[bridgeName];
  return new Promise((resolve, reject) => {
    if (!bridge) return reject(new Error(`no native bridge: window.${bridgeName} is missing`));
    try {
      if (typeof bridge.invoke === "function") bridge.invoke(method, ...args, resolve);
      else if (typeof bridge[method] === "function") bridge[method](...args, resolve);
      else reject(new Error(`window.${bridgeName} has neither invoke nor ${method}`));
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



/** A readable name for this phone, from its user agent. */
function deviceName(): string {
  const ua = navigator.userAgent;
  const os = /iPhone|iPad/.test(ua) ? "iOS" : /Android/.test(ua) ? "Android" : /Mac OS X/.test(ua) ? "macOS" : /Windows/.test(ua) ? "Windows" : /Linux/.test(ua) ? "Linux" : "device";
  const app = hasNative ? bridgeName : "browser";
  return `${os} · ${app}`;
}

// The simulated bridge: post through fetch, and a few JS-APIs.
async function simulatedPost(req: PostRequest): Promise<unknown> {
  const method = req.method ?? (req.body === undefined ? "GET" : "POST");
  const body = req.body === undefined || method === "GET" ? undefined : typeof req.body === "string" ? req.body : JSON.stringify(req.body);
  const res = await fetch(req.url, { method, headers: req.headers, body, credentials: "include" });
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
      el("span", {}, "Use the ", el("strong", {}, "SIMULATED"), " bridge: post through fetch; JS-APIs getAppInfo, login and toast.")),
  );
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
  // The choice survives the reload that applies it (per tab).
  const simulate = !hasNative && sessionStorage.getItem(SIMULATE) !== "off";
  renderBridge(simulate, (on) => {
    sessionStorage.setItem(SIMULATE, on ? "on" : "off");
    location.reload();
  });
  const guard = loadGuard();
  renderGuard(guard);
  const guardOn = guard.allow.length > 0 || guard.confirm;
  // Calls go to the simulation, or to the app (through the SDK's own bridge unless the guard
  // must look at them first).
  const onCall = simulate ? guarded(guard, simulatedCall) : guardOn ? guarded(guard, nativeCall) : undefined;
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
      ...(simulate ? { onPost: simulatedPost } : {}),
      ...(onCall ? { onCall } : {}),
    });
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
