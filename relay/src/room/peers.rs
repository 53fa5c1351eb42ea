//! The seam to other nodes: what a room needs from them ([`Peers`]), and the types that cross
//! nodes. The room side defines it; cluster mode (`cluster.rs`, over Redis) implements it, so
//! nothing here knows about Redis. A node alone has no peers and never calls it.

use serde::{Deserialize, Serialize};
use tether_protocol::msg::MemberInfo;

/// Other nodes holding members of the same rooms. Every method enqueues and returns at once
/// (it is called under a room's lock); `false` means it cannot go now and the sender is told.
pub trait Peers: Send + Sync {
    /// This node's name.
    fn node(&self) -> &str;

    /// Whether the bus between nodes works now.
    fn is_up(&self) -> bool;

    /// Sends `frame` to member `to` of `room`, held by `node`.
    fn send_frame(&self, node: &str, room: &str, to: &str, frame: &str) -> bool;

    /// Sends `frame`, which may be dropped (an `inspect` batch), to member `to` of `room`, held
    /// by `node`: only while the bus has room to spare (`false`: dropped), and the node that
    /// holds `to` drops it too rather than slow anyone down.
    fn send_droppable(&self, node: &str, room: &str, to: &str, frame: &str) -> bool;

    /// Sends a request to the node that holds its device, which keeps the pending entry and
    /// routes the reply back.
    fn send_request(&self, node: &str, req: RemoteRequest) -> bool;

    /// This node's member `id` of `room` changed: its `devices` entry, when it attached (ms since
    /// the epoch) and the nonces of the resume tokens it may use; `None`: it is gone.
    fn member_changed(&self, room: &str, id: &str, info: Option<(MemberInfo, u64, Vec<u64>)>);

    /// This node's member leaves with the node (it is stopping): gone from every list, and
    /// resumable on another node for a grace window.
    fn member_departed(&self, room: &str, id: &str);
}

/// A member as the cluster sees it: its `devices` entry and the node that holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RemoteMember {
    /// What `devices` shows.
    #[serde(flatten)]
    pub info: MemberInfo,
    /// The node it is connected to.
    pub node: String,
    /// When it attached there (ms since the epoch).
    #[serde(default)]
    pub attached: u64,
    /// The nonces of the resume tokens it may use (see `room::member::Member`): another node
    /// resumes it only with one of these. Empty from relays that did not say (any valid token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nonces: Vec<u64>,
}

/// A request crossing nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRequest {
    /// Room.
    pub room: String,
    /// The PC member that asked.
    pub pc: String,
    /// The node that holds the PC.
    pub pc_node: String,
    /// The id the PC gave.
    pub pc_id: String,
    /// The device to run it.
    pub device: String,
    /// The id the device sees.
    pub wire_id: String,
    /// `post` or `call`.
    pub kind: tether_protocol::Kind,
    /// The URL or method (for history).
    pub target: String,
    /// The `to` of the original frame, if any.
    pub to: Option<String>,
    /// The request body, raw JSON.
    pub request: String,
    /// When it was sent, ms since the epoch.
    pub sent_at: u64,
    /// How long the PC waits.
    pub timeout_ms: u64,
    /// The history tag of the PC's secret: the device's node may know the room only by its
    /// device key, yet stores the pair under the PC's tag.
    #[serde(default)]
    pub tag: String,
}
