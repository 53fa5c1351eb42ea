//! The legacy CS gateway.

pub mod xmlrpc;
