// The PC debug page: open a room, show its QR code, watch the devices, send requests and
// JS-API calls through them, see every reply, and run things again from history; and see
// inside the devices' pages (console, network, storage, eval: inspect/).
import { connectPc, subscribeAlarms, type AlarmFrame, type AlarmSubscription, type Member, type PcSession, type Reply, type HistoryEntry, type ServerHistoryItem } from "tether-sdk";
import QRCode from "qrcode";
import { byTestId, clock, describeError, el, jsonView, looseJson, setStatus, toast } from "./ui";
import { mountInspector, PANELS } from "./inspect";
import type { Replay } from "./inspect/request";

const LAST_ROOM = "tether.page.room";
const SCHEME = "tether.page.scheme";

let session: PcSession | null = null;
/** Held for the page's lifetime: a subscription whose object is collected stops. */
let alarmSubscription: AlarmSubscription | null = null;
let members: Member[] = [];
/** Result cards by request id, so every device's reply lands in its request's card. */
const cards = new Map<string, HTMLElement>();
/** Replies that arrived before their request's Promise told us the id. */
const early = new Map<string, Reply[]>();

const relayUrl = () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

/** The inspection panels: what the devices' pages log, fetch and store. */
const inspector = mountInspector({ session: () => session, replay });


async function connect(room: string) {
  session?.close();
  session = null;
  cards.clear();
  inspector.reset();
  setStatus("connecting");
  try {
    const s = await connectPc({ url: relayUrl(), room, name: "PC" });
    session = s;
    localStorage.setItem(LAST_ROOM, room);
    const url = new URL(location.href);
    url.searchParams.set("room", room);
    history.replaceState(null, "", url);
    s.onStatus(setStatus);
    s.onDevices((list) => renderDevices(list));
    s.onReply(onReply);
    s.onError((e) => toast(describeError(e)));
    // Watching: the devices' pages that inspect send their events to this page from now on.
    s.onInspect((e) => inspector.push(e));
    await renderQr();
    renderRecent();
  } catch (e) {
    setStatus("unlink");
    toast(describeError(e));
  }
}

async function renderQr() {
  if (!session) return;
  const link = session.deviceLink();
  const template = (document.getElementById("scheme") as HTMLInputElement).value.trim();
  const text = template.includes("{url}") ? template.replace("{url}", encodeURIComponent(link)) : link;
  await QRCode.toCanvas(byTestId<HTMLCanvasElement>("qr"), text, { width: 220, margin: 2, errorCorrectionLevel: "M" });
  byTestId("device-link").textContent = text;
  document.getElementById("copy-link")!.hidden = false;
  const local = /^(localhost|127\.|\[::1\])/.test(location.hostname);
  document.getElementById("qr-hint")!.textContent = local
    ? `This page is open at ${location.hostname}, which a phone cannot reach: run the relay with --listen 0.0.0.0:8080 and open this page at your computer's LAN address so the QR code carries it.`
    : "Scan it with the app (or open the link in a phone's browser to try the simulated bridge).";
}

function renderDevices(list: Member[]) {
  members = list;
  inspector.members(list);
  const ul = byTestId("device-list");
  ul.replaceChildren();
  const devices = list.filter((m) => m.role === "device");
  if (devices.length === 0) ul.append(el("li", { class: "empty" }, "No device yet. Scan the QR code with the app."));
  for (const m of devices) {
    ul.append(
      el("li", { class: m.away ? "device-item away" : "device-item", "data-member": m.id },
        el("div", { class: "device-head" },
          el("strong", {}, m.name ?? "unnamed device"),
          el("span", { class: m.away ? "pill warn" : "pill ok" }, m.away ? "away" : "online"),
          el("code", { class: "muted" }, m.id)),
        m.appInfo ? el("details", { class: "appinfo" }, el("summary", {}, "app info"), jsonView(m.appInfo)) : null),
    );
  }
  const pcs = list.filter((m) => m.role === "pc").length;
  if (pcs > 1) ul.append(el("li", { class: "hint" }, `${pcs} PCs in this room.`));
  // The target picker: "all devices" plus each device.
  const select = byTestId<HTMLSelectElement>("target");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "" }, "all devices"));
  for (const m of devices) select.append(el("option", { value: m.id }, `${m.name ?? m.id}${m.away ? " (away)" : ""}`));
  select.value = devices.some((m) => m.id === chosen) ? chosen : "";
}

function deviceName(id: string) {
  return members.find((m) => m.id === id)?.name ?? id;
}

