//! Sizes and timings both ends agree on. The relay's flags override the defaults.

/// Default `--max-frame`: the largest frame the relay accepts, in bytes.
pub const DEFAULT_MAX_FRAME: usize = 1024 * 1024;
/// A frame up to this many times `--max-frame` is answered with `too_large` and the socket
/// stays open; a larger one cannot be skipped safely, so the socket is closed (4413).
pub const OVERSIZE_TOLERANCE: usize = 4;
/// Default `--heartbeat-ms`: the relay's ping interval.
pub const DEFAULT_HEARTBEAT_MS: u64 = 2000;
/// A member that has answered nothing for this many intervals is marked away.
pub const MISSED_HEARTBEATS: u64 = 2;
/// Default `--grace-ms`: how long an away member keeps its id and its buffered frames.
pub const DEFAULT_GRACE_MS: u64 = 30_000;
/// How long the relay remembers a request when it does not say (`timeoutMs`).
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 60_000;
/// The longest `timeoutMs` honoured.
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 10 * 60_000;
/// Longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 128;
/// Longest secret, in bytes.
pub const MAX_SECRET_LEN: usize = 256;
/// Longest member name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Largest `hello.appInfo`, serialized, in bytes: it is copied into every `devices` push.
pub const MAX_APP_INFO: usize = 16 * 1024;
/// Longest request id, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Default `--inspect-rate`: bytes of `inspect` frames per second one device may send
/// (sustained; told to each device in `welcome.inspectRate`, the SDK is to pace itself below
/// it). Over it, frames are dropped.
pub const DEFAULT_INSPECT_RATE: u32 = 512 * 1024;
/// Longest `eval.code`, in bytes.
pub const MAX_EVAL_CODE: usize = 64 * 1024;

/// Whether a room name is acceptable: 1..=128 bytes, no control characters, no `/`.
pub fn valid_room(room: &str) -> bool {
    !room.is_empty() && room.len() <= MAX_ROOM_LEN && !room.chars().any(|c| c.is_control() || c == '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(valid_room("demo"));
        assert!(valid_room("新闻-调试 1"));
        assert!(!valid_room(""));
        assert!(!valid_room("a/b"));
        assert!(!valid_room("a\nb"));
        assert!(!valid_room(&"x".repeat(MAX_ROOM_LEN + 1)));
    }
}
