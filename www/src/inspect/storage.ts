// The Storage panel: one device page's localStorage, sessionStorage and cookies, read with
// `s.storage({to, op: "read"})`, edited (set, remove, clear) only when the page says it has
// an `allow` hook (greyed out with the reason otherwise; the phone decides each edit anyway),
// and the page's own writes as it made them.
import type { StorageResult, StorageText } from "tether-sdk";
import { clock, el } from "../ui";
import { refusal, unable, type Ctx } from "./panel";

const AREAS = [["local", "localStorage"], ["session", "sessionStorage"], ["cookie", "Cookies"]] as const;
type Area = (typeof AREAS)[number][0];

/** The SDK's own keys: the phone never lets them be edited. */
const own = (key: string) => key.startsWith("tether.");

export function storagePanel(root: HTMLElement, ctx: Ctx) {
  /** The last storage read from each device (in memory only). */
  const last = new Map<string, StorageResult>();
  const deviceLine = el("p", { class: "muted", "data-testid": "storage-device" });
  const why = el("p", { class: "hint", "data-testid": "storage-why" });
  const status = el("p", { class: "error-text", "data-testid": "storage-status", hidden: true });
  const read = el("button", { type: "button", class: "primary small", "data-testid": "storage-read" }, "Read storage");
  const areas = el("div", { class: "storage-areas" });
  const writes = el("ol", { class: "writes", "data-testid": "storage-writes" });
  root.append(el("div", { class: "toolbar" }, read, deviceLine), why, status, areas,
    el("h3", {}, "Written by the page"), writes);
  read.addEventListener("click", () => void run({ op: "read" }));

  async function run(op: { op: "read" | "set" | "remove" | "clear"; area?: Area; key?: string; value?: string }) {
    const to = ctx.target();
    const s = ctx.session();
    const reason = unable(ctx, to, op.op === "read" ? "read" : "edit");
    if (reason || !s || !to) {
      showStatus(reason ?? "Pick one device above.");
      return;
    }
    showStatus("");
    try {
      const result = await s.storage({ to, ...op });
      last.set(to, result);
      draw();
    } catch (e) {
      showStatus(refusal(e));
    }
  }

  function showStatus(text: string) {
    status.textContent = text;
    status.hidden = text === "";
  }

  function draw() {
    const to = ctx.target();
    deviceLine.textContent = to ? `${ctx.name(to)}` : "";
    const cannotRead = unable(ctx, to, "read");
    const cannotEdit = cannotRead ?? unable(ctx, to, "edit");
    read.disabled = cannotRead !== undefined;
    why.textContent = cannotRead ?? (cannotEdit ? `Read only. ${cannotEdit}` : "Edits go to the phone, which applies them if its page's allow hook says yes.");
    const result = to ? last.get(to) : undefined;
    areas.replaceChildren();
    if (result?.cut) areas.append(el("p", { class: "cut-mark", "data-testid": "storage-cut" }, "The page's storage is larger than the phone sends: only the first part is shown."));
    for (const [area, title] of AREAS) {
      const rows = result?.[area];
      const section = el("section", { class: "storage-area", "data-area": area });
      // Edit controls are there either way, greyed with the reason when the page cannot edit.
      const off = cannotEdit;
      section.append(el("h3", {}, title,
        rows ? el("button", { type: "button", class: "small", "data-testid": `storage-clear-${area}`, disabled: off !== undefined, title: off, onclick: () => {
          if (confirm(`Clear all of ${title} on ${ctx.name(to!)}? (The phone keeps the SDK's own tether. keys.)`)) void run({ op: "clear", area });
        } }, "Clear") : null));
      if (!rows) {
        section.append(el("p", { class: "muted" }, result ? "(not sent)" : "Not read yet."));
      } else {
        section.append(table(area, rows, off), addForm(area, off));
      }
      if (area === "cookie" && rows) section.append(el("p", { class: "hint" }, "HttpOnly cookies are not visible to the page, so they are not listed."));
      areas.append(section);
    }
    drawWrites();
  }

  /** A key or value as the phone sent it: a string, or one cut (`{$: "str", head, len}`). */
  function text(t: StorageText | undefined): { text: string; cut?: number } {
    if (typeof t === "string") return { text: t };
    if (t && typeof t === "object" && typeof t.head === "string") return { text: t.head, cut: Number(t.len) || 0 };
    return { text: String(t ?? "") };
  }

  function table(area: Area, rows: [StorageText, StorageText][], off: string | undefined): HTMLElement {
    if (!Array.isArray(rows) || rows.length === 0) return el("p", { class: "muted" }, "(empty)");
    return el("table", { class: "kv-table storage-table", "data-testid": `storage-${area}` }, el("tbody", {}, ...rows.map((pair) => {
      const k = text(pair?.[0]);
      const v = text(pair?.[1]);
      const key = k.text;
      const value = v.text;
      const cut = k.cut !== undefined || v.cut !== undefined;
      const cell = el("td", { class: "value" }, value,
        v.cut !== undefined ? el("span", { class: "cut-mark" }, ` … (cut: ${v.cut} characters in all)`) : null);
      const tr = el("tr", { "data-key": key }, el("th", {}, key), cell);
      if (own(key)) {
        tr.append(el("td", { class: "hint" }, "the SDK's own: never editable"));
        return tr;
      }
      // A cut entry: only its start came, and saving what is shown would lose the rest.
      const editOff = off ?? (cut ? "Only the start of this entry came from the phone: it can be removed, not edited here." : undefined);
      const removeOff = off ?? (k.cut !== undefined ? "Only the start of this key came from the phone." : undefined);
      const editButton = el("button", { type: "button", class: "small", "data-testid": "storage-edit", disabled: editOff !== undefined, title: editOff }, "Edit");
      editButton.addEventListener("click", () => {
        const box = el("textarea", { rows: "2", "data-testid": "storage-value" });
        box.value = value;
        cell.replaceChildren(box,
          el("button", { type: "button", class: "small primary", "data-testid": "storage-save", onclick: () => void run({ op: "set", area, key, value: box.value }) }, "Save"),
          el("button", { type: "button", class: "small", onclick: draw }, "Cancel"));
        box.focus();
      });
      tr.append(el("td", { class: "actions" }, editButton,
        el("button", { type: "button", class: "small", "data-testid": "storage-remove", disabled: removeOff !== undefined, title: removeOff, onclick: () => void run({ op: "remove", area, key }) }, "Remove")));
      return tr;
    })));
  }

  function addForm(area: Area, off: string | undefined): HTMLElement {
    const disabled = off !== undefined;
    const key = el("input", { placeholder: "key", "data-testid": `storage-new-key-${area}`, disabled, title: off });
    const value = el("input", { placeholder: "value", "data-testid": `storage-new-value-${area}`, class: "grow", disabled, title: off });
    const form = el("form", { class: "row storage-add" }, key, value,
      el("button", { type: "submit", class: "small", "data-testid": `storage-set-${area}`, disabled, title: off }, "Set"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const k = key.value;
      if (k === "") return showStatus("A key is needed.");
      if (own(k)) return showStatus("Keys starting with tether. are the SDK's own: the phone never lets them be edited.");
      void run({ op: "set", area, key: k, value: value.value });
    });
    return form;
  }

  function drawWrites() {
    const to = ctx.target();
    const { list, letGo } = to ? ctx.store.writes(to) : { list: [], letGo: 0 };
    writes.replaceChildren(...list.slice().reverse().map((w) => el("li", {},
      el("span", { class: "muted" }, clock(typeof w.at === "number" ? w.at : 0)), " ",
      el("span", { class: "pill" }, `${String(w.area ?? "")} ${String(w.op ?? "")}`), " ",
      w.key !== undefined ? el("code", {}, String(w.key)) : null,
      w.value !== undefined ? el("code", { class: "muted" }, ` = ${typeof w.value === "string" ? w.value : JSON.stringify(w.value)}`) : null)));
    if (letGo) writes.append(el("li", { class: "hint" }, `${letGo} older writes let go here`));
    if (!writes.childElementCount) writes.append(el("li", { class: "empty" }, "No write seen yet."));
  }

  ctx.store.listen((c) => {
    if (c.t === "writes" && c.device === ctx.target()) drawWrites();
    if (c.t === "reset") {
      last.clear();
      draw();
    }
  });
  draw();
  return { redraw: draw };
}
