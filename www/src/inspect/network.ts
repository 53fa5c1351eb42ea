// The Network panel: the requests, sockets and event streams of the devices' pages, filtered
// by text, type and failure; a request's detail (headers, bodies, messages); Copy as cURL,
// Send through the app (the captured request as a `post` through the device's native stack)
// and Export HAR.
import { clock, el, toast } from "../ui";
import { toHar } from "./har";
import { badge, coalesce, copyText, download, mb, stamp, type Ctx } from "./panel";
import { captured, header, toCurl, toReplay, type Captured, type Pair } from "./request";
import type { Entry } from "./store";
import { bodyView, tagOf, valueView } from "./values";

const TYPES = ["fetch", "xhr", "ws", "sse", "beacon"];
/** Fields the detail shows in their own places; any other a device sends is listed under General. */
const SHOWN = new Set(["k", "type", "method", "url", "status", "statusText", "requestHeaders", "requestBody", "responseHeaders",
  "responseBody", "ms", "dir", "data", "event"]);

const failed = (e: Entry, c: Captured) => e.phase === "error" || (c.status !== undefined && c.status >= 400);

function statusText(e: Entry, c: Captured): string {
  if (e.phase === "error") return "failed";
  if (c.status !== undefined) return String(c.status);
  if (e.phase === "open" || e.phase === "message") return "open";
  if (e.phase === "close") return "closed";
  return "…";
}

/** The path and query of a URL (the whole text when it is not one). */
function path(url: string): string {
  try {
    const u = new URL(url);
    return `${u.pathname}${u.search}` || url;
  } catch {
    return url;
  }
}

/** A MIME type's short name: `application/json; charset=utf-8` → `json`. */
function mimeShort(mime: string | undefined): string {
  const m = (mime ?? "").split(";")[0].trim().toLowerCase();
  return m.slice(m.lastIndexOf("/") + 1).replace(/^x-/, "");
}

function sizeText(c: Captured): string {
  const b = c.responseBody;
  if (typeof b === "string") return bytes(new TextEncoder().encode(b).length);
  const t = tagOf(b);
  const o = b as { len?: unknown };
  if ((t === "str" || t === "bin") && typeof o.len === "number") return `${t === "str" ? "≥ " : ""}${bytes(o.len)}`;
  const length = Number(header(c.responseHeaders, "content-length"));
  return Number.isFinite(length) && length >= 0 && header(c.responseHeaders, "content-length") !== undefined ? bytes(length) : "";
}

