// What the PC page keeps of the devices' pages (#18): each device's console rows, its network
// requests merged by id, its page's storage writes and page info, and what was lost and where.
// In memory only (nothing a device sent is ever persisted), bounded per device; the oldest go
// first and are counted, so the panels can say how many they let go.
import type { InspectDropped, InspectEvent } from "tether-sdk";

/** Per device: console rows (console, error and page events, loss notices), requests, the
 *  messages of one WebSocket or EventSource, the page's own storage writes; and the bytes of
 *  all of it, all devices together (as JSON text, about what it holds in memory). */
export const LIMITS = { rows: 5000, requests: 1000, messages: 200, writes: 200, bytes: 64 * 1024 * 1024 };
export type Limits = typeof LIMITS;

/** A line of the Console panel: a console, error or page event, or a notice of loss. */
export interface Row {
  /** Arrival order across devices: "all devices" interleaves by it. */
  seq: number;
  device: string;
  at: number;
  kind: "console" | "error" | "page" | "notice";
  /** Indentation from the page's console.group calls. */
  depth: number;
  /** The event as the SDK handed it over (console, error, page). */
  e?: InspectEvent;
  /** A notice's words. */
  text?: string;
  /** What it holds, in bytes of JSON (about). */
  size: number;
  /** Set when the store let the row go (its element should go too). */
  gone?: boolean;
}

/** One frame of a WebSocket, or one event of an EventSource. */
export interface Message {
  at: number;
  dir: string;
  event?: string;
  data: unknown;
  size: number;
}

/** One request (or socket, or event stream) of a device's page: its events merged by `id`. */
export interface Entry {
  seq: number;
  device: string;
  id: string;
  /** The last phase seen: start, end, open, message, close, error. */
  phase: string;
  startAt: number;
  endAt?: number;
  /** The events' fields, later ones winning: type, method, url, status, statusText,
   *  requestHeaders, requestBody, responseHeaders, responseBody, ms, … (as sent: check types). */
  f: Record<string, unknown>;
  messages: Message[];
  /** Older messages let go past LIMITS.messages. */
  messagesLetGo: number;
  /** Its events' bytes (about), its messages' included. */
  size: number;
  /** Of which its fields' (`f`). */
  fSize?: number;
  gone?: boolean;
}

export interface Losses {
  /** Events the phone's ring let go before a PC read them (its `dropped` notices). */
  phone: number;
  /** Events missing from the device's numbering that no notice explains: lost between the
   *  phone and this page (the relay drops batches for a slow PC), or refused by a page's
   *  filter that threw. */
  way: number;
  /** What this page let go to stay within its limits. */
  rows: number;
  requests: number;
}

interface Write {
  seq: number;
  size: number;
  e: InspectEvent;
}

interface Device {
  rows: Row[];
  requests: Map<string, Entry>;
  writes: Write[];
  page?: InspectEvent;
  lost: Losses;
  writesLetGo: number;
  /** The last event number seen, and how many of the numbers after it the last `dropped`
   *  notice accounts for. */
  lastN?: number;
  explained: number;
  depth: number;
}

export type Change =
  | { t: "row"; row: Row }
  | { t: "rowGone"; row: Row }
  | { t: "entry"; entry: Entry }
  | { t: "entryGone"; entry: Entry }
  | { t: "writes"; device: string }
  /** The console rows, or the requests, were cleared: draw them again. */
  | { t: "rowsCleared" }
  | { t: "entriesCleared" }
  /** A device that left and has nothing left here was forgotten. */
  | { t: "forgot"; device: string }
  /** Everything was forgotten (another room). */
  | { t: "reset" };

/** A whole non-negative number, or 0: counts from a device are not trusted to be numbers. */
export const count = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);

/** The kinds a `dropped` notice counts (any other key a device sends is ignored). */
const KINDS = new Set(["console", "error", "network", "storage", "page"]);

/** The fields of a network event that say where it belongs, not what it carries. */
const OWN = new Set(["device", "kind", "at", "n", "id", "phase"]);

/** Room for the bookkeeping of one row, request or message. */
const OVERHEAD = 64;

/** About what a thing from a device holds: its JSON text's length. A value too deep for
 *  JSON.stringify counts as an event at the SDK's cap. */
function sizeOf(v: unknown): number {
  try {
    return (JSON.stringify(v)?.length ?? 0) + OVERHEAD;
  } catch {
    return 32768;
  }
}

export class InspectStore {
  private devices = new Map<string, Device>();
  private seq = 0;
  private bytes = 0;
  private listeners: ((c: Change) => void)[] = [];
  /** Whether a device is in the room now (a device that is not, and has nothing left here
   *  once older things go, is forgotten). */
  present: (device: string) => boolean = () => false;

  constructor(readonly limits: Limits = LIMITS) {}

  /** Calls `cb` with every change, as it happens (panels batch their own drawing). */
  listen(cb: (c: Change) => void) {
    this.listeners.push(cb);
  }

  private emit(c: Change) {
    for (const cb of this.listeners) cb(c);
  }

