// tether-sdk: the entry point. It loads the WebAssembly module on first use, so neither a
// bundler (Vite) nor a plain <script type="module"> needs a separate init step.
import init, * as wasm from "./tether_sdk.js";

let ready;

/** Loads the WebAssembly module (once). Optional: every function below calls it. */
export function load(moduleOrPath) {
  ready ??= init(moduleOrPath ? { module_or_path: moduleOrPath } : undefined);
  return ready;
}

/** Connects a PC page to a room; resolves with a PcSession once linked. */
export async function connectPc(options) {
  await load();
  return wasm.connectPc(options);
}

let inspector;

// The inspector is a second WebAssembly module, fetched only for `connectDevice({inspect})`:
// a page that does not ask for it never downloads it. Once loaded it is kept; a failed load
// is forgotten, so the next call tries again.
function loadInspector() {
  inspector ??= import("./tether_inspect.js")
    .then(async (m) => { await m.default(); return m; })
    .catch((e) => {
      inspector = undefined;
      throw Object.assign(new Error(`the inspector (tether_inspect.js) could not be loaded: ${e.message}`),
        { code: "inspect_unavailable", cause: e });
    });
  return inspector;
}

/** Connects an app's H5 page to a room as a device; resolves with a DeviceSession once linked. */
export async function connectDevice(options) {
  // Both modules are fetched and compiled in parallel.
  const [, insp] = await Promise.all([load(), options?.inspect ? loadInspector() : undefined]);
  return wasm.connectDevice(options, insp);
}

/** Subscribes to the relay's alarms; resolves with an AlarmSubscription. */
export async function subscribeAlarms(options, cb) {
  await load();
  return wasm.subscribeAlarms(options, cb);
}

export { PcSession, DeviceSession, AlarmSubscription } from "./tether_sdk.js";