function replyView(r: Reply): HTMLElement {
  const failed = r.error !== undefined && r.error !== null;
  return el("div", { class: failed ? "reply failed" : "reply", "data-device": r.device },
    el("div", { class: "reply-head" },
      el("strong", {}, deviceName(r.device)),
      el("span", { class: failed ? "pill bad" : "pill ok" }, failed ? "failed" : "ok"),
      el("span", { class: "muted" }, `${r.ms} ms`)),
    failed ? el("div", { class: "kv" }, el("span", { class: "k" }, "error"), jsonView(r.error)) : null,
    el("div", { class: "kv" }, el("span", { class: "k" }, "result"), jsonView(r.result)),
    r.cookie !== undefined && r.cookie !== null ? el("div", { class: "kv" }, el("span", { class: "k" }, "cookie"), el("code", { class: "cookie" }, r.cookie || "(empty)")) : null,
    r.appInfo ? el("details", { class: "kv" }, el("summary", { class: "k" }, "appInfo"), jsonView(r.appInfo)) : null,
  );
}

function onReply(r: Reply) {
  const card = cards.get(r.id);
  if (card) card.querySelector(".replies")!.append(replyView(r));
  else early.set(r.id, [...(early.get(r.id) ?? []), r]);
}

/** Sends a request and shows a card that collects its replies. */
async function run(kind: "post" | "call", target: string, send: (s: PcSession) => Promise<Reply>) {
  const results = byTestId("result");
  results.querySelector(".empty")?.remove();
  const to = byTestId<HTMLSelectElement>("target").value;
  const card = el("article", { class: "result-card pending" },
    el("header", {},
      el("span", { class: `pill ${kind}` }, kind),
      el("code", { class: "target-text" }, target),
      el("span", { class: "muted" }, `→ ${to ? deviceName(to) : "all devices"} · ${clock()}`)),
    el("div", { class: "replies" }));
  results.prepend(card);
  if (!session) {
    card.classList.replace("pending", "error");
    card.append(el("p", { class: "error-text" }, "Connect to a room first."));
    return;
  }
  try {
    const first = await send(session);
    cards.set(first.id, card);
    card.classList.remove("pending");
    const replies = card.querySelector(".replies")!;
    const waiting = early.get(first.id) ?? [first];
    early.delete(first.id);
    for (const r of waiting) replies.append(replyView(r));
  } catch (e) {
    card.classList.replace("pending", "error");
    card.append(el("p", { class: "error-text" }, describeError(e)));
  }
  renderRecent();
}

/** Sends a request the Network panel captured again, through `device`'s app: the Request tab
 *  shows it filled in, and its reply lands with the others. */
function replay(device: string, r: Replay) {
  selectTab("post");
  (document.getElementById("post-url") as HTMLInputElement).value = r.url;
  const method = document.getElementById("post-method") as HTMLSelectElement;
  if (![...method.options].some((o) => o.value === r.method)) method.append(el("option", {}, r.method));
  method.value = r.method;
  (document.getElementById("post-body") as HTMLTextAreaElement).value = r.body ?? "";
  (document.getElementById("post-headers") as HTMLTextAreaElement).value = r.headers ? JSON.stringify(r.headers) : "";
  byTestId<HTMLSelectElement>("target").value = device;
  if (r.notes.length) toast(r.notes.join("; "));
  void sendPost(r.url, { method: r.method, ...(r.body === undefined ? {} : { body: r.body }), ...(r.headers ? { headers: r.headers } : {}) });
}

function sendPost(url: string, options: { method?: string; body?: unknown; headers?: Record<string, string> }) {
  const to = byTestId<HTMLSelectElement>("target").value || undefined;
  return run("post", `${options.method ?? "POST"} ${url}`, (s) => s.post(url, { ...options, to }));
}

function sendCall(method: string, params: unknown[]) {
  const to = byTestId<HTMLSelectElement>("target").value || undefined;
  return run("call", `${method}(${params.map((p) => JSON.stringify(p)).join(", ")})`, (s) => s.call(method, params, { to }));
}

function renderRecent() {
  const ul = document.getElementById("recent")!;
  const entries: HistoryEntry[] = session?.history() ?? [];
  ul.replaceChildren();
  if (entries.length === 0) ul.append(el("li", { class: "empty" }, "Nothing run yet."));
  for (const h of entries) {
    ul.append(el("li", {},
      el("button", {
        type: "button", class: "again", title: "Run again",
        onclick: () => rerun(h),
      }, el("span", { class: `pill ${h.type}` }, h.type), el("span", { class: "target-text" }, h.target), h.count > 1 ? el("span", { class: "muted" }, ` ×${h.count}`) : null)));
  }
}

