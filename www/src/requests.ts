// What the PC page does with its own requests besides sending them: a cURL command for one
// (with or without a device's cookies), and the room's stored history as one HAR file.
import type { PcSession } from "tether-sdk";
import { toCurl, type Pair } from "./inspect/request";

/** A `post` as the PC page sent it (or as history stored it). */
export interface SentPost {
  url: string;
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A cURL command for a `post`: what the PC asked the app to request. The app's native stack
 *  adds its own headers (and its cookies); with `cookie` (a device's, from its reply) the
 *  command carries those too, so it runs as that phone's user. The same quoting as the
 *  Network panel's (inert whatever the strings hold). */
export function postCurl(p: SentPost, cookie?: string): { ok: true; command: string; notes: string[] } | { ok: false; reason: string } {
  const headers: Pair[] = Object.entries(p.headers ?? {}).map(([k, v]) => [k, String(v)]);
  const body = p.body;
  const json = body !== undefined && body !== null && typeof body !== "string";
  if (json && !headers.some(([k]) => k.toLowerCase() === "content-type")) headers.push(["Content-Type", "application/json"]);
  if (cookie) headers.push(["Cookie", cookie]);
  const curl = toCurl({
    type: "fetch", method: p.method || "POST", url: p.url, statusText: "",
    requestHeaders: headers, requestBody: json ? JSON.stringify(body) : body,
    responseHeaders: [], responseBody: undefined,
  });
  if (!curl.ok) return curl;
  const notes = [...curl.notes];
  notes.push(cookie
    ? "With this device's cookies: whoever runs it acts as that phone's user. The app's own headers are not in it."
    : "What you sent, without the app's own headers and cookies (the app adds those on the phone).");
  return { ok: true, command: curl.command, notes };
}

/** The most pairs one export holds (10 pages of the relay's 500). */
export const HAR_MAX = 5000;
const PAGE = 500;

/** The room's stored posts and calls as one HAR 1.2 log, fetched from the relay's history
 *  route page by page (newest first, up to HAR_MAX), oldest first in the file, as the relay
 *  and `tether history --har` write it. `progress` hears the count after each page. */
export async function exportHar(session: PcSession, room: string, progress: (pairs: number) => void): Promise<{ har: object; pairs: number; more: boolean }> {
  const base = `${location.origin}/api/rooms/${encodeURIComponent(room)}/history?format=har&limit=${PAGE}`;
  const pages: { log: { entries: unknown[] } & Record<string, unknown> }[] = [];
  let before: string | null = null;
  let pairs = 0;
  let more = false;
  for (;;) {
    const url = before ? `${base}&before=${encodeURIComponent(before)}` : base;
    // Past the cap, one pair says whether older ones exist.
    const res: Response = await fetch(pairs >= HAR_MAX ? url.replace(`limit=${PAGE}`, "limit=1") : url, {
      headers: { Authorization: `Bearer ${session.secret}` },
      cache: "no-store",
    });
    const body = await res.json().catch(() => null);
    if (!res.ok) {
      const e = body?.error ?? {};
      throw Object.assign(new Error(e.message ?? `the relay answered ${res.status}`), { code: e.code ?? "internal" });
    }
    if (!Array.isArray(body?.log?.entries)) {
      throw Object.assign(new Error("the relay's answer is not a HAR log (is a proxy in the way?)"), { code: "internal" });
    }
    if (pairs >= HAR_MAX) {
      // The page past the cap, asked only to know whether anything was left out.
      more = body.log.entries.length > 0;
      break;
    }
    pages.push(body);
    pairs += body.log.entries.length;
    progress(pairs);
    before = res.headers.get("x-next-before");
    if (!before) break;
  }
  const first = pages[0] ?? { log: { entries: [] } };
  // Each page holds its pairs oldest first; the pages came newest first.
  const entries = pages.slice().reverse().flatMap((p) => p.log.entries);
  const comment = more ? `${first.log.comment ?? ""} (the newest ${pairs} pairs; older ones were left out)`.trim() : first.log.comment;
  return { har: { log: { ...first.log, ...(comment ? { comment } : {}), entries } }, pairs, more };
}
