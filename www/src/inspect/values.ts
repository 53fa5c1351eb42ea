// Values from a device's page (console arguments, eval results, bodies) as docs/protocol.md
// "Values" writes them: JSON where the value was JSON, else an object tagged by its "$" key.
// Everything here is the device's text: it goes into the page as text nodes only (`el`
// appends strings as text), never as HTML, a link or an image.
import { el } from "../ui";

type Obj = Record<string, unknown>;

export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** A tagged value's tag (`"error"`, `"str"`, …), or undefined for plain JSON. */
export function tagOf(v: unknown): string | undefined {
  return isObj(v) && typeof v.$ === "string" ? v.$ : undefined;
}

const str = (v: unknown) => (typeof v === "string" ? v : v === undefined || v === null ? "" : String(v));
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

/** A cut string's `… N more characters` (`len` counts UTF-16 units, as `head.length` does). */
function moreChars(v: Obj): string {
  const more = num(v.len) - str(v.head).length;
  return more > 0 ? `… ${more.toLocaleString("en")} more characters` : "… (cut)";
}

/** One line standing for a value: the summary of a folded value, and what search looks in. */
export function preview(v: unknown, room = 100, depth = 0): string {
  if (depth > 3) return "…";
  if (v === null) return "null";
  if (typeof v === "string") return v.length > room ? `${v.slice(0, room)}…` : v;
  if (typeof v !== "object") return String(v);
  if (Array.isArray(v)) {
    const parts: string[] = [];
    let used = 0;
    for (const item of v) {
      const p = tagOf(item) === "more" ? `…${num((item as Obj).n)} more` : inner(item, depth);
      used += p.length + 2;
      if (used > room) {
        parts.push("…");
        break;
      }
      parts.push(p);
    }
    return `[${parts.join(", ")}]`;
  }
  const t = tagOf(v);
  const o = v as Obj;
  if (t !== undefined) return tagText(o, t, depth) ?? `${t} {…}`;
  const keys = Object.keys(o).filter((k) => k !== "$more");
  const shown = keys.slice(0, 5).map((k) => `${k}: ${inner(o[k], depth)}`);
  const more = keys.length > 5 || "$more" in o ? ", …" : "";
  const text = `{${shown.join(", ")}${more}}`;
  return text.length > room ? `${text.slice(0, room)}…}` : text;
}

/** A value inside another's preview: strings quoted, containers folded. */
function inner(v: unknown, depth: number): string {
  if (typeof v === "string") return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return `Array(${v.length})`;
  if (isObj(v)) {
    const t = tagOf(v);
    if (t === "str") return JSON.stringify(`${str(v.head).slice(0, 40)}…`);
    if (t !== undefined) return tagText(v, t, depth + 1) ?? t;
    return "{…}";
  }
  return String(v);
}

/** The text of a tag that is shown on one line; undefined for the ones that unfold. */
function tagText(v: Obj, t: string, depth = 0): string | undefined {
  switch (t) {
    case "undefined": return "undefined";
    case "num": return str(v.v);
    case "bigint": return `${str(v.v)}n`;
    case "sym": return str(v.v);
    case "fn": return `ƒ ${str(v.name) || "anonymous"}()`;
    case "node": return `<${str(v.d)}>`;
    case "date": return str(v.v);
    case "regexp": return str(v.v);
    case "bin": return `${str(v.type) || "binary"} (${num(v.len).toLocaleString("en")} bytes)`;
    case "str": return `${str(v.head)}${moreChars(v)}`;
    case "more": return `… ${num(v.n)} more`;
    case "cycle": return "[cycle]";
    case "threw": return "[a getter threw]";
    case "cut": return "[cut: the event's size limit was reached]";
    case "win": return `[${str(v.class) || "Window"}]`;
    case "error": return `${str(v.name) || "Error"}: ${str(v.message)}`;
    case "map": return `Map(${num(v.size)})`;
    case "set": return `Set(${num(v.size)})`;
    case "obj": return `${str(v.class) || "Object"} ${preview(v.v, 60, depth + 1)}`;
    default: return undefined;
  }
}

/** The class a tag's view takes (colours). */
const TAG_CLASS: Record<string, string> = {
  undefined: "j-null", num: "j-num", bigint: "j-num", sym: "j-str", fn: "j-fn", node: "j-node-d", date: "j-num",
  regexp: "j-str", bin: "j-muted", more: "j-muted", cycle: "j-muted", threw: "j-muted", cut: "j-muted", win: "j-muted",
};

/**
 * A view of a Value. `top`: a console argument, where a string shows as itself (no quotes);
 * `open`: the first level unfolded. Deeper levels are built when first unfolded, so a console
 * of thousands of rows costs one line each until someone looks.
 */
