//! Each peer's wire protocol, as far as the benchmarks need it: joining a room as a PC or a
//! device, a `post` with an id, the device's answer, and the PC reading that answer's id.

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket to a peer.
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The relays measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// This project's relay (`/ws`, history on).
    Tether,
    /// Seed 004's Node `ws` relay (`bench/peers/seed-relay.js`).
    Seed,
    /// A Socket.IO 4 relay with rooms (`bench/peers/socketio-relay.js`).
    Socketio,
    /// The PageSpy server (npm `@huolala-tech/page-spy-api`): rooms at `NAME.local`, made on
    /// first join (`forceCreate`), `broadcast` to the room's other members.
    Pagespy,
}

/// What a frame means to the benchmark.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A request reaching a device: answer it with this reply text.
    Request(String),
    /// A reply reaching the PC, with the id the PC gave its request.
    Reply(String),
    /// Socket.IO's ping: answer with `3`.
    Ping,
    /// Anything else (welcome, devices lists, acks).
    Other,
}

/// How long a join may take.
const JOIN_WAIT: Duration = Duration::from_secs(10);

impl Peer {
    /// The URL a member of `room` with `role` (`pc` or `device`) opens, on the peer at `base`
    /// (`host:port`).
    pub fn url(self, base: &str, room: &str, role: &str) -> String {
        match self {
            Peer::Tether => format!("ws://{base}/ws?room={room}&role={role}&secret=bench-0123456789abcdef"),
            Peer::Seed => format!("ws://{base}/?serverId={room}&role={role}"),
            Peer::Socketio => {
                format!("ws://{base}/socket.io/?EIO=4&transport=websocket&room={room}&role={role}")
            }
            Peer::Pagespy => format!(
                "ws://{base}/api/v1/ws/room/join?address={room}.local&name={role}&userId={role}&forceCreate=true"
            ),
        }
    }

    /// Opens a member's socket and completes the peer's handshake.
    pub async fn join(self, base: &str, room: &str, role: &str) -> Result<Ws> {
        self.join_from(base, room, role, None).await
    }

    /// Like [`Peer::join`], from the local address `source` (one of 127.0.0.x): binding port 0
    /// on one address slows sharply past about half the ephemeral range.
    pub async fn join_from(
        self,
        base: &str,
        room: &str,
        role: &str,
        source: Option<std::net::IpAddr>,
    ) -> Result<Ws> {
        let url = self.url(base, room, role);
        let connect = async {
            let addr: std::net::SocketAddr = base.parse().context("base must be host:port")?;
            let sock = tokio::net::TcpSocket::new_v4()?;
            if let Some(ip) = source {
                sock.bind((ip, 0).into())?;
            }
            let tcp = sock.connect(addr).await?;
            tcp.set_nodelay(true)?;
            let (ws, _) =
                tokio_tungstenite::client_async(&url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)).await?;
            anyhow::Ok(ws)
        };
        let mut ws = tokio::time::timeout(JOIN_WAIT, connect)
            .await
            .context("connect timed out")?
            .with_context(|| format!("connect {url}"))?;
        match self {
            Peer::Tether => {
                // Until the welcome.
                loop {
                    let text = next_text(&mut ws).await?;
                    if text.contains("\"welcome\"") {
                        break;
                    }
                    if text.contains("\"error\"") {
                        bail!("refused: {text}");
                    }
                }
            }
            Peer::Seed => {}
            Peer::Pagespy => {
                // Until `connect` (the member's own address and the room's members).
                loop {
                    let text = next_text(&mut ws).await?;
                    if text.starts_with(r#"{"type":"connect""#) {
                        break;
                    }
                    if text.starts_with(r#"{"type":"error""#) {
                        bail!("refused: {text}");
                    }
                }
            }
            Peer::Socketio => {
                // Engine.IO open packet, then connect to the default namespace.
                let open = next_text(&mut ws).await?;
                if !open.starts_with('0') {
                    bail!("expected an Engine.IO open packet, got {open}");
                }
                ws.send(Message::text("40")).await?;
                loop {
                    let t = next_text(&mut ws).await?;
                    if t.starts_with("40") {
                        break;
                    }
                }
            }
        }
        Ok(ws)
    }

    /// A PC's `post` with `id`.
    pub fn post(self, id: &str) -> String {
        match self {
            Peer::Tether | Peer::Seed => {
                json!({"type": "post", "id": id, "msg": {"url": "https://api.example/answer?qID=5"}})
                    .to_string()
            }
            Peer::Socketio => {
                format!("42{}", json!(["post", {"id": id, "url": "https://api.example/answer?qID=5"}]))
            }
            Peer::Pagespy => pagespy_broadcast(
                json!({"type": "post", "id": id, "msg": {"url": "https://api.example/answer?qID=5"}}),
            ),
        }
    }

    /// Reads one text frame.
    pub fn classify(self, text: &str) -> Frame {
        match self {
            Peer::Tether | Peer::Seed => {
                let Ok(v) = serde_json::from_str::<Value>(text) else { return Frame::Other };
                let id = v["id"].as_str().unwrap_or_default().to_owned();
                match v["type"].as_str() {
                    Some("post") => Frame::Request(
                        json!({"type": "postCb", "id": id, "msg": {"result": {"code": 0}, "cookie": "uid=42"}})
                            .to_string(),
                    ),
                    Some("postCb") => Frame::Reply(id),
                    _ => Frame::Other,
                }
            }
            Peer::Socketio => {
                if text == "2" {
                    return Frame::Ping;
                }
                let Some(body) = text.strip_prefix("42") else { return Frame::Other };
                let Ok(v) = serde_json::from_str::<Value>(body) else { return Frame::Other };
                let id = v[1]["id"].as_str().unwrap_or_default().to_owned();
                match v[0].as_str() {
                    Some("post") => Frame::Request(format!(
                        "42{}",
                        json!(["postCb", {"id": id, "result": {"code": 0}, "cookie": "uid=42"}])
                    )),
                    Some("postCb") => Frame::Reply(id),
                    _ => Frame::Other,
                }
            }
            Peer::Pagespy => {
                let Ok(v) = serde_json::from_str::<Value>(text) else { return Frame::Other };
                if v["type"] != "broadcast" {
                    return Frame::Other;
                }
                let data = &v["content"]["data"];
                let id = data["id"].as_str().unwrap_or_default().to_owned();
                match data["type"].as_str() {
                    Some("post") => Frame::Request(pagespy_broadcast(
                        json!({"type": "postCb", "id": id, "msg": {"result": {"code": 0}, "cookie": "uid=42"}}),
                    )),
                    Some("postCb") => Frame::Reply(id),
                    _ => Frame::Other,
                }
            }
        }
    }
}

