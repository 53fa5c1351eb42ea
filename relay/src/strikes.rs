//! Wrong secrets per address: guessing is slowed down, more for each wrong guess.
//!
//! The first [`FREE`] failures from an address cost nothing (typos, a stale bookmark); after
//! that, each further attempt — right or wrong, so nothing can be learnt by trying — must
//! wait a delay that doubles per failure, from [`BASE`] up to [`MAX_DELAY`]. An address
//! with no failure for [`FORGET`] starts afresh. IPv6 addresses count by their /64, which is
//! what one host usually holds. Time is passed in, so it is tested without sleeping.
//!
//! Memory: at most [`MAX_ADDRESSES`] addresses are remembered (about 48 bytes each); at the
//! cap, forgotten ones go first, then the one with the fewest failures.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures that cost nothing.
pub const FREE: u32 = 5;
/// The wait after the first failure beyond [`FREE`].
pub const BASE: Duration = Duration::from_secs(1);
/// The longest wait.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// An address with no failure this long is forgotten.
pub const FORGET: Duration = Duration::from_secs(600);
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 16_384;

#[derive(Debug, Clone, Copy)]
struct Count {
    failures: u32,
    last: Instant,
}

/// The failures of every address, shared by the routes that check secrets.
#[derive(Default)]
pub struct Strikes {
    by_addr: Mutex<HashMap<IpAddr, Count>>,
}

/// The key an address counts under (an IPv6 host by its /64, a v4-mapped one as the v4).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut s = v6.segments();
                s[4..].fill(0);
                IpAddr::V6(s.into())
            }
        },
        v4 => v4,
    }
}

/// How long after the last failure an address with `failures` must wait.
pub fn delay(failures: u32) -> Duration {
    match failures.checked_sub(FREE + 1) {
        None => Duration::ZERO,
        Some(n) => BASE.saturating_mul(1 << n.min(16)).min(MAX_DELAY),
    }
}

impl Strikes {
    /// An empty record, shared.
    pub fn new() -> Arc<Strikes> {
        Arc::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Count>> {
        crate::util::lock(&self.by_addr)
    }

    /// `Err(wait)` when `ip` must wait before trying a secret again.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let Some(c) = self.lock().get(&address_key(ip)).copied() else { return Ok(()) };
        let until = c.last + delay(c.failures);
        if now < until { Err(until - now) } else { Ok(()) }
    }

    /// `ip` gave a wrong secret at `now`.
    pub fn fail(&self, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        let k = address_key(ip);
        if !map.contains_key(&k) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, c| now.saturating_duration_since(c.last) < FORGET);
            if map.len() >= MAX_ADDRESSES {
                if let Some(least) = map.iter().min_by_key(|(_, c)| (c.failures, c.last)).map(|(k, _)| *k) {
                    map.remove(&least);
                }
            }
        }
        let c = map.entry(k).or_insert(Count { failures: 0, last: now });
        if now.saturating_duration_since(c.last) >= FORGET {
            c.failures = 0;
        }
        c.failures = c.failures.saturating_add(1);
        c.last = now;
    }

    /// Takes back one failure of `ip` (an [`Attempt`] that proved right).
    pub fn forgive(&self, ip: IpAddr) {
        let mut map = self.lock();
        let k = address_key(ip);
        if let Some(c) = map.get_mut(&k) {
            c.failures = c.failures.saturating_sub(1);
            if c.failures == 0 {
                map.remove(&k);
            }
        }
    }

    /// Addresses remembered (for tests and `/metrics`).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One address's part in [`Strikes`], carried by a request that checks a secret.
#[derive(Clone)]
pub struct Strike {
    strikes: Arc<Strikes>,
    ip: IpAddr,
}

impl Strike {
    /// `ip`'s record in `strikes`.
    pub fn new(strikes: Arc<Strikes>, ip: IpAddr) -> Strike {
        Strike { strikes, ip }
    }

    /// `Err(wait)` when this address must wait before trying a secret.
    pub fn check(&self) -> Result<(), Duration> {
        self.strikes.check(self.ip, Instant::now())
    }

    /// The address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// This address gave a wrong secret.
    pub fn fail(&self) {
        self.strikes.fail(self.ip, Instant::now());
    }

