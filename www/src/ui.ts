// Small DOM helpers shared by both pages: an element builder, a collapsible JSON viewer and
// readable error messages. No framework: the pages are small and must load fast on a phone.

type Child = Node | string | number | null | undefined | false;

/** Creates an element: `el("button", { class: "primary", onclick }, "Send")`. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, unknown> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value as EventListener);
    } else if (key === "testid") {
      node.dataset.testid = String(value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** The element with this `data-testid`. */
export function byTestId<T extends HTMLElement = HTMLElement>(id: string): T {
  const node = document.querySelector<T>(`[data-testid="${id}"]`);
  if (!node) throw new Error(`no element with data-testid=${id}`);
  return node;
}

/** A collapsible view of any JSON value; objects and arrays fold with <details>. */
export function jsonView(value: unknown, open = true, depth = 0): Node {
  if (value === null || value === undefined) return el("span", { class: "j-null" }, "null");
  if (typeof value === "string") return el("span", { class: "j-str" }, JSON.stringify(value));
  if (typeof value === "number") return el("span", { class: "j-num" }, String(value));
  if (typeof value === "boolean") return el("span", { class: "j-bool" }, String(value));
  const isArray = Array.isArray(value);
  const entries: [string, unknown][] = isArray
    ? (value as unknown[]).map((v, i) => [String(i), v])
    : Object.entries(value as Record<string, unknown>);
  if (entries.length === 0) return el("span", { class: "j-punct" }, isArray ? "[]" : "{}");
  const summary = isArray ? `[${entries.length}]` : `{${entries.length} ${entries.length === 1 ? "key" : "keys"}}`;
  const details = el("details", { class: "j-node", open: open && depth < 3 }, el("summary", {}, summary));
  const list = el("div", { class: "j-children" });
  for (const [k, v] of entries) {
    list.append(el("div", { class: "j-row" }, isArray ? "" : el("span", { class: "j-key" }, `${k}: `), jsonView(v, open, depth + 1)));
  }
  details.append(list);
  return details;
}

/** What a failure means, for a person. */
export function describeError(e: unknown): string {
  const err = e as { code?: string; message?: string };
  switch (err?.code) {
    case "no_target":
      return `No device to send to: ${err.message}. Scan the QR code with the app first.`;
    case "timeout":
      return `The device did not answer in time (${err.message}).`;
    case "disconnected":
      return `Not connected to the relay: ${err.message}.`;
    case "unauthorized":
      return "Wrong secret for this room: another PC opened it with a different secret. Pick another room name.";
    case "buffer_full":
      return `The device is reconnecting and too much is waiting for it: ${err.message}.`;
    case "rate_limited":
      return `Slow down: ${err.message}.`;
    case "room_full":
      return "The room is full.";
    default:
      return err?.message ? `${err.code ?? "error"}: ${err.message}` : String(e);
  }
}

/** `12:04:05`. */
export function clock(ms = Date.now()): string {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/** Parses JSON typed by a person; returns the text itself when it is not JSON. */
export function looseJson(text: string): unknown {
  const t = text.trim();
  if (t === "") return undefined;
  try {
    return JSON.parse(t);
  } catch {
    return text;
  }
}

let toastTimer: ReturnType<typeof setTimeout> | undefined;

/** Shows a message at the bottom of the page for a few seconds. */
export function toast(text: string) {
  const t = document.getElementById("toast")!;
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (t.hidden = true), 6000);
}

/** Shows the connection status in the header's pill. */
export function setStatus(status: string) {
  const s = byTestId("status");
  s.dataset.status = status;
  const labels: Record<string, string> = { linked: "linked", reconnecting: "reconnecting…", unlink: "not connected", connecting: "connecting…" };
  s.textContent = labels[status] ?? status;
}