export function valueView(v: unknown, top = false, open = false): Node {
  if (v === null) return el("span", { class: "j-null" }, "null");
  if (typeof v === "string") return top ? el("span", { class: "j-text" }, v) : el("span", { class: "j-str" }, JSON.stringify(v));
  if (typeof v === "number") return el("span", { class: "j-num" }, String(v));
  if (typeof v === "boolean") return el("span", { class: "j-bool" }, String(v));
  if (typeof v !== "object") return el("span", {}, String(v));
  const t = tagOf(v);
  if (t === "str") {
    const o = v as Obj;
    return el("span", { class: top ? "j-text" : "j-str" }, top ? str(o.head) : JSON.stringify(str(o.head)),
      el("span", { class: "cut-mark" }, moreChars(o)));
  }
  if (t === "error") return errorView(v as Obj);
  if (t === "map" || t === "set" || t === "obj") return folded(`${tagText(v as Obj, t)}`, () => children(v as Obj, t), open);
  if (t !== undefined && tagText(v as Obj, t) !== undefined) {
    return el("span", { class: TAG_CLASS[t] ?? "j-muted" }, tagText(v as Obj, t)!);
  }
  // Plain JSON (or an unknown tag, shown as the object it is).
  const isArray = Array.isArray(v);
  const size = isArray ? (v as unknown[]).length : Object.keys(v).length;
  if (size === 0) return el("span", { class: "j-punct" }, isArray ? "[]" : "{}");
  return folded(preview(v), () => children(v as Obj, undefined), open);
}

/** A `<details>` whose children are built on first opening. */
function folded(summary: string, build: () => Node[], open: boolean): HTMLElement {
  const d = el("details", { class: "j-node" }, el("summary", {}, summary));
  let built = false;
  const fill = () => {
    if (built) return;
    built = true;
    d.append(el("div", { class: "j-children" }, ...build()));
  };
  d.addEventListener("toggle", () => d.open && fill());
  if (open) {
    fill();
    d.open = true;
  }
  return d;
}

/** The rows under an unfolded value. */
function children(v: Obj, t: string | undefined): Node[] {
  const row = (key: string | null, value: unknown) =>
    el("div", { class: "j-row" }, key === null ? null : el("span", { class: "j-key" }, `${key}: `), valueView(value));
  const items = (list: unknown, keyed: boolean): Node[] => {
    if (!Array.isArray(list)) return [row(null, list)];
    return list.map((item, i) => {
      if (tagOf(item) === "more") return el("div", { class: "j-row j-muted" }, `… ${num((item as Obj).n)} more`);
      if (keyed && Array.isArray(item) && item.length === 2) {
        return el("div", { class: "j-row" }, valueView(item[0]), el("span", { class: "j-punct" }, " → "), valueView(item[1]));
      }
      return row(keyed ? null : String(i), item);
    });
  };
  if (t === "map") return items(v.v, true);
  if (t === "set") return items(v.v, false);
  if (t === "obj") return isObj(v.v) || Array.isArray(v.v) ? children(v.v as Obj, undefined) : [row(null, v.v)];
  if (Array.isArray(v)) return items(v, false);
  const out: Node[] = [];
  for (const [k, value] of Object.entries(v)) {
    if (k === "$more") out.push(el("div", { class: "j-row j-muted" }, `… ${num(value)} more keys`));
    else out.push(row(k, value));
  }
  return out;
}

/** An error: its name and message, its stack folded under it. */
export function errorView(v: Obj): HTMLElement {
  const stack = str(v.stack);
  return el("span", { class: "j-error" },
    el("span", {}, `${str(v.name) || "Error"}: ${str(v.message)}`),
    stack ? el("details", { class: "stack" }, el("summary", {}, "stack"), el("pre", {}, stack)) : null);
}

/** Console arguments the way a browser's console shows them: a leading format string takes
 *  the arguments after it (`%s %d %i %f %o %O %j`); `%c` (CSS) takes one and applies nothing. */
export function argsView(args: unknown): (Node | string)[] {
  if (!Array.isArray(args)) return [valueView(args, true)];
  const out: (Node | string)[] = [];
  let rest = args;
  if (typeof args[0] === "string" && args[0].includes("%")) {
    let i = 1;
    const format = args[0].replace(/%([sdifoOjc%])/g, (m, c: string) => {
      if (c === "%") return "%";
      if (i >= args.length) return m;
      const a = args[i++];
      if (c === "c") return "";
      if (c === "d" || c === "i") return typeof a === "number" ? String(Math.trunc(a)) : "NaN";
      if (c === "f") return typeof a === "number" ? String(a) : "NaN";
      return typeof a === "string" ? a : preview(a);
    });
    out.push(el("span", { class: "j-text" }, format));
    rest = args.slice(i);
  }
  for (const a of rest) {
    if (out.length) out.push(" ");
    out.push(valueView(a, true));
  }
  return out;
}

/** A body or message as text to read: a string as itself, JSON pretty-printed when it is JSON;
 *  a cut string's head with how much is missing; anything else through `preview`. */
export function bodyView(v: unknown, mime = ""): Node {
  if (v === undefined) return el("span", { class: "muted" }, "(none)");
  if (typeof v === "string") {
    const pretty = /json/i.test(mime) || /^\s*[[{]/.test(v) ? prettyJson(v) : undefined;
    return el("pre", { class: "body" }, pretty ?? v);
  }
  if (tagOf(v) === "str") {
    const o = v as Obj;
    return el("div", {}, el("span", { class: "cut-mark" }, `cut on the phone: ${moreChars(o)}`), el("pre", { class: "body" }, str(o.head)));
  }
  return valueView(v, false, true);
}

function prettyJson(text: string): string | undefined {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return undefined;
  }
}

/** Whether a Value is plain JSON all the way down: no tag, no cut (`$more`). */
export function plainJson(v: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (v === null || typeof v !== "object") return true;
  if (Array.isArray(v)) return v.every((x) => plainJson(x, depth + 1));
  if ("$" in v || "$more" in v) return false;
  return Object.values(v).every((x) => plainJson(x, depth + 1));
}
