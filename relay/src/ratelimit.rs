//! Token buckets, with time passed in so they are tested without sleeping: per connection,
//! [`TokenBucket`] counts frames (every frame), [`ByteBucket`] bytes (a device's `inspect`
//! frames, `--inspect-rate`); per client address, [`PerAddress`] counts HTTP API requests,
//! which have no connection of their own to count against.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What to do with one incoming frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Allow,
    /// Refuse it with `rate_limited`; the connection stays open.
    Limit,
    /// The sender kept flooding after being told: close the connection.
    Flood,
}

/// `rate` frames per second sustained, `burst` above that; a sender that has more than
/// `burst` frames refused within one [`FLOOD_WINDOW`] is flooding.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    window_start: Instant,
    refused_in_window: u32,
}

/// The window over which refused frames are counted toward a flood.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
            window_start: now,
            refused_in_window: 0,
        }
    }

    /// Takes one token for a frame arriving at `now`.
    pub fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        if now.saturating_duration_since(self.window_start) >= FLOOD_WINDOW {
            self.window_start = now;
            self.refused_in_window = 0;
        }
        self.refused_in_window += 1;
        if f64::from(self.refused_in_window) > self.burst { Verdict::Flood } else { Verdict::Limit }
    }
}

/// Addresses [`PerAddress`] remembers at most (about 80 bytes each).
pub const MAX_ADDRESSES: usize = 16_384;

