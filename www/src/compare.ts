// Several devices' replies to one request, side by side: each reply flattened to its leaves
// (`result.body.user.id`, `cookie`, `appInfo.platform`), one row per path in any of them, and
// the rows whose values are not the same on every device marked. Pure: no DOM (pc.ts draws it)
// and no imports, so tests/browser/compare.test.mjs runs it in Node.
//
// Bounded whatever the devices sent: at most MAX_DEPTH levels (deeper, a subtree is compared
// as its JSON text) and MAX_LEAVES leaves per field of a reply (past it, the rest of each
// level is one `…` row holding its JSON text, so a difference there is still seen, if not
// where).

export const MAX_DEPTH = 8;
export const MAX_LEAVES = 500;
/** A value's shown text is cut to this many characters (the comparison uses all of it). */
export const MAX_SHOWN = 200;

export interface Row {
  path: string;
  /** Each column's value at this path as JSON text; undefined where that reply has no such path. */
  values: (string | undefined)[];
  differs: boolean;
}

/** What is compared of a reply: its result, error, cookie and app info. */
export function comparable(reply: { result?: unknown; error?: unknown; cookie?: unknown; appInfo?: unknown }): Record<string, unknown> {
  const out: Record<string, unknown> = { result: reply.result ?? null };
  if (reply.error !== undefined && reply.error !== null) out.error = reply.error;
  if (reply.cookie !== undefined && reply.cookie !== null) out.cookie = reply.cookie;
  if (reply.appInfo !== undefined && reply.appInfo !== null) out.appInfo = reply.appInfo;
  return out;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A path segment: `.key`, or `["key"]` when the key is not a plain name; `[3]` for an index. */
function join(prefix: string, key: string | number): string {
  if (typeof key === "number") return `${prefix}[${key}]`;
  if (key === "…") return prefix ? `${prefix}.…` : "…"; // the rest of a level (see flatten)
  if (/^[A-Za-z_$][\w$-]*$/.test(key)) return prefix ? `${prefix}.${key}` : key;
  return `${prefix}[${JSON.stringify(key)}]`;
}

function text(v: unknown): string {
  try {
    return JSON.stringify(v) ?? "null";
  } catch {
    return '"(not JSON)"';
  }
}

/** `value`'s leaves as path → JSON text, in the order met. An object's top-level fields each
 *  get their own MAX_LEAVES (so a huge `result` cannot crowd out `cookie` or `error`); within
 *  one, when the leaves run out, each level left unfinished gets one `…` row holding the rest
 *  of it, so a difference anywhere still shows (at most MAX_DEPTH such rows). */
export function flatten(value: unknown): Map<string, string> {
  const out = new Map<string, string>();
  let room = MAX_LEAVES;
  const walk = (v: unknown, path: string, depth: number) => {
    const nested = Array.isArray(v) ? v.length > 0 : isPlainObject(v) && Object.keys(v).length > 0;
    if (!nested || depth >= MAX_DEPTH) {
      out.set(path || "(value)", text(v));
      room -= 1;
      return;
    }
    const entries: [string | number, unknown][] = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v as object);
    const rest = (from: number) => text(Array.isArray(v) ? v.slice(from) : Object.fromEntries(entries.slice(from)));
    for (let i = 0; i < entries.length; i++) {
      if (room <= 1 && i < entries.length - 1) {
        // The last leaf this field may have: the rest of this level, as one row.
        out.set(join(path, "…"), rest(i));
        room = 0;
        return;
      }
      walk(entries[i][1], join(path, entries[i][0]), depth + 1);
      if (room <= 0) {
        if (i < entries.length - 1) out.set(join(path, "…"), rest(i + 1));
        return;
      }
    }
  };
  if (isPlainObject(value) && Object.keys(value).length > 0) {
    for (const [k, v] of Object.entries(value)) {
      room = MAX_LEAVES;
      walk(v, join("", k), 1);
    }
  } else {
    walk(value, "", 0);
  }
  return out;
}

/** One row per path found in any of `values`, in the order first met; `differs` when the
 *  values at that path are not all equal (a path missing from some column differs). */
export function compare(values: unknown[]): Row[] {
  const flat = values.map(flatten);
  const paths: string[] = [];
  const seen = new Set<string>();
  for (const f of flat) {
    for (const p of f.keys()) {
      if (!seen.has(p)) {
        seen.add(p);
        paths.push(p);
      }
    }
  }
  return paths.map((path) => {
    const row = flat.map((f) => f.get(path));
    return { path, values: row, differs: row.some((v) => v !== row[0]) };
  });
}

/** A value's text as shown in a cell. */
export function shown(v: string | undefined): string {
  if (v === undefined) return "(absent)";
  return v.length > MAX_SHOWN ? `${v.slice(0, MAX_SHOWN)}… (${v.length} characters)` : v;
}
