//! CPU time of a process, from `/proc/PID/stat` (user + system, every thread).

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc` times: USER_HZ, 100 on Linux x86_64 and arm64.
const TICKS_PER_S: f64 = 100.0;

/// A reading of a process's CPU time.
#[derive(Debug, Clone, Copy)]
pub struct Cpu {
    ticks: u64,
}

impl Cpu {
    /// Reads `pid`'s CPU time so far.
    pub fn of_pid(pid: u32) -> Result<Cpu> {
        Cpu::read(&format!("/proc/{pid}/stat"))
    }

    /// Reads this process's CPU time so far.
    pub fn of_self() -> Result<Cpu> {
        Cpu::read("/proc/self/stat")
    }

    fn read(path: &str) -> Result<Cpu> {
        Cpu::parse(&std::fs::read_to_string(path).with_context(|| format!("read {path}"))?)
    }

    fn parse(stat: &str) -> Result<Cpu> {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).context("utime")?;
        let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).context("stime")?;
        Ok(Cpu { ticks: utime + stime })
    }

    /// CPU seconds from `before` to this reading.
    pub fn seconds_since(&self, before: &Cpu) -> f64 {
        self.ticks.saturating_sub(before.ticks) as f64 / TICKS_PER_S
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_past_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (tether (relay) x) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 130 0 0 20 0 3 0 55 0 0";
        let before = Cpu::parse(stat).unwrap();
        let later = Cpu::parse(&stat.replace(" 250 130 ", " 300 180 ")).unwrap();
        assert_eq!(later.seconds_since(&before), 1.0);
        assert_eq!(before.ticks, 380);
        assert!(Cpu::parse("4242 (x) S 1 2").is_err());
    }
}
