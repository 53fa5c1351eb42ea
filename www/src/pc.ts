// The PC debug page: open a room, show its QR code, watch the devices, send requests and
// JS-API calls through them, see every reply (several devices' side by side, the differences
// marked: compare.ts), copy a request as cURL, edit and run things again from history, export
// the room's history as HAR (requests.ts); and see inside the devices' pages (console,
// network, storage, eval: inspect/).
import { connectPc, subscribeAlarms, type AlarmFrame, type AlarmSubscription, type Member, type PcSession, type Reply, type HistoryEntry, type ServerHistoryItem } from "tether-sdk";
import QRCode from "qrcode";
import { byTestId, clock, describeError, el, jsonView, looseJson, setStatus, toast } from "./ui";
import { mountInspector, PANELS } from "./inspect";
import { copyText, download, stamp } from "./inspect/panel";
import type { Replay } from "./inspect/request";
import { compare, comparable, shown } from "./compare";
import { exportHar, HAR_MAX, postCurl, type SentPost } from "./requests";

const LAST_ROOM = "tether.page.room";
const SCHEME = "tether.page.scheme";
const APP_PAGE = "tether.page.appPage";

let session: PcSession | null = null;
/** The room `session` is in. */
let room = "";
/** Held for the page's lifetime: a subscription whose object is collected stops. */
let alarmSubscription: AlarmSubscription | null = null;
let members: Member[] = [];
/** Result cards by request id, so every device's reply lands in its request's card. */
const cards = new Map<string, HTMLElement>();
/** Replies that arrived before their request's Promise told us the id. */
const early = new Map<string, Reply[]>();
/** Each result card's replies so far, and how to redraw its comparison when one arrives. */
const cardReplies = new WeakMap<HTMLElement, { replies: Reply[]; redraw?: () => void }>();

const relayUrl = () => `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`;

/** The inspection panels: what the devices' pages log, fetch and store. */
const inspector = mountInspector({ session: () => session, replay });