/// A [`TokenBucket`] per client address (an IPv6 host by its /64), for requests that come
/// without a long-lived connection to count against: each HTTP API request joins a room and
/// leaves it, so `--rate-limit`/`--rate-burst` apply to the address instead. A flood cannot
/// close anything here: [`Verdict::Flood`] is refused like [`Verdict::Limit`].
///
/// Memory: at most [`MAX_ADDRESSES`] buckets; at the cap, buckets that have refilled (the same
/// as none) go first, then the least recently used.
pub struct PerAddress {
    rate: u32,
    burst: u32,
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl PerAddress {
    /// `rate` requests per second per address, `burst` above that.
    pub fn new(rate: u32, burst: u32) -> PerAddress {
        PerAddress { rate, burst, buckets: Mutex::default() }
    }

    /// Takes one token for a request from `ip` at `now`.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Verdict {
        let key = crate::strikes::address_key(ip);
        let mut map = crate::util::lock(&self.buckets);
        if !map.contains_key(&key) && map.len() >= MAX_ADDRESSES {
            let refill = Duration::from_secs_f64(f64::from(self.burst.max(1)) / f64::from(self.rate.max(1)));
            map.retain(|_, b| now.saturating_duration_since(b.last) < refill);
            if map.len() >= MAX_ADDRESSES {
                if let Some(oldest) = map.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.entry(key).or_insert_with(|| TokenBucket::new(self.rate, self.burst, now)).take(now)
    }

    /// Addresses remembered.
    pub fn len(&self) -> usize {
        crate::util::lock(&self.buckets).len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What to do with one `inspect` frame, by its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteVerdict {
    /// Deliver it.
    Pass,
    /// Drop it; `tell`: say `rate_limited` to the sender (at most once per [`TELL_EVERY`]).
    Drop {
        /// Whether to tell the sender this time.
        tell: bool,
    },
}

/// The least time between two `rate_limited` said to a device over its byte rate: it is told
/// that frames are being dropped, not once per frame.
pub const TELL_EVERY: Duration = Duration::from_secs(1);

/// `rate` bytes per second sustained, holding at most one second's worth. A frame passes
/// while the bucket is not in debt, and its bytes are then taken, into debt if it is larger
/// than what is left: so a frame larger than a second's worth still goes, once, and the
/// sender waits for the debt to clear. Over any span `t`, a sender gets at most
/// `rate × (1 + t)` bytes plus one frame through. A frame that does not pass costs nothing.
#[derive(Debug)]
pub struct ByteBucket {
    rate: f64,
    tokens: f64,
    last: Instant,
    told: Option<Instant>,
}

impl ByteBucket {
    /// A full bucket of `rate` bytes per second (at least 1).
    pub fn new(rate: u32, now: Instant) -> Self {
        let rate = f64::from(rate.max(1));
        ByteBucket { rate, tokens: rate, last: now, told: None }
    }

    /// Takes `bytes` for a frame arriving at `now`.
    pub fn take(&mut self, bytes: usize, now: Instant) -> ByteVerdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        if self.tokens > 0.0 {
            self.tokens -= bytes as f64;
            return ByteVerdict::Pass;
        }
        let tell = self.told.is_none_or(|t| now.saturating_duration_since(t) >= TELL_EVERY);
        if tell {
            self.told = Some(now);
        }
        ByteVerdict::Drop { tell }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_over_the_rate_are_dropped_the_sender_told_once_a_second_and_the_rate_holds_over_time() {
        let t0 = Instant::now();
        let mut b = ByteBucket::new(1000, t0);
        // A second's worth passes at once; the frame that overdraws it too (once).
        assert_eq!(b.take(600, t0), ByteVerdict::Pass);
        assert_eq!(b.take(600, t0), ByteVerdict::Pass, "400 were left: it goes, into debt");
        assert_eq!(b.take(1, t0), ByteVerdict::Drop { tell: true });
        assert_eq!(
            b.take(1, t0 + Duration::from_millis(100)),
            ByteVerdict::Drop { tell: false },
            "debt of 200"
        );
        let t1 = t0 + Duration::from_millis(999);
        assert_eq!(b.take(2000, t1), ByteVerdict::Pass, "the debt cleared at 200 ms");
        // Told again only a second after the last time.
        assert_eq!(b.take(1, t1), ByteVerdict::Drop { tell: false });
        assert_eq!(b.take(1, t0 + Duration::from_millis(1000)), ByteVerdict::Drop { tell: true });
        // Over 60 simulated seconds of a sender trying 10 KB every 10 ms (1 MB/s), what passes
        // is the rate, plus the first second's worth and one frame.
        let mut b = ByteBucket::new(100_000, t0);
        let mut passed = 0;
        let mut told = 0;
        for i in 0..6000u64 {
            match b.take(10_000, t0 + Duration::from_millis(10 * i)) {
                ByteVerdict::Pass => passed += 10_000,
                ByteVerdict::Drop { tell } => told += u32::from(tell),
            }
        }
        assert!(passed <= 100_000 * 60 + 100_000 + 10_000, "{passed}");
        assert!(passed >= 100_000 * 59, "{passed}");
        assert!((58..=60).contains(&told), "about once a second: {told}");
        // A sender within the rate never loses a frame.
        let mut b = ByteBucket::new(100_000, t0);
        for i in 0..6000u64 {
            assert_eq!(b.take(900, t0 + Duration::from_millis(10 * i)), ByteVerdict::Pass, "frame {i}");
        }
    }

    #[test]
    fn each_address_has_its_own_bucket_and_the_record_is_bounded() {
        let t0 = Instant::now();
        let p = PerAddress::new(10, 2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap());
        assert_eq!([p.take(a, t0), p.take(a, t0)], [Verdict::Allow; 2]);
        assert_eq!(p.take(a, t0), Verdict::Limit, "past its burst");
        assert_eq!(p.take(b, t0), Verdict::Allow, "another address is not slowed");
        assert_eq!(p.take("2001:db8::2".parse().unwrap(), t0), Verdict::Allow, "the same /64");
        assert_eq!(
            p.take("2001:db8::3".parse().unwrap(), t0),
            Verdict::Limit,
            "the same /64's burst is spent"
        );
        assert_eq!(p.take(a, t0 + Duration::from_millis(100)), Verdict::Allow, "a token back at 10/s");
        for i in 0..MAX_ADDRESSES as u32 + 10 {
            p.take(IpAddr::V4((0x0a00_0000 + i).into()), t0 + Duration::from_millis(200));
        }
        assert_eq!(p.len(), MAX_ADDRESSES);
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 5, t0);
        for _ in 0..5 {
            assert_eq!(b.take(t0), Verdict::Allow);
        }
        assert_eq!(b.take(t0), Verdict::Limit);
        // 100 ms later one token is back at 10/s.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(b.take(t1), Verdict::Allow);
        assert_eq!(b.take(t1), Verdict::Limit);
    }

    #[test]
    fn a_sender_within_the_rate_is_never_limited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 1, t0);
        for i in 1..=10_000u64 {
            assert_eq!(b.take(t0 + Duration::from_millis(10 * i)), Verdict::Allow, "frame {i}");
        }
    }

    #[test]
    fn a_sustained_flood_is_told_apart_from_a_spike() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        // A spike: 40 frames at once: 20 pass, 20 are refused, no flood.
        let verdicts: Vec<_> = (0..40).map(|_| b.take(t0)).collect();
        assert_eq!(verdicts.iter().filter(|v| **v == Verdict::Allow).count(), 20);
        assert!(!verdicts.contains(&Verdict::Flood));
        // Keep going without pause: the 21st refusal in the window is a flood.
        assert_eq!(b.take(t0), Verdict::Flood);
        // After a quiet window the sender starts over.
        let later = t0 + FLOOD_WINDOW + Duration::from_secs(5);
        assert_eq!(b.take(later), Verdict::Allow);
    }
}
