// A captured request, read defensively (every field came from a device's page), and the two
// things the Network panel makes of it: a cURL command and a `post` through the app.
//
// The cURL command is meant to be pasted into a terminal, so it must stay inert whatever the
// page put in the URL, the headers or the body: every device string is one shell word in
// single quotes (`'\''` for a quote), or, when it holds a control character (a pasted Ctrl-C
// or newline would end the quoted word for a terminal), in bash/zsh `$'…'` with every such
// character written as an escape. curl itself is kept from reading local files or expanding
// the URL: the URL goes after `--url`, `--globoff` when it has brackets, only headers with a
// valid name and no control character (`-H @file` reads a file), the body as `--data-raw`.
import type { Entry } from "./store";
import { isObj, plainJson, preview, tagOf } from "./values";

export type Pair = [string, string];

/** A captured request's fields, typed. */
export interface Captured {
  type: string;
  method: string;
  url: string;
  status?: number;
  statusText: string;
  requestHeaders: Pair[];
  requestBody: unknown;
  responseHeaders: Pair[];
  responseBody: unknown;
  ms?: number;
}

const text = (v: unknown) => (typeof v === "string" ? v : "");

/** Headers as `[[name, value]]` (what the SDK sends), or from an object; values that are
 *  not strings (a cut one) are shown by their preview. */
export function pairs(v: unknown): Pair[] {
  const value = (x: unknown) => (typeof x === "string" ? x : preview(x));
  if (Array.isArray(v)) return v.filter((p) => Array.isArray(p) && p.length >= 2).map((p) => [String(p[0]), value(p[1])]);
  if (isObj(v)) return Object.entries(v).map(([k, x]) => [k, value(x)]);
  return [];
}

export function captured(e: Entry): Captured {
  const f = e.f;
  const status = typeof f.status === "number" && Number.isFinite(f.status) ? f.status : undefined;
  const ms = typeof f.ms === "number" && Number.isFinite(f.ms) && f.ms >= 0 ? f.ms : undefined;
  return {
    type: text(f.type),
    method: text(f.method) || (f.type === "ws" || f.type === "sse" ? "GET" : ""),
    url: text(f.url),
    status,
    statusText: text(f.statusText),
    requestHeaders: pairs(f.requestHeaders),
    requestBody: f.requestBody,
    responseHeaders: pairs(f.responseHeaders),
    responseBody: f.responseBody,
    ms,
  };
}

/** A header's value, by name (case-insensitive). */
export function header(list: Pair[], name: string): string | undefined {
  const n = name.toLowerCase();
  return list.find(([k]) => k.toLowerCase() === n)?.[1];
}

/** The value the device SDK writes for a masked header (`redactHeaders`). */
const REDACTED = /^‹redacted \d+ chars›$/;

/** Headers the client makes itself: sending the captured ones again would be wrong or refused. */
const SKIP = new Set(["host", "accept-encoding", "content-length", "connection", "keep-alive", "transfer-encoding",
  "te", "trailer", "upgrade", "proxy-connection", "expect"]);

/** A valid header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Control characters: in a header value they would split it. */
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f]/;

/** The headers fit to send again (redacted ones too: the callers decide), what was left out
 *  and why, and the names of the redacted ones. */
function resendable(list: Pair[]): { keep: Pair[]; notes: string[]; redacted: string[] } {
  const keep: Pair[] = [];
  const notes: string[] = [];
  const redacted: string[] = [];
  for (const [k, v] of list) {
    const name = k.toLowerCase();
    if (name.startsWith(":") || SKIP.has(name)) continue;
    if (!TOKEN.test(k)) {
      notes.push(`a header with an invalid name was left out (${JSON.stringify(k.slice(0, 40))})`);
    } else if (CONTROL.test(v)) {
      notes.push(`${k} was left out: its value has control characters`);
    } else {
      if (REDACTED.test(v)) redacted.push(k);
      keep.push([k, v]);
    }
  }
  return { keep, notes, redacted };
}

