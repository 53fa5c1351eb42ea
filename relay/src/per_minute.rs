//! A count per address: at most `per_minute` in any window of a minute that starts with an
//! address's first one. Used for rooms made (`--max-new-rooms-per-ip`: joining a room that
//! exists costs nothing, only making one does) and CS logins (`--cs-logins-per-ip`). IPv6
//! addresses count by their /64 ([`crate::strikes::address_key`]). Time is passed in, so it is
//! tested without sleeping.
//!
//! Memory: at most [`MAX_ADDRESSES`] windows (about 40 bytes each); at the cap, windows that
//! have ended go first, then the oldest.

use crate::util::lock;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window the cap counts over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 16_384;

/// The per-address count.
pub struct PerMinute {
    per_minute: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl PerMinute {
    /// At most `per_minute` per address per minute (0: no cap).
    pub fn new(per_minute: u32) -> PerMinute {
        PerMinute { per_minute, windows: Mutex::default() }
    }

    /// Counts one for `ip` at `now`; `Err(wait)` when its minute's are used up (nothing is
    /// counted then).
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let ip = crate::strikes::address_key(ip);
        let mut windows = lock(&self.windows);
        if !windows.contains_key(&ip) && windows.len() >= MAX_ADDRESSES {
            windows.retain(|_, (start, _)| now.saturating_duration_since(*start) < WINDOW);
            if windows.len() >= MAX_ADDRESSES {
                if let Some(oldest) = windows.iter().min_by_key(|(_, (start, _))| *start).map(|(k, _)| *k) {
                    windows.remove(&oldest);
                }
            }
        }
        let (start, n) = windows.entry(ip).or_insert((now, 0));
        if now.saturating_duration_since(*start) >= WINDOW {
            (*start, *n) = (now, 0);
        }
        if *n >= self.per_minute {
            return Err((*start + WINDOW).saturating_duration_since(now));
        }
        *n += 1;
        Ok(())
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        lock(&self.windows).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_makes_its_minutes_rooms_then_waits_and_others_are_not_slowed() {
        let c = PerMinute::new(3);
        let (ip, other): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(c.take(ip, t0), Ok(()));
        }
        assert_eq!(c.take(ip, t0 + Duration::from_secs(20)), Err(Duration::from_secs(40)));
        assert_eq!(c.take(other, t0), Ok(()), "another address has its own minute");
        assert_eq!(c.take(ip, t0 + WINDOW), Ok(()), "a new minute");
        assert_eq!(PerMinute::new(0).take(ip, t0), Ok(()), "0: no cap");
    }

    #[test]
    fn the_record_is_bounded() {
        let c = PerMinute::new(1);
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 + 10 {
            assert!(c.take(IpAddr::V4(i.into()), t0 + Duration::from_millis(u64::from(i))).is_ok());
        }
        assert_eq!(c.len(), MAX_ADDRESSES);
    }
}
