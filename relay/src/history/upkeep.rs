//! Retention: what keeps the history store within its budget (`--history-max-bytes`,
//! `--history-max-age`), shared by both backends.
//!
//! Who pays: every stored pair belongs to its room; the store as a whole has a byte cap and an
//! age. Past either, the oldest pairs go first. Rows of rooms with no history left, not open
//! and not opened for the max age, go too. The work is done by the writer itself (the SQLite
//! thread, the PostgreSQL task), in steps of at most [`STEP_ROWS`] rows between commit
//! groups, so a reply never waits behind more than one step.
//!
//! A round of upkeep is started every [`UPKEEP_EVERY`] by [`run`] (an [`Op::Upkeep`] carrying
//! the time, so tests pass their own clock); the byte cap is also checked after commits.

use super::{Op, Store, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::oneshot;

/// Most rows one step deletes (history rows or room rows).
pub(crate) const STEP_ROWS: usize = 500;
/// Most bytes one step of the byte cap deletes (by the average row): 64 rows of 256 KiB.
pub(crate) const STEP_BYTES: u64 = 16 * 1024 * 1024;
/// Over the byte cap, the oldest rows go until the store is down to this share of it
/// (per mille): some room before the next round, so a store at its cap does not prune on every
/// commit.
pub(crate) const SHRINK_TO_PERMILLE: u64 = 900;
/// How often a round starts.
pub const UPKEEP_EVERY: Duration = Duration::from_secs(1);
/// With `--history-max-age 0` (no age), rooms with no history are still forgotten after this.
pub(crate) const ROOM_AGE_WITHOUT_MAX_AGE_MS: u64 = 7 * 24 * 3600 * 1000;

/// The store's budget, from the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// `--history-max-bytes`: the store's size cap (0: none).
    pub max_bytes: u64,
    /// `--history-max-age`, ms (0: none).
    pub max_age_ms: u64,
    /// `--history-max-record`: a pair's bodies beyond this are cut (0: never).
    pub max_record: usize,
}

impl Budget {
    /// No cap of any kind (tests and embedding).
    pub const UNLIMITED: Budget = Budget { max_bytes: 0, max_age_ms: 0, max_record: 0 };

    /// Where a store over its cap is brought down to.
    pub(crate) fn shrink_target(&self) -> u64 {
        self.max_bytes / 1000 * SHRINK_TO_PERMILLE
    }

    /// Rows replied before this go (`None`: no age).
    pub(crate) fn history_cutoff(&self, now_ms: u64) -> Option<i64> {
        (self.max_age_ms > 0).then(|| now_ms.saturating_sub(self.max_age_ms) as i64)
    }

    /// Rooms with no history, not open and not opened since this, are forgotten.
    pub(crate) fn room_cutoff(&self, now_ms: u64) -> i64 {
        let age = if self.max_age_ms > 0 { self.max_age_ms } else { ROOM_AGE_WITHOUT_MAX_AGE_MS };
        now_ms.saturating_sub(age) as i64
    }
}

/// What the store reports on `/metrics`; no figure names a room.
#[derive(Debug, Default)]
pub struct Counters {
    /// The store's size in bytes (gauge): SQLite, the database file's pages (free ones
    /// included; the WAL not); PostgreSQL, `pg_total_relation_size('history')`.
    pub db_bytes: AtomicU64,
    /// History rows deleted for their age.
    pub pruned_age: AtomicU64,
    /// History rows deleted to keep under the byte cap.
    pub pruned_bytes: AtomicU64,
    /// Room rows forgotten (no history left, not open, not opened for the max age).
    pub rooms_pruned: AtomicU64,
    /// Records stored with their bodies cut to `--history-max-record`.
    pub cut: AtomicU64,
    /// Bytes of records waiting for the writer (gauge), at most 64 MiB.
    pub queued_bytes: AtomicU64,
    /// History records committed.
    pub written: AtomicU64,
    /// History records whose transaction failed.
    pub failed: AtomicU64,
    /// History records the reply log could not take (a failed write): their replies waited
    /// for the commit instead.
    pub log_failed: AtomicU64,
}

/// Whether a room is open on this relay: its row is never forgotten then (the upper layer,
/// the rooms, answers).
pub trait OpenRooms: Send + Sync {
    /// Whether `room` has members here (away ones included).
    fn is_open(&self, room: &str) -> bool;
}

/// What a round of upkeep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Upkept {
    /// History rows deleted for their age.
    pub by_age: u64,
    /// History rows deleted for the byte cap.
    pub by_bytes: u64,
    /// Room rows forgotten.
    pub rooms: u64,
    /// Steps taken (each bounded by [`STEP_ROWS`]).
    pub steps: u64,
}

/// A request for a round of upkeep as of `now_ms`.
pub(crate) struct Round {
    pub(crate) now_ms: u64,
    pub(crate) open: Arc<dyn OpenRooms>,
    pub(crate) done: oneshot::Sender<Upkept>,
}

/// A round under way: what is left to do, and who waits for it.
pub(crate) struct Plan {
    pub(crate) now_ms: u64,
    pub(crate) open: Arc<dyn OpenRooms>,
    /// PostgreSQL: the sizes were read this round.
    pub(crate) measured: bool,
    pub(crate) age_done: bool,
    pub(crate) rooms_done: bool,
    pub(crate) tally: Upkept,
    waiting: Vec<oneshot::Sender<Upkept>>,
}