function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function networkPanel(root: HTMLElement, ctx: Ctx) {
  let query = "";
  let type = "";
  let errorsOnly = false;
  let selected: Entry | undefined;
  let curlShown = false;
  const views = new WeakMap<Entry, HTMLElement>();
  let pending = new Set<Entry>();
  let detailDirty = false;

  const search = el("input", { type: "search", placeholder: "Filter by URL, method or status", "data-testid": "network-search", class: "grow" });
  search.addEventListener("input", () => {
    query = search.value.trim().toLowerCase();
    redraw();
  });
  const typeSelect = el("select", { "data-testid": "network-type" }, el("option", { value: "" }, "all types"), ...TYPES.map((t) => el("option", { value: t }, t)));
  typeSelect.addEventListener("change", () => {
    type = typeSelect.value;
    redraw();
  });
  const errors = el("input", { type: "checkbox", "data-testid": "network-errors" });
  errors.addEventListener("change", () => {
    errorsOnly = errors.checked;
    redraw();
  });
  const notes = el("p", { class: "inspect-notes", "data-testid": "network-notes" });
  const list = el("tbody", { "data-testid": "network-list" });
  const detail = el("div", { class: "net-detail", "data-testid": "network-detail" });
  root.append(
    el("div", { class: "toolbar" }, search, typeSelect,
      el("label", { class: "check" }, errors, "status ≥ 400 or failed"),
      el("button", { type: "button", class: "small", onclick: () => ctx.store.clearEntries(ctx.picked()) }, "Clear"),
      el("button", { type: "button", class: "small", "data-testid": "network-har", onclick: exportHar }, "Export HAR")),
    notes,
    el("div", { class: "net-scroll" }, el("table", { class: "net-table" },
      el("thead", {}, el("tr", {}, ...["Status", "Method", "Path", "Type", "Size", "Time", "Device"].map((h) => el("th", {}, h)))),
      list)),
    detail);

  function matches(e: Entry): boolean {
    const picked = ctx.picked();
    if (picked && e.device !== picked) return false;
    const c = captured(e);
    if (type && c.type !== type) return false;
    if (errorsOnly && !failed(e, c)) return false;
    if (!query) return true;
    return `${c.method} ${c.url} ${statusText(e, c)}`.toLowerCase().includes(query);
  }

  function rowView(e: Entry): HTMLElement {
    const c = captured(e);
    const mime = mimeShort(header(c.responseHeaders, "content-type"));
    const tr = el("tr", { class: failed(e, c) ? "bad" : e.phase === "start" ? "pending" : "", "data-device": e.device, "data-id": e.id },
      el("td", {}, statusText(e, c)),
      el("td", {}, c.method),
      el("td", { class: "net-path", title: c.url }, path(c.url)),
      el("td", {}, mime ? `${c.type} · ${mime}` : c.type),
      el("td", {}, sizeText(c)),
      el("td", {}, c.ms !== undefined ? `${Math.round(c.ms)} ms` : ""),
      el("td", {}, ctx.name(e.device)));
    if (e === selected) tr.classList.add("selected");
    tr.addEventListener("click", () => select(e));
    views.set(e, tr);
    return tr;
  }

  function select(e: Entry) {
    if (selected) views.get(selected)?.classList.remove("selected");
    selected = e;
    curlShown = false;
    views.get(e)?.classList.add("selected");
    drawDetail();
  }

  function drawNotes() {
    const l = ctx.store.losses(ctx.picked());
    const lim = ctx.store.limits;
    notes.textContent = l.requests ? `${l.requests} older requests let go here (this page keeps the latest ${lim.requests} per device, ${mb(lim.bytes)} in all)` : "";
    notes.hidden = !l.requests;
  }

  const flush = coalesce(() => {
    for (const e of pending) {
      const old = views.get(e);
      if (e.gone || !matches(e)) {
        old?.remove();
        continue;
      }
      const tr = rowView(e);
      if (old) old.replaceWith(tr);
      else {
        list.querySelector(":scope > .empty")?.remove();
        list.append(tr);
      }
    }
    if (detailDirty) drawDetail();
    detailDirty = false;
    pending = new Set();
    drawNotes();
  });

  function redraw() {
    pending = new Set();
    const all = ctx.store.entries(ctx.picked());
    list.replaceChildren(...all.filter(matches).map(rowView));
    if (list.childElementCount === 0) {
      list.append(el("tr", { class: "empty" }, el("td", { colspan: "7" },
        all.length ? "No request matches the filters." : "No request yet. Pages that connect with inspect show their requests here.")));
    }
    if (selected && (selected.gone || !matches(selected))) selected = undefined;
    drawDetail();
    drawNotes();
  }

  function kvTable(pairs: Pair[]): HTMLElement {
    if (pairs.length === 0) return el("p", { class: "muted" }, "(none)");
    return el("table", { class: "kv-table" }, el("tbody", {}, ...pairs.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
  }

  function drawDetail() {
    const e = selected;
    if (!e) {
      detail.replaceChildren(el("p", { class: "muted" }, "Pick a request to see its headers and bodies."));
      return;
    }
    const c = captured(e);
    const curl = toCurl(c);
    const replay = toReplay(c);
    const why = !ctx.session() ? "not connected" : !ctx.member(e.device) ? `${ctx.name(e.device)} has left the room` : replay.ok ? undefined : replay.reason;
    const curlButton = el("button", { type: "button", class: "small", "data-testid": "net-curl", disabled: !curl.ok, title: curl.ok ? undefined : curl.reason }, "Copy as cURL");
    const curlOut = el("div", { class: "curl", hidden: !curlShown });
    const showCurl = () => {
      if (!curl.ok) return;
      curlOut.replaceChildren(el("pre", { "data-testid": "curl-text" }, curl.command),
        ...curl.notes.map((n) => el("p", { class: "hint", "data-testid": "curl-note" }, n)));
      curlOut.hidden = false;
    };
    curlButton.addEventListener("click", async () => {
      if (!curl.ok) return;
      curlShown = true;
      showCurl();
      toast((await copyText(curl.command)) ? "cURL command copied." : "Select the command below to copy it.");
    });
    if (curlShown) showCurl();
    const replayButton = el("button", { type: "button", class: "small primary", "data-testid": "net-replay", disabled: why !== undefined }, "Send through the app");
    replayButton.addEventListener("click", () => {
      if (replay.ok && ctx.member(e.device)) ctx.replay(e.device, replay.replay);
    });
    const resText = typeof c.responseBody === "string" ? c.responseBody : undefined;
    const copyResponse = el("button", { type: "button", class: "small", disabled: resText === undefined }, "Copy response");
    copyResponse.addEventListener("click", async () => toast((await copyText(resText ?? "")) ? "Response copied." : "The browser did not let this page copy."));

    const general: [string, Node | string][] = [
      ["URL", el("code", { class: "target-text" }, c.url)],
      ["Method", c.method],
      ["Status", `${statusText(e, c)}${c.statusText ? ` ${c.statusText}` : ""}`],
      ["Type", c.type],
      ["Device", badge(ctx, e.device)],
      ["Started", clock(e.startAt)],
      ["Time", c.ms !== undefined ? `${Math.round(c.ms)} ms` : e.phase === "start" ? "waiting…" : ""],
    ];
    for (const [k, v] of Object.entries(e.f)) if (!SHOWN.has(k)) general.push([k, valueView(v)]);
    const sec = (title: string, ...body: (Node | null)[]) => el("section", { class: "net-sec" }, el("h3", {}, title), ...body);
    detail.replaceChildren(...[
      el("div", { class: "toolbar" }, curlButton, replayButton,
        why ? el("span", { class: "hint", "data-testid": "net-replay-why" }, `Cannot send through the app: ${why}.`) : null, copyResponse),
      curlOut,
      sec("General", el("table", { class: "kv-table" }, el("tbody", {}, ...general.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))))),
      sec("Request headers", kvTable(c.requestHeaders)),
      c.requestBody !== undefined ? sec("Request body", bodyView(c.requestBody, header(c.requestHeaders, "content-type"))) : null,
      sec("Response headers", kvTable(c.responseHeaders)),
      c.responseBody !== undefined ? sec("Response body", bodyView(c.responseBody, header(c.responseHeaders, "content-type"))) : null,
      e.messages.length || c.type === "ws" || c.type === "sse" ? sec("Messages",
        e.messagesLetGo ? el("p", { class: "hint" }, `${e.messagesLetGo} older messages let go (this page keeps the latest ${ctx.store.limits.messages})`) : null,
        el("ol", { class: "messages", "data-testid": "net-messages" }, ...e.messages.map((m) =>
          el("li", { class: m.dir === "send" ? "send" : "recv" },
            el("span", { class: "muted" }, `${m.dir === "send" ? "↑" : "↓"} ${clock(m.at)}`), " ",
            m.event && m.event !== "message" ? el("span", { class: "pill" }, m.event) : null, " ",
            valueView(m.data, true))))) : null,
    ].filter((n) => n !== null));
  }

  function exportHar() {
    const shown = ctx.store.entries(ctx.picked()).filter(matches);
    if (shown.length === 0) return toast("No request to export.");
    download(`tether-${stamp()}.har`, JSON.stringify(toHar(shown, (d) => ctx.name(d)), null, 2), "application/json");
  }

  ctx.store.listen((c) => {
    if (c.t === "entry" || c.t === "entryGone") {
      if (c.entry === selected) {
        detailDirty = true;
        if (c.t === "entryGone") selected = undefined;
      }
      pending.add(c.entry);
      flush();
    } else if (c.t === "reset" || c.t === "entriesCleared") {
      redraw();
    }
  });
  redraw();
  return {
    redraw,
    /** The member list changed: whether Send through the app is possible may have too. */
    members: () => drawDetail(),
  };
}
