// The popular general answer: a Socket.IO 4 server with rooms. A PC's `post`/`call` goes to
// the room's devices, a device's `postCb`/`callCb` to the room's PCs; `devices` is emitted to
// the room when someone joins or leaves.
//
//   node socketio-relay.js PORT   clients: ws://127.0.0.1:PORT/socket.io/?EIO=4&transport=websocket&room=R&role=pc|device
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] || 9200);
const http = createServer();
const io = new Server(http, { transports: ["websocket"], perMessageDeflate: false, serveClient: false });

function devices(room) {
  const ids = [...(io.sockets.adapter.rooms.get(room) || [])];
  io.to(room).emit("devices", ids.map((id) => ({ id, role: io.sockets.sockets.get(id)?.data.role })));
}

io.on("connection", (socket) => {
  const q = socket.handshake.query;
  const room = String(q.room || "");
  const role = q.role === "pc" ? "pc" : "device";
  socket.data.role = role;
  socket.join([room, `${room}:${role}`]);
  devices(room);
  for (const ev of ["post", "call"]) socket.on(ev, (m) => socket.to(`${room}:device`).emit(ev, m));
  for (const ev of ["postCb", "callCb"]) socket.on(ev, (m) => socket.to(`${room}:pc`).emit(ev, m));
  socket.on("disconnect", () => devices(room));
});

http.listen(port, "127.0.0.1", () => console.log(`socket.io relay on http://127.0.0.1:${port}/`));
process.on("SIGTERM", () => process.exit(0));
