// The seed's own design (seed 004, "WebSocket bridge debug platform"), written from its
// description: what the seed's users run today. Rooms by serverId; every 2 s a heartbeat
// terminates sockets that did not answer the last ping, pings the rest, and pushes `devices`
// to a room whose connection count changed; messages are forwarded by type: post/call from
// a PC to the room's devices, postCb/callCb from a device to the room's PCs.
//
//   node seed-relay.js PORT      clients: ws://127.0.0.1:PORT/?serverId=ROOM&role=pc|device
import { WebSocketServer } from "ws";

const port = Number(process.argv[2] || 9100);
const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: false });
const rooms = new Map(); // serverId -> Set of sockets

wss.on("connection", (ws, req) => {
  const q = new URL(req.url, "http://x").searchParams;
  ws.serverId = q.get("serverId") || "";
  ws.role = q.get("role") === "pc" ? "pc" : "device";
  ws.isAlive = true;
  ws.on("pong", () => { ws.isAlive = true; });
  if (!rooms.has(ws.serverId)) rooms.set(ws.serverId, new Set());
  rooms.get(ws.serverId).add(ws);
  ws.on("message", (data) => {
    let m;
    try { m = JSON.parse(data); } catch { return; }
    const want = m.type === "post" || m.type === "call" ? "device" : m.type === "postCb" || m.type === "callCb" ? "pc" : null;
    if (!want) return;
    const text = typeof data === "string" ? data : data.toString();
    for (const peer of rooms.get(ws.serverId) || []) {
      if (peer !== ws && peer.role === want && peer.readyState === 1) peer.send(text);
    }
  });
  ws.on("close", () => {
    const set = rooms.get(ws.serverId);
    if (set) { set.delete(ws); if (set.size === 0) rooms.delete(ws.serverId); }
  });
});

// The seed's heartbeat, as written there.
const lastAliveLength = new Map();
setInterval(() => {
  const clients = {};
  wss.clients.forEach((ws) => {
    if (ws.isAlive === false) return ws.terminate();
    (clients[ws.serverId] ||= []).push(ws);
    ws.isAlive = false;
    ws.ping(() => {});
  });
  for (const serverId in clients) {
    const list = clients[serverId];
    if (list.length !== lastAliveLength.get(serverId)) {
      const devices = list.map((c, i) => ({ id: String(i), role: c.role }));
      const text = JSON.stringify({ type: "devices", msg: devices });
      for (const c of list) if (c.readyState === 1) c.send(text);
      lastAliveLength.set(serverId, list.length);
    }
  }
}, 2000);

wss.on("listening", () => console.log(`seed relay on http://127.0.0.1:${port}/`));
process.on("SIGTERM", () => process.exit(0));
