//! The one place Tether's wire is defined.
//!
//! Both the relay and the SDK speak in **envelopes**: one JSON text frame per message,
//! `{"type", "id"?, "to"?, "from"?, "msg"?}`. This crate names every message kind, the
//! typed body (`msg`) of each, the error codes, and the limits, so that the two ends can
//! never disagree on a spelling. It has no I/O and no async: it builds for the relay and
//! for `wasm32-unknown-unknown` alike.
//!
//! The full protocol, with examples, is in `docs/protocol.md`.
//!
//! # Layout
//! - [`envelope`]: the frame around every message, parsed without copying `msg`.
//! - [`kind`]: the message kinds ([`Kind`]) and member roles ([`Role`]).
//! - [`msg`]: the typed bodies: [`msg::Welcome`], [`msg::Hello`], [`msg::Devices`],
//!   [`msg::Post`], [`msg::PostCb`], [`msg::Call`], [`msg::CallCb`], [`msg::ErrorMsg`]; for
//!   inspecting the page [`msg::Inspection`] (`hello.inspect`), [`msg::Inspect`],
//!   [`msg::Storage`], [`msg::StorageCb`], [`msg::Eval`], [`msg::EvalCb`]; and the alarm
//!   stream's [`msg::Alarm`], [`msg::AlarmGap`], [`msg::AlarmSource`].
//! - [`error`]: [`ErrorCode`], the codes an `error` frame carries, and the WebSocket close
//!   codes the relay uses when it ends a connection.
//! - [`limits`]: sizes and timings both ends agree on.
//! - [`names`]: which names may be a native bridge's global or a `call`'s JS-API (the relay
//!   checks its `--bridge-names`, the SDK every `call` and its `bridge` option).

pub mod envelope;
pub mod error;
pub mod kind;
pub mod limits;
pub mod msg;
pub mod names;

pub use envelope::{Envelope, OutEnvelope};
pub use error::{CloseCode, ErrorCode};
pub use kind::{Kind, Role};
