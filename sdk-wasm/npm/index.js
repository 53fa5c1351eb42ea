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

/** Connects an app's H5 page to a room as a device; resolves with a DeviceSession once linked. */
export async function connectDevice(options) {
  await load();
  return wasm.connectDevice(options);
}

/** Subscribes to the relay's alarms; resolves with an AlarmSubscription. */
export async function subscribeAlarms(options, cb) {
  await load();
  return wasm.subscribeAlarms(options, cb);
}

export { PcSession, DeviceSession, AlarmSubscription } from "./tether_sdk.js";