/// A PageSpy `broadcast` of `data` to the room's other members (in a room of one PC and one
/// device, the other one).
fn pagespy_broadcast(data: Value) -> String {
    json!({"type": "broadcast", "content": {"data": data, "includeSelf": false}}).to_string()
}

impl Peer {
    /// In a devices list, how many devices are present (not away); `None` for other frames.
    ///
    /// PageSpy sends changes, not lists: `join` and `leave` of one member. In the presence
    /// scenario's rooms (one PC, one device) a device's `join` means one device and its
    /// `leave` none, which is how they are read here.
    pub fn live_devices(self, text: &str) -> Option<usize> {
        let v: Value = match self {
            Peer::Tether | Peer::Seed | Peer::Pagespy => serde_json::from_str(text).ok()?,
            Peer::Socketio => serde_json::from_str(text.strip_prefix("42")?).ok()?,
        };
        if self == Peer::Pagespy {
            return match (v["type"].as_str()?, v["content"]["connection"]["name"].as_str()?) {
                ("join", "device") => Some(1),
                ("leave", "device") => Some(0),
                _ => None,
            };
        }
        let list = match self {
            Peer::Tether if v["type"] == "devices" => v["msg"]["members"].as_array()?,
            Peer::Seed if v["type"] == "devices" => v["msg"].as_array()?,
            Peer::Socketio if v[0] == "devices" => v[1].as_array()?,
            _ => return None,
        };
        Some(list.iter().filter(|m| m["role"] == "device" && m["away"] != true).count())
    }
}

/// The next text frame (control frames are answered by tungstenite as it reads).
pub async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        let msg = tokio::time::timeout(JOIN_WAIT, ws.next())
            .await
            .context("no frame in time")?
            .context("socket closed")??;
        match msg {
            Message::Text(t) => return Ok(t.to_string()),
            Message::Close(c) => bail!("closed: {c:?}"),
            _ => {}
        }
    }
}

/// A device: answers every request at once, until the socket ends.
pub async fn answer_forever(peer: Peer, mut ws: Ws) {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(t) = msg else { continue };
        let reply = match peer.classify(t.as_str()) {
            Frame::Request(reply) => reply,
            Frame::Ping => "3".to_owned(),
            _ => continue,
        };
        if ws.send(Message::text(reply)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_reads_its_own_requests_and_replies() {
        for peer in [Peer::Tether, Peer::Seed, Peer::Socketio, Peer::Pagespy] {
            let Frame::Request(reply) = peer.classify(&peer.post("17")) else {
                panic!("{peer:?}: a request")
            };
            assert_eq!(peer.classify(&reply), Frame::Reply("17".into()), "{peer:?}");
        }
        assert_eq!(Peer::Socketio.classify("2"), Frame::Ping);
        let away = r#"{"type":"devices","msg":{"members":[{"id":"p","role":"pc"},{"id":"d","role":"device","away":true}]}}"#;
        assert_eq!(Peer::Tether.live_devices(away), Some(0));
        assert_eq!(
            Peer::Seed.live_devices(r#"{"type":"devices","msg":[{"id":"0","role":"device"}]}"#),
            Some(1)
        );
        assert_eq!(Peer::Socketio.live_devices(r#"42["devices",[{"id":"x","role":"pc"}]]"#), Some(0));
        assert_eq!(Peer::Socketio.live_devices(r#"42["post",{}]"#), None);
        assert_eq!(Peer::Tether.classify(r#"{"type":"devices","msg":{}}"#), Frame::Other);
        // PageSpy, as its server sends them (trimmed).
        let leave = r#"{"type":"leave","createdAt":1,"requestId":"","content":{"connection":{"address":"e3.local","userId":"device","name":"device"}}}"#;
        assert_eq!(Peer::Pagespy.live_devices(leave), Some(0));
        assert_eq!(Peer::Pagespy.live_devices(&leave.replace("leave", "join")), Some(1));
        assert_eq!(Peer::Pagespy.live_devices(&leave.replace("device", "pc")), None);
        let relayed = r#"{"type":"broadcast","createdAt":0,"requestId":"","content":{"data":{"type":"postCb","id":"9"},"from":{"address":"e3.local"}}}"#;
        assert_eq!(Peer::Pagespy.classify(relayed), Frame::Reply("9".into()));
    }
}
