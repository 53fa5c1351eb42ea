// What the inspection panels share: the page they live in (`Ctx`), and small helpers for
// drawing in batches, downloading a file, copying text and saying why the phone refused.
import type { Member, PcSession } from "tether-sdk";
import { describeError, el } from "../ui";
import type { Replay } from "./request";
import type { InspectStore } from "./store";

export interface Ctx {
  store: InspectStore;
  /** The device picked in the panels' picker; "" for all devices, interleaved. */
  picked(): string;
  /** The one device a storage or eval command goes to: the picked one, or the only device
   *  in the room when there is one; undefined otherwise. */
  target(): string | undefined;
  /** A device's name (remembered after it left). */
  name(device: string): string;
  /** The device's member entry while it is in the room. */
  member(device: string): Member | undefined;
  session(): PcSession | null;
  /** Sends a captured request again through the device's app (the Request tab shows it). */
  replay(device: string, replay: Replay): void;
}

/** Runs `draw` once soon after any number of calls: events arrive in bursts of a batch. */
export function coalesce(draw: () => void): () => void {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    setTimeout(() => {
      queued = false;
      draw();
    }, 16);
  };
}

let lastDownload: string | undefined;

/** Offers `text` as a file download (one object URL alive at a time). */
export function download(name: string, text: string, type: string) {
  if (lastDownload) URL.revokeObjectURL(lastDownload);
  lastDownload = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: lastDownload, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
}

/** Copies `text` to the clipboard when the browser lets the page (it may not: no error). */
export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

/** `2026-05-04-120405`, for file names. */
export function stamp(ms = Date.now()): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** `64 MB`. */
export const mb = (bytes: number) => `${Math.round(bytes / 1024 / 1024)} MB`;

/** A device's name as a small badge. */
export function badge(ctx: Ctx, device: string): HTMLElement {
  return el("span", { class: "pill dev", title: device }, ctx.name(device));
}

/** Why a storage or eval command cannot go to `device` at all (nothing on the page to do it),
 *  or why its edits cannot (`edit`); undefined when it can. */
export function unable(ctx: Ctx, device: string | undefined, what: "read" | "edit" | "eval"): string | undefined {
  if (!ctx.session()) return "Connect to a room first.";
  if (device === undefined) return "Pick one device above: storage and eval go to one device at a time.";
  const m = ctx.member(device);
  if (!m) return `${ctx.name(device)} has left the room.`;
  const i = m.inspect;
  if (i === null || typeof i !== "object") return "This page has no inspector: it did not connect with inspect.";
  if (what === "read" || what === "edit") {
    if (!i.storage) return "This page does not capture storage (its inspect option turned storage off).";
  }
  if (what !== "read" && !i.allow) {
    return `This page has no allow hook: the phone refuses every ${what === "eval" ? "eval" : "storage edit"}.`;
  }
  return undefined;
}

/** A refusal or failure of a storage or eval command, in plain words. */
export function refusal(e: unknown): string {
  const err = e as { code?: string; message?: string };
  const message = typeof err?.message === "string" ? err.message : "";
  switch (err?.code) {
    case "not_allowed":
      return `Not allowed on this phone: ${message || "its page's allow hook said no"}.`;
    case "eval_blocked":
      return `This page's Content-Security-Policy forbids eval, so nothing ran${message ? ` (${message})` : ""}.`;
    case "threw":
      return `It threw${message ? `: ${message}` : ""}.`;
    case "inspect_off":
      return "This page has no inspector (it did not connect with inspect), so nothing ran.";
    case "bad_frame":
      return `The phone could not read the request: ${message}.`;
    default:
      return describeError(e);
  }
}