async function connect(name: string) {
  session?.close();
  session = null;
  room = name;
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

/** The app's page the QR code opens, with the room and device key in its fragment (read and
 *  taken out by the loader's `data-from-url`), or the relay's device page. */
function qrLink(s: PcSession): string {
  const appPage = (document.getElementById("app-page") as HTMLInputElement).value.trim();
  if (!/^https?:\/\//i.test(appPage)) return s.deviceLink();
  const params = `tether_room=${encodeURIComponent(room)}&tether_key=${encodeURIComponent(s.deviceKey)}`;
  return `${appPage}${appPage.includes("#") ? "&" : "#"}${params}`;
}

/** The snippets that embed the SDK in the app's own pages, for this relay and room. */
function renderEmbed(s: PcSession) {
  const base = location.origin;
  const attr = (v: string) => v.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
  byTestId("embed-from-url").textContent = `<script src="${base}/sdk/tether.js" data-from-url></script>`;
  byTestId("embed-room").textContent =
    `<script src="${base}/sdk/tether.js" data-room="${attr(room)}" data-secret="${attr(s.deviceKey)}"></script>`;
  byTestId("embed-module").textContent = [
    `<script type="module">`,
    `  import { connectDevice } from "${base}/sdk/index.js";`,
    `  connectDevice({ url: ${JSON.stringify(relayUrl())}, room: ${JSON.stringify(room).replace(/</g, "\\u003c")}, secret: ${JSON.stringify(s.deviceKey)} });`,
    `</script>`,
  ].join("\n");
}

async function renderQr() {
  if (!session) return;
  renderEmbed(session);
  const link = qrLink(session);
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

/** A request as sent: what its card, its cURL command and "Edit" need. */
type Sent = { kind: "post"; post: SentPost } | { kind: "call"; method: string; params: unknown[] };

/** Shows a cURL command under `where` and copies it. */
async function showCurl(where: HTMLElement, curl: ReturnType<typeof postCurl>) {
  where.querySelector(":scope > .curl")?.remove();
  if (!curl.ok) return toast(`No cURL command: ${curl.reason}.`);
  where.append(el("div", { class: "curl" }, el("pre", { "data-testid": "curl-text" }, curl.command),
    ...curl.notes.map((n) => el("p", { class: "hint", "data-testid": "curl-note" }, n))));
  toast((await copyText(curl.command)) ? "cURL command copied." : "Select the command to copy it.");
}

function replyView(r: Reply, sent?: Sent): HTMLElement {
  const failed = r.error !== undefined && r.error !== null;
  const view = el("div", { class: failed ? "reply failed" : "reply", "data-device": r.device });
  const withCookie = sent?.kind === "post" && r.cookie
    ? el("button", {
      type: "button", class: "small", "data-testid": "reply-curl-cookie",
      title: "A cURL command for this request with this device's cookies: it runs as the phone's user",
      onclick: () => void showCurl(view, postCurl(sent.post, r.cookie ?? undefined)),
    }, "cURL with its cookies")
    : null;
  const parts = [
    el("div", { class: "reply-head" },
      el("strong", {}, deviceName(r.device)),
      el("span", { class: failed ? "pill bad" : "pill ok" }, failed ? "failed" : "ok"),
      el("span", { class: "muted" }, `${r.ms} ms`), withCookie),
    failed ? el("div", { class: "kv" }, el("span", { class: "k" }, "error"), jsonView(r.error)) : null,
    el("div", { class: "kv" }, el("span", { class: "k" }, "result"), jsonView(r.result)),
    r.cookie !== undefined && r.cookie !== null ? el("div", { class: "kv" }, el("span", { class: "k" }, "cookie"), el("code", { class: "cookie" }, r.cookie || "(empty)")) : null,
    r.appInfo ? el("details", { class: "kv" }, el("summary", { class: "k" }, "appInfo"), jsonView(r.appInfo)) : null,
  ];
  for (const p of parts) if (p) view.append(p);
  return view;
}

/** Several replies side by side: one column per device, one row per field of their results
 *  (and error, cookie, appInfo), the rows that differ marked; by default only those. */
function compareView(columns: { name: string; reply: { result?: unknown; error?: unknown; cookie?: unknown; appInfo?: unknown } }[]): HTMLElement {
  const rows = compare(columns.map((c) => comparable(c.reply)));
  const differing = rows.filter((r) => r.differs);
  const table = el("table", { class: differing.length ? "compare only-diff" : "compare", "data-testid": "compare-table" },
    el("thead", {}, el("tr", {}, el("th", {}, "field"), ...columns.map((c) => el("th", {}, c.name)))),
    el("tbody", {}, ...rows.map((r) => el("tr", { class: r.differs ? "differs" : "same", "data-path": r.path },
      el("th", {}, el("code", {}, r.path)),
      ...r.values.map((v) => el("td", { class: v === undefined ? "absent" : "" }, el("code", {}, shown(v))))))));
  const only = el("input", { type: "checkbox", checked: differing.length > 0, "data-testid": "compare-only" }) as HTMLInputElement;
  only.addEventListener("change", () => table.classList.toggle("only-diff", only.checked));
  const names = differing.slice(0, 5).map((r) => r.path).join(", ") + (differing.length > 5 ? ", …" : "");
  return el("div", { class: "compare-view", "data-testid": "compare-view" },
    el("p", { class: differing.length ? "compare-summary differs" : "compare-summary", "data-testid": "compare-summary" },
      differing.length
        ? `${differing.length} of ${rows.length} ${rows.length === 1 ? "field differs" : "fields differ"} between the ${columns.length} devices: ${names}`
        : `All ${rows.length} ${rows.length === 1 ? "field is" : "fields are"} the same on the ${columns.length} devices.`),
    el("label", { class: "hint" }, only, " only the fields that differ"),
    table);
}

/** Adds a reply to its card, and keeps the card's comparison (when shown) up to date. */
function addReply(card: HTMLElement, r: Reply) {
  const state = cardReplies.get(card);
  card.querySelector(".replies")!.append(replyView(r, state && (card as HTMLElement & { sent?: Sent }).sent));
  if (!state) return;
  state.replies.push(r);
  const button = card.querySelector<HTMLButtonElement>("[data-testid=card-compare]");
  if (button) button.hidden = state.replies.length < 2;
  state.redraw?.();
}

function onReply(r: Reply) {
  const card = cards.get(r.id);
  if (card) addReply(card, r);
  else early.set(r.id, [...(early.get(r.id) ?? []), r]);
}

/** The card's buttons: cURL (posts), Edit (fills the form again, sends nothing), Compare
 *  (once two devices answered). */
function cardActions(card: HTMLElement & { sent?: Sent }, sent: Sent): HTMLElement {
  const state = { replies: [] as Reply[], redraw: undefined as (() => void) | undefined };
  cardReplies.set(card, state);
  card.sent = sent;
  const compareButton = el("button", { type: "button", class: "small", "data-testid": "card-compare", hidden: true }, "Compare devices");
  compareButton.addEventListener("click", () => {
    if (state.redraw) {
      state.redraw = undefined;
      card.querySelector(":scope > .compare-view")?.remove();
      compareButton.classList.remove("active");
      return;
    }
    state.redraw = () => {
      const view = compareView(state.replies.map((r) => ({ name: deviceName(r.device), reply: r })));
      const old = card.querySelector(":scope > .compare-view");
      if (old) old.replaceWith(view);
      else card.querySelector(".replies")!.before(view);
    };
    compareButton.classList.add("active");
    state.redraw();
  });
  return el("span", { class: "card-actions" },
    sent.kind === "post"
      ? el("button", { type: "button", class: "small", "data-testid": "card-curl", onclick: () => void showCurl(card, postCurl(sent.post)) }, "cURL")
      : null,
    el("button", { type: "button", class: "small", "data-testid": "card-edit", title: "Put this request in the form to change it", onclick: () => edit(sent) }, "Edit"),
    compareButton);
}

/** Sends a request and shows a card that collects its replies. */
async function run(sent: Sent, target: string, send: (s: PcSession) => Promise<Reply>) {
  const results = byTestId("result");
  results.querySelector(".empty")?.remove();
  const to = byTestId<HTMLSelectElement>("target").value;
  const card: HTMLElement & { sent?: Sent } = el("article", { class: "result-card pending" });
  card.append(
    el("header", {},
      el("span", { class: `pill ${sent.kind}` }, sent.kind),
      el("code", { class: "target-text" }, target),
      el("span", { class: "muted" }, `→ ${to ? deviceName(to) : "all devices"} · ${clock()}`),
      cardActions(card, sent)),
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
    const waiting = early.get(first.id) ?? [first];
    early.delete(first.id);
    for (const r of waiting) addReply(card, r);
  } catch (e) {
    card.classList.replace("pending", "error");
    card.append(el("p", { class: "error-text" }, describeError(e)));
  }
  renderRecent();
}

/** Sends a request the Network panel captured again, through `device`'s app: the Request tab
 *  shows it filled in, and its reply lands with the others. */
function replay(device: string, r: Replay) {
  const post: SentPost = { url: r.url, method: r.method, ...(r.body === undefined ? {} : { body: r.body }), ...(r.headers ? { headers: r.headers } : {}) };
  fillPost(post);
  byTestId<HTMLSelectElement>("target").value = device;
  if (r.notes.length) toast(r.notes.join("; "));
  void sendPost(post);
}

function sendPost(post: SentPost) {
  const to = byTestId<HTMLSelectElement>("target").value || undefined;
  const { url, ...options } = post;
  return run({ kind: "post", post }, `${post.method ?? "POST"} ${url}`, (s) => s.post(url, { ...options, to }));
}

function sendCall(method: string, params: unknown[]) {
  const to = byTestId<HTMLSelectElement>("target").value || undefined;
  return run({ kind: "call", method, params }, `${method}(${params.map((p) => JSON.stringify(p)).join(", ")})`, (s) => s.call(method, params, { to }));
}

/** Puts a post in the Request form (the method added to the list when it is not there). */
function fillPost(p: SentPost) {
  selectTab("post");
  (document.getElementById("post-url") as HTMLInputElement).value = p.url;
  const method = document.getElementById("post-method") as HTMLSelectElement;
  const m = p.method ?? "POST";
  if (![...method.options].some((o) => o.value === m)) method.append(el("option", {}, m));
  method.value = m;
  (document.getElementById("post-body") as HTMLTextAreaElement).value = p.body === undefined || p.body === null ? "" : typeof p.body === "string" ? p.body : JSON.stringify(p.body);
  (document.getElementById("post-headers") as HTMLTextAreaElement).value = p.headers && Object.keys(p.headers).length ? JSON.stringify(p.headers) : "";
}

function fillCall(method: string, params: unknown[]) {
  selectTab("call");
  (document.getElementById("call-method") as HTMLInputElement).value = method;
  (document.getElementById("call-params") as HTMLTextAreaElement).value = JSON.stringify(params);
}

/** Puts a request in its form to be changed and sent with the form's button. */
function edit(sent: Sent) {
  if (sent.kind === "post") fillPost(sent.post);
  else fillCall(sent.method, sent.params);
  document.getElementById(sent.kind === "post" ? "post-url" : "call-method")?.focus();
  toast("In the form: change it, then send.");
}

/** A recent entry (the SDK's local history) as a request. */
function fromRecent(h: HistoryEntry): Sent {
  const o = h.options ?? {};
  if (h.type === "post") return { kind: "post", post: { url: h.target, ...(o.method ? { method: o.method } : {}), ...(o.body === undefined ? {} : { body: o.body }), ...(o.headers ? { headers: o.headers } : {}) } };
  return { kind: "call", method: h.target, params: Array.isArray(o.params) ? o.params : [] };
}

function renderRecent() {
  const ul = document.getElementById("recent")!;
  const entries: HistoryEntry[] = session?.history() ?? [];
  ul.replaceChildren();
  if (entries.length === 0) ul.append(el("li", { class: "empty" }, "Nothing run yet."));
  for (const h of entries) {
    const sent = fromRecent(h);
    const li = el("li", { class: "recent-item" });
    li.append(
      el("div", { class: "recent-row" },
        el("button", {
          type: "button", class: "again", title: "Run again",
          onclick: () => rerun(sent),
        }, el("span", { class: `pill ${h.type}` }, h.type), el("span", { class: "target-text" }, h.target), h.count > 1 ? el("span", { class: "muted" }, ` ×${h.count}`) : null),
        el("button", { type: "button", class: "small", "data-testid": "recent-edit", title: "Put it in the form to change it", onclick: () => edit(sent) }, "Edit"),
        sent.kind === "post" ? el("button", { type: "button", class: "small", "data-testid": "recent-curl", onclick: () => void showCurl(li, postCurl(sent.post)) }, "cURL") : null));
    ul.append(li);
  }
}

function rerun(sent: Sent) {
  if (sent.kind === "post") {
    fillPost(sent.post);
    void sendPost(sent.post);
  } else {
    fillCall(sent.method, sent.params);
    void sendCall(sent.method, sent.params);
  }
}

/** A stored pair's request, or why it cannot be sent again. */
function fromStored(it: ServerHistoryItem): Sent | string {
  if (it.cut?.request !== undefined || it.cut?.url !== undefined || it.cut?.method !== undefined) return "the relay stored this request cut";
  const r = it.request ?? {};
  if (it.type === "post" && typeof r.url === "string") {
    const headers = r.headers && typeof r.headers === "object" && !Array.isArray(r.headers) ? r.headers as Record<string, string> : undefined;
    return { kind: "post", post: { url: r.url, ...(typeof r.method === "string" ? { method: r.method } : {}), ...(r.body === undefined ? {} : { body: r.body }), ...(headers ? { headers } : {}) } };
  }
  if (it.type === "call" && typeof r.method === "string") return { kind: "call", method: r.method, params: Array.isArray(r.params) ? r.params : [] };
  return `a ${it.type} cannot be sent from here`;
}

/** Resends a stored request to the device it went to, when that one is still here. */
function resend(it: ServerHistoryItem, sent: Sent) {
  const target = byTestId<HTMLSelectElement>("target");
  if (members.some((m) => m.id === it.device && m.role === "device")) target.value = it.device;
  else toast(`${it.deviceName ?? it.device} is not in the room: sent to ${target.value ? deviceName(target.value) : "all devices"}.`);
  rerun(sent);
}

async function loadServerHistory() {
  const ul = document.getElementById("server-list")!;
  if (!session) return toast("Connect to a room first.");
  ul.replaceChildren(el("li", { class: "muted" }, "Loading…"));
  try {
    const items: ServerHistoryItem[] = await session.serverHistory({ limit: 100 });
    ul.replaceChildren();
    if (items.length === 0) ul.append(el("li", { class: "empty" }, "Nothing stored for this room yet."));
    // A request sent to several devices is stored once per device: its pairs, by request id.
    const groups = new Map<string, ServerHistoryItem[]>();
    for (const it of items) groups.set(`${it.pc}/${it.reqId}`, [...(groups.get(`${it.pc}/${it.reqId}`) ?? []), it]);
    const compared = new Set<string>();
    for (const it of items) {
      // A body the relay stored cut (--history-max-record) says so, with its original size;
      // what follows the mark is the start of it. The summary line says it too.
      const shownField = (field: string, view: Node) => {
        const bytes = it.cut?.[field];
        return bytes === undefined ? view : el("div", {}, el("span", { class: "cut-mark" }, `cut (${bytes} bytes)`), view);
      };
      const cutFields = Object.entries(it.cut ?? {});
      const sent = fromStored(it);
      const li = el("li", { class: "stored-item" });
      const actions = el("div", { class: "stored-actions" });
      if (typeof sent === "string") {
        actions.append(el("span", { class: "muted" }, `Not resendable: ${sent}.`));
      } else {
        actions.append(
          el("button", { type: "button", class: "small", "data-testid": "stored-edit", onclick: () => edit(sent) }, "Edit"),
          el("button", { type: "button", class: "small", "data-testid": "stored-resend", title: `Send it again to ${it.deviceName ?? it.device}`, onclick: () => resend(it, sent) }, "Resend"));
        if (sent.kind === "post") {
          actions.append(el("button", { type: "button", class: "small", "data-testid": "stored-curl", onclick: () => void showCurl(li, postCurl(sent.post)) }, "cURL"));
        }
      }
      const group = groups.get(`${it.pc}/${it.reqId}`)!;
      const key = `${it.pc}/${it.reqId}`;
      if (group.length > 1 && !compared.has(key)) {
        compared.add(key);
        actions.append(el("button", {
          type: "button", class: "small", "data-testid": "stored-compare",
          onclick: () => {
            const old = li.querySelector(":scope > .compare-view");
            if (old) return old.remove();
            li.append(compareView(group.map((g) => ({ name: g.deviceName ?? g.device, reply: g }))));
          },
        }, `Compare ${group.length} devices`));
      }
      li.append(el("details", {},
        el("summary", {}, el("span", { class: `pill ${it.type}` }, it.type), " ",
          el("span", { class: "target-text" }, it.url ?? it.method ?? ""), el("span", { class: "muted" }, ` ${it.deviceName ?? it.device} · ${it.ms} ms · ${clock(it.repliedAt)}`),
          cutFields.length === 0 ? null : el("span", {
            class: "cut-mark", testid: "cut-mark",
            title: "The relay stored only the start of this pair (--history-max-record); the reply reached the PC whole",
          }, `cut (${cutFields.map(([f, n]) => `${f}: ${n} bytes`).join(", ")})`)),
        el("div", { class: "kv" }, el("span", { class: "k" }, "device"), el("span", {}, it.deviceName ?? it.device)),
        el("div", { class: "kv" }, el("span", { class: "k" }, "request"), shownField("request", jsonView(it.request, false))),
        el("div", { class: "kv" }, el("span", { class: "k" }, "result"), shownField("result", jsonView(it.result, false))),
        it.cookie ? el("div", { class: "kv" }, el("span", { class: "k" }, "cookie"), shownField("cookie", el("code", {}, it.cookie))) : null,
        it.cut?.appInfo !== undefined
          ? el("div", { class: "kv" }, el("span", { class: "k" }, "appInfo"), shownField("appInfo", jsonView(it.appInfo, false))) : null,
        it.error ? el("div", { class: "kv" }, el("span", { class: "k" }, "error"), shownField("error", jsonView(it.error))) : null),
        actions);
      ul.append(li);
    }
  } catch (e) {
    ul.replaceChildren(el("li", { class: "error-text" }, describeError(e)));
  }
}

/** Downloads the room's stored history as HAR 1.2, with progress on the button. */
async function saveHar() {
  if (!session) return toast("Connect to a room first.");
  const button = byTestId<HTMLButtonElement>("export-har");
  const status = byTestId("export-status");
  button.disabled = true;
  status.textContent = "Exporting…";
  try {
    const { har, pairs, more } = await exportHar(session, room, (n) => (status.textContent = `Exporting… ${n} pairs`));
    download(`tether-${room.replace(/[^\w.-]+/g, "_")}-${stamp()}.har`, JSON.stringify(har, null, 2), "application/json");
    status.textContent = more ? `Saved the newest ${pairs} pairs (at most ${HAR_MAX} per file).` : `Saved ${pairs} ${pairs === 1 ? "pair" : "pairs"}.`;
  } catch (e) {
    status.textContent = "";
    toast(`No HAR: ${describeError(e)}`);
  } finally {
    button.disabled = false;
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
  byTestId("export-har").addEventListener("click", () => void saveHar());
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
    void sendPost({ url, method, ...(body === undefined ? {} : { body }), ...(headers ? { headers: headers as Record<string, string> } : {}) });
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
  const appPage = document.getElementById("app-page") as HTMLInputElement;
  appPage.value = localStorage.getItem(APP_PAGE) ?? "";
  if (appPage.value) (document.getElementById("app-page-box") as HTMLDetailsElement).open = true;
  appPage.addEventListener("change", () => {
    const v = appPage.value.trim();
    if (v && !/^https?:\/\//i.test(v)) toast("The app's page must be an http(s):// address.");
    localStorage.setItem(APP_PAGE, v);
    void renderQr();
  });
  for (const b of document.querySelectorAll<HTMLButtonElement>("[data-copy]")) {
    b.addEventListener("click", async () => {
      const ok = await copyText(byTestId(b.dataset.copy!).textContent ?? "");
      toast(ok ? "Snippet copied." : "Select the snippet to copy it.");
    });
  }
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
