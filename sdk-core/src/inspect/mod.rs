//! The inspector's decisions that need no browser (#18): how a page's values are written and
//! cut, the events' shapes, and the order an event goes through before it leaves the
//! inspector. Time is passed in; the second wasm module (`sdk-inspect`) asks the page and
//! obeys these.
//!
//! # Layout
//! - [`value`]: what the walker knows of a page's value ([`Kind`], a string's [`Text`]).
//! - [`writer`]: the [`Writer`] (an event's JSON text within the caps below; the Value tags).
//! - [`event`]: each event kind's fields; the console levels; the caller's stack.
//! - [`capture`]: what each hook reports (a console call, an error, the page) as an event.
//! - [`walk`]: the value walker, over the questions it asks the page ([`walk::Page`]).
//! - [`net`]: the page's own network (fetch, XHR, beacons, WebSockets, EventSources) as
//!   `network` events: which bodies are read and how far, masks, the SDK's own traffic.
//! - [`redact`]: the [`Recorder`] (numbering and the redaction order), built-in masks, the
//!   SDK's own URLs.
//! - [`storage`]: the SDK's own keys, the page's own storage writes as events, the caps of what
//!   a PC reads and writes there.
//! - [`command`]: the replies to a PC's `eval` that carry a value of the page.

pub mod capture;
pub mod command;
pub mod event;
pub mod net;
pub mod redact;
pub mod storage;
pub mod value;
pub mod walk;
pub mod writer;

#[cfg(test)]
mod model;

pub use redact::{Filtered, Masks, Own, Recorder};
pub use writer::{Draft, Kind, Text, Writer};

/// Levels of arrays and objects walked inside a value; deeper ones are counted, not walked.
pub const DEPTH: usize = 4;
/// Keys written per object; the rest are counted (`"$more": n`).
pub const KEYS: usize = 50;
/// Items written per array (and console arguments per call); the rest are counted.
pub const ITEMS: usize = 100;
/// A string's cap: JS cuts it to this many UTF-16 units before copying it, the Writer to this
/// many UTF-8 bytes on a char boundary.
pub const STRING: usize = 8_192;
/// An object key's cap: like [`STRING`], in UTF-16 units read and UTF-8 bytes written. Keys
/// are read before their object is written, so this bounds what a walk holds at once.
pub const KEY: usize = 256;
/// An event's cap in bytes of JSON text, all of it (the base's ring and batches rely on it).
pub const EVENT: usize = 32_768;
