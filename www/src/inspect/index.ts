// The PC page's inspection panels (#18): Console, Network, Storage and Eval, fed by the
// session's `onInspect`, with one device picker for all four ("all devices" interleaves them,
// each row with its device's name).
//
// Security: everything here came from a device's page, which may be hostile. It is drawn with
// DOM text only (`el` appends strings as text nodes; no innerHTML anywhere), no URL it sent
// becomes a link or an image, its styles (`%c`) are never applied, the cURL command is inert
// in a shell (request.ts), and none of it is persisted: it lives in this page's memory, bounded
// (store.ts), and goes with it.
import type { InspectDropped, InspectEvent, Member, PcSession } from "tether-sdk";
import { byTestId, el } from "../ui";
import { consolePanel } from "./console";
import { evalPanel } from "./eval";
import { networkPanel } from "./network";
import type { Ctx } from "./panel";
import type { Replay } from "./request";
import { storagePanel } from "./storage";
import { InspectStore } from "./store";

export const PANELS = ["console", "network", "storage", "eval"] as const;

export interface Host {
  session(): PcSession | null;
  /** Sends a captured request again as a `post` to `device` (the Request tab shows the reply). */
  replay(device: string, replay: Replay): void;
}

export function mountInspector(host: Host) {
  const store = new InspectStore();
  const picker = byTestId<HTMLSelectElement>("inspect-device");
  let members: Member[] = [];
  /** Names of devices seen, kept after they leave (their rows stay). */
  const names = new Map<string, string>();

  const member = (id: string) => members.find((m) => m.id === id && m.role === "device");
  store.present = (id) => member(id) !== undefined;
  store.listen((c) => c.t === "forgot" && drawPicker());
  const ctx: Ctx = {
    store,
    picked: () => picker.value,
    target: () => {
      if (picker.value) return picker.value;
      const devices = members.filter((m) => m.role === "device");
      return devices.length === 1 ? devices[0].id : undefined;
    },
    name: (id) => member(id)?.name ?? names.get(id) ?? id,
    member,
    session: host.session,
    replay: host.replay,
  };

  const panel = (name: string) => byTestId(`panel-${name}`);
  const consoleView = consolePanel(panel("console"), ctx);
  const networkView = networkPanel(panel("network"), ctx);
  const storageView = storagePanel(panel("storage"), ctx);
  const evalView = evalPanel(panel("eval"), ctx);
  const redraw = () => [consoleView, networkView, storageView, evalView].forEach((v) => v.redraw());

  /** The picker: all devices, each device in the room, and each one that left but has rows. */
  function drawPicker() {
    const chosen = picker.value;
    const ids = [...members.filter((m) => m.role === "device").map((m) => m.id), ...store.known()];
    const unique = [...new Set(ids)];
    picker.replaceChildren(el("option", { value: "" }, "all devices (interleaved)"),
      ...unique.map((id) => el("option", { value: id }, `${ctx.name(id)}${member(id) ? (member(id)!.away ? " (away)" : "") : " (left)"}`)));
    picker.value = unique.includes(chosen) ? chosen : "";
    if (picker.value !== chosen) redraw();
  }
  picker.addEventListener("change", redraw);

  return {
    /** What `onInspect` hands over. */
    push(ev: InspectEvent | InspectDropped) {
      const fresh = typeof ev?.device === "string" && !store.known().includes(ev.device);
      store.push(ev);
      if (fresh) drawPicker();
    },
    /** The room's member list changed. */
    members(list: Member[]) {
      members = list;
      for (const m of list) if (m.role === "device" && m.name) names.set(m.id, m.name);
      // A name is kept while its device is here or has rows here.
      const known = new Set(store.known());
      for (const id of names.keys()) if (!known.has(id) && !member(id)) names.delete(id);
      drawPicker();
      networkView.members();
      storageView.redraw();
      evalView.redraw();
    },
    /** Another room: forget everything. */
    reset() {
      members = [];
      names.clear();
      store.reset();
      drawPicker();
    },
  };
}
