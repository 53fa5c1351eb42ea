// The Console panel: what the devices' pages logged, threw and rejected, and their page info,
// with level chips, a search, and the losses said (on the phone, on the way, and here).
import type { InspectEvent } from "tether-sdk";
import { clock, el } from "../ui";
import { badge, coalesce, download, mb, stamp, type Ctx } from "./panel";
import type { Row } from "./store";
import { argsView, errorView, valueView } from "./values";

const LEVELS = ["error", "warn", "info", "log", "debug"] as const;
type Level = (typeof LEVELS)[number];

function levelOf(row: Row): Level {
  if (row.kind === "error") return "error";
  if (row.kind === "page" || row.kind === "notice") return "info";
  switch (row.e?.level) {
    case "error":
    case "assert":
      return "error";
    case "warn":
      return "warn";
    case "info":
      return "info";
    case "debug":
    case "trace":
      return "debug";
    default:
      return "log";
  }
}

const str = (v: unknown) => (typeof v === "string" ? v : "");

/** Everything a row shows, lower-cased, for the search. */
function searchText(row: Row): string {
  const e = row.e;
  if (!e) return str(row.text).toLowerCase();
  let flat: string;
  try {
    flat = [e.args, e.message, e.stack, e.url, e.value, e.title, e.source]
      .filter((v) => v !== undefined)
      .map((v) => (typeof v === "string" ? v : JSON.stringify(v)))
      .join(" ");
  } catch {
    flat = ""; // a value too deep for JSON.stringify: not searchable, still shown
  }
  return flat.toLowerCase();
}

function pageText(e: InspectEvent): string[] {
  const parts: string[] = [];
  const vp = e.viewport;
  if (Array.isArray(vp) && vp.length >= 2) parts.push(`viewport ${vp[0]}×${vp[1]}${vp[2] !== undefined ? ` @${vp[2]}x` : ""}`);
  const t = e.timing;
  if (typeof t === "object" && t !== null) {
    const timing = t as Record<string, unknown>;
    for (const [k, label] of [["ttfb", "first byte"], ["domContentLoaded", "DOMContentLoaded"], ["load", "load"]]) {
      if (typeof timing[k] === "number") parts.push(`${label} ${timing[k]} ms`);
    }
  }
  return parts;
}

function body(row: Row): (Node | string | null)[] {
  const e = row.e;
  if (row.kind === "notice" || !e) return [el("span", { class: "notice-text" }, str(row.text))];
  const stack = (s: unknown) => (typeof s === "string" && s ? el("details", { class: "stack" }, el("summary", {}, "stack"), el("pre", {}, s)) : null);
  if (row.kind === "page") {
    return [
      el("span", { class: "pill" }, "page"), " ",
      el("span", { class: "j-text" }, str(e.title) || "(no title)"), " ",
      el("code", { class: "muted" }, str(e.url)),
      el("div", { class: "muted" }, pageText(e).join(" · ")),
      e.userAgent ? el("details", {}, el("summary", {}, "user agent"), el("code", {}, str(e.userAgent))) : null,
    ];
  }
  if (row.kind === "error") {
    const where = [str(e.url), e.line, e.col].filter((x) => x !== undefined && x !== "").join(":");
    const value = e.value;
    return [
      el("span", { class: "pill bad" }, str(e.source) || "error"), " ",
      el("span", { class: "j-text" }, str(e.message)),
      where ? " " : null, where ? el("code", { class: "muted" }, where) : null,
      value !== undefined ? el("div", {}, typeof value === "object" && value !== null && (value as { $?: unknown }).$ === "error"
        ? errorView(value as Record<string, unknown>) : valueView(value, true)) : null,
      stack(e.stack),
    ];
  }
  const level = str(e.level);
  const label = level === "log" || level === "info" || level === "warn" || level === "error" ? null : el("span", { class: "pill" }, level);
  if (level === "clear") return [label, " ", el("span", { class: "muted" }, "console.clear() on the page")];
  return [label, label ? " " : null, ...argsView(e.args), stack(e.stack)];
}