impl Plan {
    /// Adds `round` to the plan under way (its later clock wins), or starts one.
    pub(crate) fn join(plan: &mut Option<Plan>, round: Round) {
        match plan {
            Some(p) => {
                p.now_ms = p.now_ms.max(round.now_ms);
                p.open = round.open;
                p.measured = false;
                p.age_done = false;
                p.rooms_done = false;
                p.waiting.push(round.done);
            }
            None => {
                *plan = Some(Plan {
                    now_ms: round.now_ms,
                    open: round.open,
                    measured: false,
                    age_done: false,
                    rooms_done: false,
                    tally: Upkept::default(),
                    waiting: vec![round.done],
                })
            }
        }
    }

    /// Tells everyone waiting what the round did.
    pub(crate) fn finish(self) {
        for w in self.waiting {
            let _ = w.send(self.tally);
        }
    }
}

/// Takes the upkeep requests out of a batch of ops (they write nothing) into `plan`.
pub(crate) fn take_rounds(batch: &mut Vec<Op>, plan: &mut Option<Plan>) {
    if !batch.iter().any(|op| matches!(op, Op::Upkeep(_))) {
        return;
    }
    let mut rest = Vec::with_capacity(batch.len());
    for op in batch.drain(..) {
        match op {
            Op::Upkeep(r) => Plan::join(plan, *r),
            op => rest.push(op),
        }
    }
    *batch = rest;
}

/// The rows to delete for their age, from the oldest rows `(id, replied_at)` in id order: the
/// run of them replied before `cutoff`, as the last such id and how many. Ids follow the
/// order replies were queued in, so the oldest pairs are a prefix.
pub(crate) fn expired_prefix(oldest: &[(i64, i64)], cutoff: i64) -> Option<(i64, u64)> {
    let n = oldest.iter().take_while(|(_, at)| *at < cutoff).count();
    (n > 0).then(|| (oldest[n - 1].0, n as u64))
}

/// How many of the oldest rows one step deletes to bring `used` bytes down to `target`, given
/// `rows` rows in the store (each taken as the average size).
pub(crate) fn rows_to_shrink(used: u64, target: u64, rows: u64) -> u64 {
    if used <= target || rows == 0 {
        return 0;
    }
    let avg = (used / rows).max(1);
    let want = (used - target).div_ceil(avg);
    let per_step = (STEP_BYTES / avg).clamp(1, STEP_ROWS as u64);
    want.clamp(1, per_step).min(rows)
}

impl Store {
    /// Runs a round of upkeep as of `now_ms` (ms since the epoch) and returns what it did,
    /// once done. The relay calls it every [`UPKEEP_EVERY`] ([`run`]); tests call it with
    /// their own clock.
    pub async fn upkeep(&self, now_ms: u64, open: Arc<dyn OpenRooms>) -> Result<Upkept, StoreError> {
        let (done, wait) = oneshot::channel();
        let round = Round { now_ms, open, done };
        self.writer.send(Op::Upkeep(Box::new(round))).await.map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)
    }

    /// The store's figures for `/metrics`.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }
}

/// Starts a round of upkeep every [`UPKEEP_EVERY`] until `stop`; a round that takes longer
/// delays the next one (rounds never pile up).
pub async fn run(store: Store, open: Arc<dyn OpenRooms>, stop: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = every.tick() => {
                let round = store.upkeep(crate::now_ms(), open.clone());
                tokio::select! {
                    () = stop.cancelled() => break,
                    r = round => if r.is_err() { break },
                }
            }
        }
    }
}

impl Counters {
    /// Counts one step's deletions, here and in `tally` (the round's).
    pub(crate) fn pruned(&self, tally: &mut Upkept, step: Upkept) {
        self.pruned_age.fetch_add(step.by_age, Relaxed);
        self.pruned_bytes.fetch_add(step.by_bytes, Relaxed);
        self.rooms_pruned.fetch_add(step.rooms, Relaxed);
        tally.by_age += step.by_age;
        tally.by_bytes += step.by_bytes;
        tally.rooms += step.rooms;
        tally.steps += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expired_rows_are_the_oldest_run() {
        let rows = [(1, 100), (2, 150), (3, 400), (4, 120)];
        assert_eq!(expired_prefix(&rows, 200), Some((2, 2)));
        assert_eq!(expired_prefix(&rows, 100), None);
        assert_eq!(expired_prefix(&rows, 1000), Some((4, 4)));
        assert_eq!(expired_prefix(&[], 1000), None);
    }

    #[test]
    fn a_step_over_the_cap_takes_what_is_needed_within_its_bounds() {
        // 100 rows of 1 MB, 10 MB over: 10 rows.
        assert_eq!(rows_to_shrink(100_000_000, 90_000_000, 100), 10);
        // 1000 rows of 256 KiB, far over: at most STEP_BYTES' worth.
        assert_eq!(rows_to_shrink(1000 * 262_144, 1000, 1000), 64);
        // Small rows: at most STEP_ROWS.
        assert_eq!(rows_to_shrink(10_000_000, 1000, 100_000), STEP_ROWS as u64);
        assert_eq!(rows_to_shrink(10, 100, 5), 0);
        assert_eq!(rows_to_shrink(200, 100, 0), 0);
        assert_eq!(rows_to_shrink(101, 100, 3), 1);
    }
}

/// The store's retention, end to end on SQLite: age with the clock passed in, bytes, steps,
/// rooms, cut records read back.
#[cfg(test)]
#[path = "upkeep_tests.rs"]
mod store_tests;