function rerun(h: HistoryEntry) {
  const o = h.options ?? {};
  if (h.type === "post") {
    selectTab("post");
    (document.getElementById("post-url") as HTMLInputElement).value = h.target;
    (document.getElementById("post-method") as HTMLSelectElement).value = o.method ?? "POST";
    (document.getElementById("post-body") as HTMLTextAreaElement).value = o.body === undefined ? "" : typeof o.body === "string" ? o.body : JSON.stringify(o.body);
    (document.getElementById("post-headers") as HTMLTextAreaElement).value = o.headers ? JSON.stringify(o.headers) : "";
    void sendPost(h.target, o);
  } else {
    selectTab("call");
    (document.getElementById("call-method") as HTMLInputElement).value = h.target;
    (document.getElementById("call-params") as HTMLTextAreaElement).value = JSON.stringify(o.params ?? []);
    void sendCall(h.target, o.params ?? []);
  }
}

async function loadServerHistory() {
  const ul = document.getElementById("server-list")!;
  if (!session) return toast("Connect to a room first.");
  ul.replaceChildren(el("li", { class: "muted" }, "Loading…"));
  try {
    const items: ServerHistoryItem[] = await session.serverHistory({ limit: 100 });
    ul.replaceChildren();
    if (items.length === 0) ul.append(el("li", { class: "empty" }, "Nothing stored for this room yet."));
    for (const it of items) {
      // A body the relay stored cut (--history-max-record) says so, with its original size;
      // what follows the mark is the start of it. The summary line says it too.
      const shown = (field: string, view: Node) => {
        const bytes = it.cut?.[field];
        return bytes === undefined ? view : el("div", {}, el("span", { class: "cut-mark" }, `cut (${bytes} bytes)`), view);
      };
      const cutFields = Object.entries(it.cut ?? {});
      ul.append(el("li", {}, el("details", {},
        el("summary", {}, el("span", { class: `pill ${it.type}` }, it.type), " ",
          el("span", { class: "target-text" }, it.url ?? it.method ?? ""), el("span", { class: "muted" }, ` ${it.ms} ms · ${clock(it.repliedAt)}`),
          cutFields.length === 0 ? null : el("span", {
            class: "cut-mark", testid: "cut-mark",
            title: "The relay stored only the start of this pair (--history-max-record); the reply reached the PC whole",
          }, `cut (${cutFields.map(([f, n]) => `${f}: ${n} bytes`).join(", ")})`)),
        el("div", { class: "kv" }, el("span", { class: "k" }, "device"), el("span", {}, it.deviceName ?? it.device)),
        el("div", { class: "kv" }, el("span", { class: "k" }, "request"), shown("request", jsonView(it.request, false))),
        el("div", { class: "kv" }, el("span", { class: "k" }, "result"), shown("result", jsonView(it.result, false))),
        it.cookie ? el("div", { class: "kv" }, el("span", { class: "k" }, "cookie"), shown("cookie", el("code", {}, it.cookie))) : null,
        it.cut?.appInfo !== undefined
          ? el("div", { class: "kv" }, el("span", { class: "k" }, "appInfo"), shown("appInfo", jsonView(it.appInfo, false))) : null,
        it.error ? el("div", { class: "kv" }, el("span", { class: "k" }, "error"), shown("error", jsonView(it.error))) : null)));
    }
  } catch (e) {
    ul.replaceChildren(el("li", { class: "error-text" }, describeError(e)));
  }
}

/** The relay's alarms, when it has an alarm source: newest first, the latest 100. */
async function startAlarms() {
  const health = await fetch("/healthz").then((r) => r.json()).catch(() => null);
  if (!health?.alarms) return;
  const card = document.getElementById("alarms-card")!;
  const list = byTestId("alarms");
  const count = document.getElementById("alarms-count")!;
  let total = 0;
  card.hidden = false;
  // /alarms answers a plain GET before any upgrade: 401 when this browser may not read it
  // (no CS session here, and the relay is not started with --alarms-public).
  const probe = await fetch("/alarms").catch(() => null);
  if (probe?.status === 401) {
    list.replaceChildren(el("li", { class: "empty", "data-testid": "alarms-locked" },
      "This relay's alarms need a CS session on it (log in through /cs/login) or its --alarm-token; ",
      "start the relay with --alarms-public to show them to every page."));
    return;
  }
  alarmSubscription = await subscribeAlarms({ url: relayUrl() }, (f: AlarmFrame) => {
    list.querySelector(".empty")?.remove();
    let item: HTMLElement;
    if (f.type === "alarm") {
      total += 1;
      const data = f.msg.data;
      item = el("li", { class: "alarm" },
        el("div", { class: "alarm-head" }, el("span", { class: "pill warn" }, `#${f.msg.seq % 100000}`),
          el("span", { class: "muted" }, `${clock(f.msg.at)} · ${f.msg.from}`)),
        typeof data === "string" ? el("code", { class: "target-text" }, data) : jsonView(data, true));
    } else if (f.type === "alarmGap") {
      item = el("li", { class: "alarm gap" }, el("span", { class: "pill bad" }, "gap"), ` ${f.msg.dropped} alarms were not delivered to this page`);
    } else if (f.type === "alarmSource") {
      const down = f.msg.state === "unreachable";
      item = el("li", { class: "alarm source", "data-testid": "alarm-source" },
        el("span", { class: down ? "pill bad" : "pill ok" }, down ? "service down" : "service back"),
        down ? ` the alarm service ${f.msg.service ?? ""} refuses subscriptions; the relay keeps trying`
          : ` the alarm service ${f.msg.service ?? ""} answers again`);
    } else {
      return; // a kind this page does not know yet
    }
    list.prepend(item);
    while (list.children.length > 100) list.lastElementChild?.remove();
    count.textContent = `(${total})`;
  });
  addEventListener("pagehide", () => alarmSubscription?.close());
}

