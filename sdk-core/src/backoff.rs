//! Retry delays: exponential with "equal jitter", from a small seeded generator so tests are
//! deterministic and the web layer can seed it from `Math.random()`.

use super::Millis;

/// How reconnecting is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retries after a lost connection before giving up (`unlink`). The seed used 3.
    pub retries: u32,
    /// The first retry's delay before jitter.
    pub base_ms: Millis,
    /// No delay is longer than this.
    pub max_ms: Millis,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { retries: 3, base_ms: 500, max_ms: 8_000 }
    }
}

/// Delays for successive retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Policy,
    state: u64,
}

impl Backoff {
    /// `seed` picks the jitter sequence (any value; zero is replaced).
    pub fn new(policy: Policy, seed: u64) -> Self {
        Backoff { policy, state: seed.max(1) }
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: tiny and good enough for jitter.
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The delay before retry number `attempt` (1 for the first): half of
    /// `min(max, base × 2^(attempt-1))` fixed, the other half random, so many clients that
    /// lost the same relay do not all come back in the same millisecond.
    pub fn delay(&mut self, attempt: u32) -> Millis {
        let exp = attempt.saturating_sub(1).min(20);
        let full = self.policy.base_ms.saturating_mul(1 << exp).min(self.policy.max_ms);
        let half = full / 2;
        half + if half == 0 { 0 } else { self.next_random() % (full - half + 1) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_jittered_within_bounds() {
        let mut b = Backoff::new(Policy { retries: 5, base_ms: 100, max_ms: 1000 }, 42);
        for _ in 0..200 {
            for (attempt, full) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (9, 1000)] {
                let d = b.delay(attempt);
                assert!((full / 2..=full).contains(&d), "attempt {attempt}: {d}");
            }
        }
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        let p = Policy { retries: 3, base_ms: 1000, max_ms: 8000 };
        let delays: std::collections::BTreeSet<_> =
            (1..50u64).map(|seed| Backoff::new(p, seed).delay(1)).collect();
        assert!(delays.len() > 40, "{} distinct delays from 49 seeds", delays.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let p = Policy::default();
        let a: Vec<_> = {
            let mut b = Backoff::new(p, 7);
            (1..=3).map(|i| b.delay(i)).collect()
        };
        let b: Vec<_> = {
            let mut b = Backoff::new(p, 7);
            (1..=3).map(|i| b.delay(i)).collect()
        };
        assert_eq!(a, b);
    }
}
