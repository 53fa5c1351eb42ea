// tether-sdk: types of the entry point. The session classes and option types come from the
// generated bindings.
import type { PcOptions, DeviceOptions, PcSession, DeviceSession, AlarmOptions, AlarmFrame, AlarmSubscription } from "./tether_sdk.js";
export type {
  Status, TetherError, PcOptions, DeviceOptions, Member, Reply, PostOptions, CallOptions, PostRequest,
  HistoryEntry, ServerHistoryItem, CommandLog, AlarmOptions, AlarmFrame,
  InspectOptions, InspectRequest, PageEvent, InspectEvent, InspectDropped, StorageOptions, StorageResult, StorageText,
  EvalOptions, EvalResult,
} from "./tether_sdk.js";
export { PcSession, DeviceSession, AlarmSubscription } from "./tether_sdk.js";

/** Loads the WebAssembly module (once). Optional: connectPc and connectDevice call it. */
export function load(moduleOrPath?: string | URL | Request | BufferSource | WebAssembly.Module): Promise<unknown>;
/** Connects a PC page to a room; resolves with a PcSession once linked. */
export function connectPc(options: PcOptions): Promise<PcSession>;
/** Connects an app's H5 page to a room as a device; resolves with a DeviceSession once linked. */
export function connectDevice(options: DeviceOptions): Promise<DeviceSession>;
/** Subscribes to the relay's alarms: `cb` gets every alarm and alarmGap frame; reconnects and resumes by itself. */
export function subscribeAlarms(options: AlarmOptions, cb: (frame: AlarmFrame) => void): Promise<AlarmSubscription>;
