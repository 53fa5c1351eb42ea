//! Stand-ins for the legacy world Tether fronts without changing it.
//!
//! # Layout
//! - [`cs`]: an XML-RPC server over HTTP/1.1 keep-alive that, like the legacy CS service of
//!   seed 000, binds a user to the TCP connection that called `login`.
//! - `bin/tether-legacy-cs`: runs it.

pub mod cs;
