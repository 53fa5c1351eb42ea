//! A per-connection token bucket, with time passed in so it is tested without sleeping.

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

#[cfg(test)]
mod tests {
    use super::*;

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