function selectTab(name: string) {
  for (const t of document.querySelectorAll<HTMLElement>("[data-tab]")) t.classList.toggle("active", t.dataset.tab === name);
  for (const p of document.querySelectorAll<HTMLElement>("[data-panel]")) p.hidden = p.dataset.panel !== name;
  // The inspection panels pick a device of their own, and have no use for the replies below.
  const inspecting = (PANELS as readonly string[]).includes(name);
  document.getElementById("send-to")!.hidden = inspecting;
  document.getElementById("inspect-to")!.hidden = !inspecting;
  byTestId("result").hidden = inspecting;
}

function wire() {
  const roomInput = byTestId<HTMLInputElement>("room-input");
  byTestId("room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const room = roomInput.value.trim();
    if (room) void connect(room);
  });
  for (const t of document.querySelectorAll<HTMLElement>("[data-tab]")) t.addEventListener("click", () => selectTab(t.dataset.tab!));
  for (const t of document.querySelectorAll<HTMLElement>("[data-htab]")) {
    t.addEventListener("click", () => {
      for (const o of document.querySelectorAll<HTMLElement>("[data-htab]")) o.classList.toggle("active", o === t);
      document.getElementById("recent")!.hidden = t.dataset.htab !== "recent";
      document.getElementById("server")!.hidden = t.dataset.htab !== "server";
      if (t.dataset.htab === "server") void loadServerHistory();
    });
  }
  document.getElementById("load-server")!.addEventListener("click", () => void loadServerHistory());
  document.getElementById("post-panel")!.addEventListener("submit", (e) => {
    e.preventDefault();
    const url = (document.getElementById("post-url") as HTMLInputElement).value.trim();
    const method = (document.getElementById("post-method") as HTMLSelectElement).value;
    const body = looseJson((document.getElementById("post-body") as HTMLTextAreaElement).value);
    const headersText = (document.getElementById("post-headers") as HTMLTextAreaElement).value;
    const headers = looseJson(headersText);
    if (headersText.trim() && (typeof headers !== "object" || headers === null || Array.isArray(headers))) {
      return toast('Headers must be a JSON object, e.g. {"X-Debug": "1"}.');
    }
    void sendPost(url, { method, ...(body === undefined ? {} : { body }), ...(headers ? { headers: headers as Record<string, string> } : {}) });
  });
  document.getElementById("call-panel")!.addEventListener("submit", (e) => {
    e.preventDefault();
    const method = (document.getElementById("call-method") as HTMLInputElement).value.trim();
    const text = (document.getElementById("call-params") as HTMLTextAreaElement).value;
    let params: unknown = [];
    if (text.trim()) {
      try {
        params = JSON.parse(text);
      } catch {
        return toast('Params must be JSON, e.g. ["qqorweixin"].');
      }
    }
    void sendCall(method, Array.isArray(params) ? params : [params]);
  });
  const scheme = document.getElementById("scheme") as HTMLInputElement;
  scheme.value = localStorage.getItem(SCHEME) ?? "";
  scheme.addEventListener("change", () => {
    localStorage.setItem(SCHEME, scheme.value.trim());
    void renderQr();
  });
  document.getElementById("copy-link")!.addEventListener("click", async () => {
    await navigator.clipboard?.writeText(byTestId("device-link").textContent ?? "").catch(() => {});
    toast("Link copied.");
  });

  void startAlarms();

  // A reload keeps the room (and, through the SDK, its secret).
  const room = new URLSearchParams(location.search).get("room") ?? localStorage.getItem(LAST_ROOM);
  if (room) {
    roomInput.value = room;
    void connect(room);
  }
}

wire();
