// The inspector's JS shim: only what wasm-bindgen cannot express. A console method takes any
// number of arguments and runs with a `this`; a Rust closure has a fixed arity and never sees
// `this`. So the wrapper is JS, and what it records is decided in Rust.

const LEVELS = ["log", "info", "warn", "error", "debug", "trace", "assert", "dir", "table",
  "group", "groupCollapsed", "groupEnd", "clear"];

// Wraps each console level: `rec(level)` first, then the original with the same `this` and
// arguments, returning its result. `rec` never runs inside itself (what it logs is not
// recorded); if it throws (the wasm trapped), the wrappers pass through from then on. Returns
// the function that undoes it: each original comes back where our wrapper is still the one
// installed; where another tool wrapped ours since, ours stays in its chain, passing through.
export function hookConsole(rec) {
  const c = globalThis.console;
  const undo = [];
  let on = true;
  let busy = false;
  for (const level of LEVELS) {
    const orig = c && c[level];
    if (typeof orig !== "function") continue;
    const wrap = function (...args) {
      if (on && !busy) {
        busy = true;
        try { rec(level); } catch { on = false; } finally { busy = false; }
      }
      return orig.apply(this, args);
    };
    c[level] = wrap;
    undo.push(() => { if (c[level] === wrap) c[level] = orig; });
  }
  return () => { on = false; undo.forEach((u) => u()); };
}