  private device(id: string): Device {
    let d = this.devices.get(id);
    if (!d) {
      d = { rows: [], requests: new Map(), writes: [], lost: { phone: 0, way: 0, rows: 0, requests: 0 }, writesLetGo: 0, explained: 0, depth: 0 };
      this.devices.set(id, d);
    }
    return d;
  }

  /** The devices this page has heard from, in the order it first did. */
  known(): string[] {
    return [...this.devices.keys()];
  }

  /** Takes one thing `onInspect` handed over. */
  push(ev: InspectEvent | InspectDropped) {
    if (typeof ev !== "object" || ev === null || typeof ev.device !== "string") return;
    const d = this.device(ev.device);
    // A time a Date can hold (a hostile device's `at: 1e300` would make every later
    // `toISOString()` throw, and the HAR export with it).
    const at = typeof ev.at === "number" && Math.abs(ev.at) <= 8.64e15 ? ev.at : Date.now();
    if (ev.kind === "dropped") {
      const counts = typeof ev.counts === "object" && ev.counts !== null ? Object.entries(ev.counts) : [];
      const parts = counts.filter(([k]) => KINDS.has(k)).map(([k, v]) => [k, count(v)] as const).filter(([, v]) => v > 0);
      const total = parts.reduce((a, [, v]) => a + v, 0);
      if (total === 0) return;
      d.lost.phone += total;
      d.explained += total;
      const text = `${total} events lost on the phone (its buffer was full: ${parts.map(([k, v]) => `${v} ${k}`).join(", ")})`;
      this.addRow(d, { seq: 0, device: ev.device, at, kind: "notice", depth: 0, text, size: text.length + OVERHEAD });
      this.trim();
      return;
    }
    const e = ev as InspectEvent;
    this.numbering(d, e, at);
    this.take(d, e, at);
    this.trim();
  }

  private take(d: Device, e: InspectEvent, at: number) {
    const size = sizeOf(e);
    switch (e.kind) {
      case "console":
        if (e.level === "groupEnd") {
          d.depth = Math.max(0, d.depth - 1);
          return;
        }
        this.addRow(d, { seq: 0, device: e.device, at, kind: "console", depth: d.depth, e, size });
        if (e.level === "group") d.depth = Math.min(d.depth + 1, 16);
        return;
      case "error":
        this.addRow(d, { seq: 0, device: e.device, at, kind: "error", depth: 0, e, size });
        return;
      case "page":
        d.page = e;
        this.addRow(d, { seq: 0, device: e.device, at, kind: "page", depth: 0, e, size });
        return;
      case "network":
        this.network(d, e, at, size);
        return;
      case "storage":
        d.writes.push({ seq: ++this.seq, size, e });
        this.bytes += size;
        if (d.writes.length > this.limits.writes) this.dropWrite(d);
        this.emit({ t: "writes", device: e.device });
        return;
      default:
        return; // a kind this page does not know yet
    }
  }

  /** Notices a gap in the device's event numbers (`n`) that its last `dropped` notice does
   *  not account for. A number that goes back is a new session of the device's page. */
  private numbering(d: Device, e: InspectEvent, at: number) {
    const n = typeof e.n === "number" && Number.isSafeInteger(e.n) ? e.n : undefined;
    if (n === undefined) return;
    if (d.lastN !== undefined && n > d.lastN + 1) {
      const gap = n - d.lastN - 1;
      const missing = Math.max(0, gap - d.explained);
      if (missing > 0) {
        d.lost.way += missing;
        const text = `${missing} events lost on the way (missing from the device's numbering: dropped for a slow PC, or by a page filter that threw)`;
        this.addRow(d, { seq: 0, device: e.device, at, kind: "notice", depth: 0, text, size: text.length + OVERHEAD });
      }
    }
    // A dropped notice accounts only for the numbers just before the event that follows it.
    d.explained = 0;
    d.lastN = n;
  }

  private addRow(d: Device, row: Row) {
    row.seq = ++this.seq;
    d.rows.push(row);
    this.bytes += row.size;
    this.emit({ t: "row", row });
    if (d.rows.length > this.limits.rows) this.dropRow(d);
  }

  private network(d: Device, e: InspectEvent, at: number, size: number) {
    const id = typeof e.id === "string" || typeof e.id === "number" ? String(e.id) : `n${String(e.n)}`;
    let entry = d.requests.get(id);
    if (!entry) {
      entry = { seq: ++this.seq, device: e.device, id, phase: "", startAt: at, f: {}, messages: [], messagesLetGo: 0, size: 0 };
      d.requests.set(id, entry);
      if (d.requests.size > this.limits.requests) this.dropEntry(d);
    }
    const phase = typeof e.phase === "string" ? e.phase : "";
    if (phase === "message") {
      entry.size += size;
      this.bytes += size;
      entry.messages.push({ at, dir: typeof e.dir === "string" ? e.dir : "", event: typeof e.event === "string" ? e.event : undefined, data: e.data, size });
      if (entry.messages.length > this.limits.messages) {
        const old = entry.messages.shift()!;
        entry.messagesLetGo += 1;
        entry.size -= old.size;
        this.bytes -= old.size;
      }
    } else {
      // Later fields replace earlier ones: what is held is the fields as they are now (an
      // EventSource that reconnects for ever must not grow it).
      for (const [k, v] of Object.entries(e)) if (!OWN.has(k)) entry.f[k] = v;
      const now = sizeOf(entry.f);
      const grew = now - (entry.fSize ?? 0);
      entry.fSize = now;
      entry.size += grew;
      this.bytes += grew;
      if (phase === "start") entry.startAt = at;
      if (phase === "end" || phase === "close" || phase === "error") entry.endAt = at;
      entry.phase = phase;
    }
    this.emit({ t: "entry", entry });
  }