export function consolePanel(root: HTMLElement, ctx: Ctx) {
  const enabled = new Set<Level>(LEVELS);
  let query = "";
  const texts = new WeakMap<Row, string>();
  const views = new WeakMap<Row, HTMLElement>();
  let pending: Row[] = [];

  const list = el("ol", { class: "console-list", "data-testid": "console-list" });
  const notes = el("p", { class: "inspect-notes", "data-testid": "console-notes" });
  const chips = LEVELS.map((level) => {
    const chip = el("button", { type: "button", class: "chip on", "data-level": level, "aria-pressed": "true" }, level);
    chip.addEventListener("click", () => {
      if (enabled.has(level)) enabled.delete(level);
      else enabled.add(level);
      chip.classList.toggle("on", enabled.has(level));
      chip.setAttribute("aria-pressed", String(enabled.has(level)));
      redraw();
    });
    return chip;
  });
  const search = el("input", { type: "search", placeholder: "Search the console", "data-testid": "console-search", class: "grow" });
  search.addEventListener("input", () => {
    query = search.value.trim().toLowerCase();
    redraw();
  });
  root.append(
    el("div", { class: "toolbar" }, ...chips, search,
      el("button", { type: "button", class: "small", onclick: () => ctx.store.clearRows(ctx.picked()) }, "Clear"),
      el("button", { type: "button", class: "small", "data-testid": "console-export", onclick: exportJson }, "Export JSON")),
    notes, list);

  function matches(row: Row): boolean {
    const picked = ctx.picked();
    if (picked && row.device !== picked) return false;
    if (row.kind === "notice") return true; // losses are always said
    if (!enabled.has(levelOf(row))) return false;
    if (!query) return true;
    let t = texts.get(row);
    if (t === undefined) texts.set(row, (t = searchText(row)));
    return t.includes(query);
  }

  function view(row: Row): HTMLElement {
    let li = views.get(row);
    if (li) return li;
    li = el("li", { class: `crow lvl-${levelOf(row)} ${row.kind}`, "data-device": row.device, "data-kind": row.kind },
      el("span", { class: "crow-time muted" }, clock(row.at)),
      ctx.picked() ? null : badge(ctx, row.device),
      el("span", { class: "crow-body" }, ...body(row)));
    if (row.depth) li.classList.add(`depth-${Math.min(row.depth, 8)}`);
    views.set(row, li);
    return li;
  }

  function drawNotes() {
    const l = ctx.store.losses(ctx.picked());
    const lim = ctx.store.limits;
    const parts: string[] = [];
    if (l.phone) parts.push(`${l.phone} events lost on the phone`);
    if (l.way) parts.push(`${l.way} lost on the way`);
    if (l.rows) parts.push(`${l.rows} older rows let go here (this page keeps the latest ${lim.rows} per device, ${mb(lim.bytes)} in all)`);
    notes.textContent = parts.join(" · ");
    notes.hidden = parts.length === 0;
  }

  const atBottom = () => list.scrollHeight - list.scrollTop - list.clientHeight < 40;

  const flush = coalesce(() => {
    const stick = atBottom();
    for (const row of pending) if (!row.gone && matches(row)) list.append(view(row));
    pending = [];
    drawNotes();
    if (stick) list.scrollTop = list.scrollHeight;
  });

  function redraw() {
    pending = [];
    list.replaceChildren(...ctx.store.rows(ctx.picked()).filter(matches).map(view));
    if (list.childElementCount === 0) list.append(el("li", { class: "empty" }, "Nothing logged yet. Pages that connect with inspect show their console here."));
    drawNotes();
    list.scrollTop = list.scrollHeight;
  }

  function exportJson() {
    const rows = ctx.store.rows(ctx.picked()).map((r) => (r.e ? r.e : { device: r.device, kind: "notice", at: r.at, text: r.text }));
    download(`tether-console-${stamp()}.json`, JSON.stringify(rows, null, 2), "application/json");
  }

  ctx.store.listen((c) => {
    if (c.t === "row") {
      list.querySelector(":scope > .empty")?.remove();
      pending.push(c.row);
      flush();
    } else if (c.t === "rowGone") {
      views.get(c.row)?.remove();
      flush();
    } else if (c.t === "reset" || c.t === "rowsCleared") {
      redraw();
    }
  });
  redraw();
  return {
    /** The picked device changed: rows are drawn again (with or without device badges). */
    redraw: () => {
      // Badges depend on the picker: forget the drawn rows.
      for (const row of ctx.store.rows("")) views.delete(row);
      redraw();
    },
  };
}