    /// A secret about to be checked where the check awaits (the store, Redis): counted as a
    /// failure at once, before the wait, and taken back if it proves right. Otherwise an
    /// address could send its whole burst of guesses at once, each passing [`Strike::check`]
    /// before any had failed.
    pub fn attempt(self) -> Attempt {
        self.fail();
        Attempt { strike: self, settled: false }
    }
}

/// A secret being checked, already counted as a failure (see [`Strike::attempt`]): dropped
/// without [`Attempt::wrong`] (it proved right, or the check could not be made) it is taken
/// back.
pub struct Attempt {
    strike: Strike,
    settled: bool,
}

impl Attempt {
    /// It was wrong: the failure stays.
    pub fn wrong(mut self) {
        self.settled = true;
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            self.strike.strikes.forgive(self.strike.ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failures_are_free_then_each_doubles_the_wait_up_to_a_minute() {
        assert_eq!((0..=FREE).map(delay).collect::<Vec<_>>(), vec![Duration::ZERO; FREE as usize + 1]);
        assert_eq!(delay(FREE + 1), BASE);
        assert_eq!(delay(FREE + 2), Duration::from_secs(2));
        assert_eq!(delay(FREE + 40), MAX_DELAY);
        let s = Strikes::default();
        let (ip, other) = ("192.0.2.7".parse().unwrap(), "192.0.2.8".parse().unwrap());
        let t0 = Instant::now();
        for i in 0..FREE {
            assert_eq!(s.check(ip, t0), Ok(()), "failure {i} is free");
            s.fail(ip, t0);
        }
        assert_eq!(s.check(ip, t0), Ok(()));
        s.fail(ip, t0);
        // Now every attempt waits, the right secret too, and the wait grows per failure.
        assert_eq!(s.check(ip, t0), Err(Duration::from_secs(1)));
        assert_eq!(s.check(ip, t0 + Duration::from_millis(700)), Err(Duration::from_millis(300)));
        assert_eq!(s.check(ip, t0 + Duration::from_secs(1)), Ok(()));
        s.fail(ip, t0 + Duration::from_secs(1));
        assert_eq!(s.check(ip, t0 + Duration::from_secs(1)), Err(Duration::from_secs(2)));
        // Another address is not slowed.
        assert_eq!(s.check(other, t0), Ok(()));
        // Quiet for FORGET: starts afresh.
        let later = t0 + Duration::from_secs(1) + FORGET;
        s.fail(ip, later);
        assert_eq!(s.check(ip, later), Ok(()));
    }

    #[test]
    fn an_attempt_counts_at_once_and_is_taken_back_unless_wrong() {
        let s = Strikes::new();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        // A burst of guesses in flight together: each counts before the next is checked, so
        // past the free ones the next must wait even though none has been answered yet.
        let mut flying = Vec::new();
        for _ in 0..=FREE {
            assert!(Strike::new(s.clone(), ip).check().is_ok());
            flying.push(Strike::new(s.clone(), ip).attempt());
        }
        assert!(Strike::new(s.clone(), ip).check().is_err(), "the next guess waits");
        // They prove right: every one is taken back, nothing remembered.
        drop(flying);
        assert!(s.is_empty());
        // A wrong one stays.
        Strike::new(s.clone(), ip).attempt().wrong();
        assert_eq!(s.lock()[&ip].failures, 1);
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_and_a_mapped_v4_as_itself() {
        let s = Strikes::default();
        let t0 = Instant::now();
        for i in 0..=FREE {
            s.fail(format!("2001:db8:1:2::{i:x}").parse().unwrap(), t0);
        }
        assert!(s.check("2001:db8:1:2:ffff::1".parse().unwrap(), t0).is_err(), "same /64");
        assert!(s.check("2001:db8:1:3::1".parse().unwrap(), t0).is_ok(), "another /64");
        for _ in 0..=FREE {
            s.fail("::ffff:192.0.2.1".parse().unwrap(), t0);
        }
        assert!(s.check("192.0.2.1".parse().unwrap(), t0).is_err());
    }

    #[test]
    fn the_record_is_bounded_and_keeps_the_worst_offenders() {
        let s = Strikes::default();
        let t0 = Instant::now();
        let worst: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..=FREE + 3 {
            s.fail(worst, t0);
        }
        for i in 0..MAX_ADDRESSES as u32 + 10 {
            s.fail(IpAddr::V4((0x0a00_0000 + i).into()), t0);
        }
        assert_eq!(s.len(), MAX_ADDRESSES);
        assert!(s.check(worst, t0).is_err(), "the address with most failures is kept");
    }
}