/** The body to send again, or why it cannot be. */
function body(v: unknown): { ok: true; text?: string } | { ok: false; reason: string } {
  if (v === undefined || v === null || v === "") return { ok: true };
  if (typeof v === "string") return { ok: true, text: v };
  const t = tagOf(v);
  if (t === "str") return { ok: false, reason: "its body was cut on the phone (only the start was captured)" };
  if (t === "bin") return { ok: false, reason: "its body is binary (the phone described it, not captured it)" };
  if (t !== undefined || !plainJson(v)) return { ok: false, reason: "its body was not captured whole" };
  return { ok: true, text: JSON.stringify(v) };
}

/** Why a request cannot be sent again at all: a socket, not http(s), or a URL or method that
 *  no browser would have sent (a line break in them could split the request the app makes). */
function unsendable(c: Captured): string | undefined {
  if (c.type === "ws") return "a WebSocket is not a request that can be sent again";
  if (!/^https?:\/\//i.test(c.url)) return "only http(s) requests can be sent again";
  if (/[\u0000-\u001f\u007f]/.test(c.url)) return "its URL has control characters";
  if (c.method && !TOKEN.test(c.method)) return "its method is not a valid method name";
  return undefined;
}

/** Quotes one word for a POSIX shell, inert whatever it holds (see the top of this file). */
export function shellQuote(s: string): string {
  if (!UNSAFE.test(s)) return `'${s.replace(/'/g, "'\\''")}'`;
  let out = "$'";
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    // A quote (or `!`) written as an escape: no quote inside keeps bash's history expansion,
    // which tracks quotes itself, from seeing the rest as unquoted.
    else if (c < 0x20 || c === 0x7f || ch === "'" || ch === "!") out += `\\x${c.toString(16).padStart(2, "0")}`;
    else if (UNSAFE.test(ch)) out += `\\u${c.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}'`;
}

/** What a terminal or a reader could be fooled by: C0 and C1 controls, DEL, invisible and
 *  bidirectional formatting characters, line and paragraph separators. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/;

/** A cURL command for a captured request, or why there is none, with what it had to leave out. */
export function toCurl(c: Captured): { ok: true; command: string; notes: string[] } | { ok: false; reason: string } {
  const no = unsendable(c);
  if (no) return { ok: false, reason: no };
  const b = body(c.requestBody);
  const { keep, notes, redacted } = resendable(c.requestHeaders);
  for (const k of redacted) notes.push(`${k} was redacted on the phone: its value in this command is a placeholder`);
  const lines = [`curl --url ${shellQuote(c.url)}`];
  if (/[[\]{}]/.test(c.url)) lines.push("--globoff");
  const method = c.method || "GET";
  const data = b.ok ? b.text : undefined;
  if (method !== (data === undefined ? "GET" : "POST")) lines.push(`-X ${shellQuote(method)}`);
  for (const [k, v] of keep) lines.push(v === "" ? `-H ${shellQuote(`${k};`)}` : `-H ${shellQuote(`${k}: ${v}`)}`);
  if (data !== undefined) lines.push(`--data-raw ${shellQuote(data)}`);
  if (!b.ok) notes.push(`no body: ${b.reason}`);
  if (header(c.requestHeaders, "accept-encoding") !== undefined) lines.push("--compressed");
  return { ok: true, command: lines.join(" \\\n  "), notes };
}

/** What `post` sends to replay a request through the app, or why it cannot. */
export interface Replay {
  url: string;
  method: string;
  headers?: Record<string, string>;
  body?: string;
  notes: string[];
}

export function toReplay(c: Captured): { ok: true; replay: Replay } | { ok: false; reason: string } {
  const no = unsendable(c);
  if (no) return { ok: false, reason: no };
  const b = body(c.requestBody);
  if (!b.ok) return { ok: false, reason: `it cannot be sent again: ${b.reason}` };
  const { keep, notes, redacted } = resendable(c.requestHeaders);
  // A placeholder for a redacted header would only be refused: the app sends its own.
  for (const k of redacted) notes.push(`${k} was redacted on the phone and is not sent (the app adds its own)`);
  const headers = keep.filter(([, v]) => !REDACTED.test(v));
  return {
    ok: true,
    replay: {
      url: c.url,
      method: c.method || "GET",
      ...(headers.length ? { headers: Object.fromEntries(headers) } : {}),
      ...(b.text === undefined ? {} : { body: b.text }),
      notes,
    },
  };
}
