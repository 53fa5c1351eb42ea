//! Stand-ins for the legacy world Tether fronts without changing it.
//!
//! # Layout
//! - [`cs`]: an XML-RPC server over HTTP/1.1 keep-alive that, like the legacy CS service of
//!   seed 000, binds a user to the TCP connection that called `login`.
//! - [`alarm`]: a UDP alarm service that registers subscribers and sends them numbered alarms.
//! - `bin/tether-legacy-cs`, `bin/tether-legacy-alarm`: run them.

pub mod alarm;
pub mod cs;