  private dropRow(d: Device) {
    const old = d.rows.shift()!;
    old.gone = true;
    d.lost.rows += 1;
    this.bytes -= old.size;
    this.emit({ t: "rowGone", row: old });
  }

  private dropEntry(d: Device) {
    const [id, old] = d.requests.entries().next().value!;
    d.requests.delete(id);
    old.gone = true;
    d.lost.requests += 1;
    this.bytes -= old.size;
    this.emit({ t: "entryGone", entry: old });
  }

  private dropWrite(d: Device) {
    this.bytes -= d.writes.shift()!.size;
    d.writesLetGo += 1;
  }

  /** Over the byte budget, the oldest things go first, whatever their device or kind. A
   *  device that left and has nothing left here is forgotten. */
  private trim() {
    while (this.bytes > this.limits.bytes) {
      let oldest: { seq: number; id: string; d: Device; drop: (d: Device) => void } | undefined;
      for (const [id, d] of this.devices) {
        const heads: [number | undefined, (d: Device) => void][] = [
          [d.rows[0]?.seq, (x) => this.dropRow(x)],
          [d.requests.values().next().value?.seq, (x) => this.dropEntry(x)],
          [d.writes[0]?.seq, (x) => { this.dropWrite(x); this.emit({ t: "writes", device: id }); }],
        ];
        for (const [seq, drop] of heads) if (seq !== undefined && (!oldest || seq < oldest.seq)) oldest = { seq, id, d, drop };
      }
      if (!oldest) break;
      oldest.drop(oldest.d);
      const d = oldest.d;
      if (d.rows.length === 0 && d.requests.size === 0 && d.writes.length === 0 && !this.present(oldest.id)) {
        this.devices.delete(oldest.id);
        this.emit({ t: "forgot", device: oldest.id });
      }
    }
  }

  /** The bytes held now (about), all devices together. */
  held(): number {
    return this.bytes;
  }

  /** Console rows of one device, or of all of them interleaved in arrival order (""). */
  rows(device: string): Row[] {
    if (device) return this.devices.get(device)?.rows.slice() ?? [];
    return [...this.devices.values()].flatMap((d) => d.rows).sort((a, b) => a.seq - b.seq);
  }

  /** Requests of one device, or of all (""), in the order they were first seen. */
  entries(device: string): Entry[] {
    if (device) return [...(this.devices.get(device)?.requests.values() ?? [])];
    return [...this.devices.values()].flatMap((d) => [...d.requests.values()]).sort((a, b) => a.seq - b.seq);
  }

  /** The page's own storage writes (newest last) and how many older ones were let go. */
  writes(device: string): { list: InspectEvent[]; letGo: number } {
    const d = this.devices.get(device);
    return { list: d?.writes.map((w) => w.e) ?? [], letGo: d?.writesLetGo ?? 0 };
  }

  /** The last page info a device sent. */
  page(device: string): InspectEvent | undefined {
    return this.devices.get(device)?.page;
  }

  /** Losses of one device, or summed over all (""). */
  losses(device: string): Losses {
    const sum: Losses = { phone: 0, way: 0, rows: 0, requests: 0 };
    for (const [id, d] of this.devices) {
      if (device && id !== device) continue;
      sum.phone += d.lost.phone;
      sum.way += d.lost.way;
      sum.rows += d.lost.rows;
      sum.requests += d.lost.requests;
    }
    return sum;
  }

  /** Empties the console rows of one device or of all (""); what was lost stays counted. */
  clearRows(device: string) {
    for (const [id, d] of this.devices) {
      if (device && id !== device) continue;
      for (const r of d.rows) {
        r.gone = true;
        this.bytes -= r.size;
      }
      d.rows = [];
    }
    this.emit({ t: "rowsCleared" });
  }

  /** Empties the requests of one device or of all (""). */
  clearEntries(device: string) {
    for (const [id, d] of this.devices) {
      if (device && id !== device) continue;
      for (const e of d.requests.values()) {
        e.gone = true;
        this.bytes -= e.size;
      }
      d.requests.clear();
    }
    this.emit({ t: "entriesCleared" });
  }

  /** Forgets everything (another room). */
  reset() {
    this.devices.clear();
    this.bytes = 0;
    this.emit({ t: "reset" });
  }
}
