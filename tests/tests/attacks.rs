//! The attacks of issue #17 ("bounded"), each run against a real relay process started with
//! its default budgets: each test drives the attack past the cap it meets, checks the refusal
//! and that nothing else was lost, and prints what the attack reached (memory, disk, sockets)
//! as a line starting `attack:`, the figure docs/reliability.md ("Budgets") quotes.
//!
//! `TETHER_RELAY_BIN=<an older tether-relay> cargo test -p tether-tests --test attacks -- --nocapture`
//! measures an older relay the same way (its assertions then fail, after the figures print).
