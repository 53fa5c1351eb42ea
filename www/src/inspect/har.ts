// The Network panel's requests as a HAR 1.2 log (http://www.softwareishard.com/blog/har-12-spec/),
// the format browsers' developer tools import. What the phone cut or only described is said in
// each part's `comment`; WebSocket frames go in `_webSocketMessages` (as Chrome writes them),
// EventSource events in `_eventSourceMessages`; `_device` and `_type` say where each came from.
import type { Entry } from "./store";
import { captured, header, type Pair } from "./request";
import { preview, tagOf } from "./values";

type Obj = Record<string, unknown>;

const nameValue = (list: Pair[]) => list.map(([name, value]) => ({ name, value }));

/** A body as HAR content: its text when captured whole, else what is known of it. */
function content(v: unknown, mime: string): { size: number; mimeType: string; text?: string; comment?: string } {
  if (v === undefined || v === null) return { size: 0, mimeType: mime };
  if (typeof v === "string") return { size: new TextEncoder().encode(v).length, mimeType: mime, text: v };
  const o = v as Obj;
  switch (tagOf(v)) {
    case "str": {
      const len = typeof o.len === "number" ? o.len : 0;
      return { size: -1, mimeType: mime, text: typeof o.head === "string" ? o.head : "", comment: `cut on the phone: ${len} characters in all, the start kept` };
    }
    case "bin":
      return { size: typeof o.len === "number" ? o.len : -1, mimeType: mime || String(o.type ?? ""), comment: `binary (${preview(v)}): not captured` };
    default: {
      const text = JSON.stringify(v);
      return { size: new TextEncoder().encode(text).length, mimeType: mime, text, comment: "as the phone wrote it (a Value)" };
    }
  }
}

const messageText = (data: unknown) => (typeof data === "string" ? data : JSON.stringify(data ?? null));

/** The log: `entries` in order, `name(device)` naming each one's device. */
export function toHar(entries: Entry[], name: (device: string) => string): object {
  return {
    log: {
      version: "1.2",
      creator: { name: "Tether", version: "1" },
      pages: [],
      entries: entries.map((e) => {
        const c = captured(e);
        const time = c.ms ?? (e.endAt !== undefined ? Math.max(0, e.endAt - e.startAt) : 0);
        let query: { name: string; value: string }[] = [];
        try {
          query = [...new URL(c.url).searchParams].map(([n, v]) => ({ name: n, value: v }));
        } catch {
          // Not an absolute URL: no query string to list.
        }
        const reqMime = header(c.requestHeaders, "content-type") ?? "";
        const resMime = header(c.responseHeaders, "content-type") ?? "";
        const post = c.requestBody === undefined || c.requestBody === null ? undefined : content(c.requestBody, reqMime);
        const out: Obj = {
          startedDateTime: new Date(e.startAt).toISOString(),
          time,
          request: {
            method: c.method || "GET", url: c.url, httpVersion: "", cookies: [], headers: nameValue(c.requestHeaders),
            queryString: query, headersSize: -1, bodySize: post ? post.size : 0,
            ...(post ? { postData: { mimeType: post.mimeType, text: post.text ?? "", ...(post.comment ? { comment: post.comment } : {}) } } : {}),
          },
          response: {
            status: c.status ?? (c.type === "ws" && e.phase !== "error" ? 101 : 0), statusText: c.statusText, httpVersion: "",
            cookies: [], headers: nameValue(c.responseHeaders), content: content(c.responseBody, resMime), redirectURL: "",
            headersSize: -1, bodySize: -1,
          },
          cache: {},
          timings: { send: 0, wait: time, receive: 0 },
          _device: name(e.device),
          _type: c.type,
          _id: e.id,
        };
        if (e.messages.length) {
          const list = e.messages.map((m) => ({ at: m.at / 1000, m }));
          if (c.type === "ws") {
            out._webSocketMessages = list.map(({ at, m }) => ({ type: m.dir === "send" ? "send" : "receive", time: at, opcode: 1, data: messageText(m.data) }));
          } else {
            out._eventSourceMessages = list.map(({ at, m }) => ({ time: at, eventName: m.event ?? "message", data: messageText(m.data) }));
          }
        }
        if (e.messagesLetGo) out.comment = `${e.messagesLetGo} older messages were not kept by the PC page`;
        return out;
      }),
    },
  };
}
