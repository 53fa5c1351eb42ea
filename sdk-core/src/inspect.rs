//! The inspector's decisions that need no browser (#18): how each captured event is numbered
//! and written. Time is passed in.
//!
//! So far the console event without its arguments (they come with the value walker and its
//! caps): `{"k":"console","at","n","level"}`.

use super::Millis;
use super::json::Json;

/// Numbers and writes the events of one inspector session: `n` counts from 1, so a gap in
/// what a PC receives shows events lost on the way.
#[derive(Debug, Default)]
pub struct Recorder {
    n: u64,
}

impl Recorder {
    /// A console call at `at` (ms since the epoch) of `level` (`log`, `warn`, …).
    pub fn console(&mut self, at: Millis, level: &str) -> String {
        self.n += 1;
        Json::obj([
            ("k", "console".into()),
            ("at", Json::uint(at)),
            ("n", Json::uint(self.n)),
            ("level", level.into()),
        ])
        .to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_events_are_numbered_from_one() {
        let mut r = Recorder::default();
        assert_eq!(
            r.console(1_700_000_000_123, "log"),
            r#"{"k":"console","at":1700000000123,"n":1,"level":"log"}"#
        );
        assert_eq!(
            r.console(1_700_000_000_124, "warn"),
            r#"{"k":"console","at":1700000000124,"n":2,"level":"warn"}"#
        );
    }

    #[test]
    fn the_level_is_written_as_a_json_string() {
        let mut r = Recorder::default();
        let text = r.console(0, "a\"b\\c");
        let back = Json::parse(&text).unwrap();
        assert_eq!(back["level"].as_str(), Some("a\"b\\c"));
    }
}
