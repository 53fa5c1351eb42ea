//! The history store on PostgreSQL, for relays that share one history (`--db postgres://…`).
//!
//! Same tables and the same group commit as SQLite: one writer task owns a connection and
//! commits whatever is queued in one transaction, acknowledging each record only after the
//! commit. Reads use a second connection. Several relays may start at once: the schema is
//! created under an advisory lock, and the resume key is created once and then shared, so a
//! member's resume token works on every node.
//!
//! Retention ([`Upkeep`]) is done by one node at a time: the one whose writer holds the
//! retention lock (a session advisory lock, taken by the first node to try, passed on when its
//! connection ends). The byte cap counts the stored bytes of the rows (the generated `bytes`
//! column: the bodies' lengths), summed once and then kept up to date, because the table's
//! size on disk (`pg_total_relation_size`, the `/metrics` gauge) only falls when PostgreSQL's
//! autovacuum has made the deleted rows' space reusable, and a cap on it would delete on and on.
//! Giving the space back is autovacuum's job; the relay runs no `VACUUM`.

use super::upkeep::{self, Counters, Plan, STEP_BYTES, STEP_ROWS, Upkept};
use super::{Budget, Item, MAX_BATCH, Op, Shared, StoreError, WRITE_QUEUE, settle, top_up};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT NOT NULL, tag TEXT NOT NULL, created_at BIGINT NOT NULL,
    seen_at BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room, tag)
);
CREATE TABLE IF NOT EXISTS history (
    id BIGSERIAL PRIMARY KEY,
    room TEXT NOT NULL, tag TEXT NOT NULL, kind TEXT NOT NULL, req_id TEXT NOT NULL,
    pc TEXT NOT NULL, device TEXT NOT NULL, device_name TEXT,
    target TEXT NOT NULL, request TEXT NOT NULL,
    result TEXT NOT NULL, cookie TEXT, app_info TEXT, error TEXT,
    sent_at BIGINT NOT NULL, replied_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_room ON history (room, tag, id);
-- Added by retention (tables made before it get them here).
ALTER TABLE history ADD COLUMN IF NOT EXISTS cut TEXT;
ALTER TABLE history ADD COLUMN IF NOT EXISTS bytes BIGINT GENERATED ALWAYS AS (
    octet_length(target)::bigint + octet_length(request) + octet_length(result)
    + coalesce(octet_length(cookie), 0) + coalesce(octet_length(app_info), 0) + coalesce(octet_length(error), 0)
) STORED;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_schema = current_schema() AND table_name = 'rooms' AND column_name = 'seen_at') THEN
        ALTER TABLE rooms ADD COLUMN seen_at BIGINT NOT NULL DEFAULT 0;
        UPDATE rooms SET seen_at = created_at;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS rooms_by_seen ON rooms (seen_at);
";

/// The advisory lock whose holder does retention (one node at a time).
const RETENTION_LOCK: i64 = 0x7465_7468_6572 + 1;
/// The stored bytes are summed again from scratch every this many rounds (in between, only
/// new rows are added): rows committed out of id order by other nodes are caught up then.
const RESUM_ROUNDS: u32 = 60;

/// An arbitrary, fixed key for the advisory lock that serialises schema creation.
const SCHEMA_LOCK: i64 = 0x7465_7468_6572;

async fn connect(url: &str) -> Result<Client, StoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::error!(error = %e, "history store: the PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Connects, creates the schema if needed, and starts the writer.
pub(super) async fn open(
    url: &str,
    shared: Shared,
) -> Result<(mpsc::Sender<Op>, Reader, [u8; 32]), StoreError> {
    let writer = connect(url).await?;
    writer.execute("SELECT pg_advisory_lock($1)", &[&SCHEMA_LOCK]).await?;
    let created = writer.batch_execute(SCHEMA).await;
    writer.execute("SELECT pg_advisory_unlock($1)", &[&SCHEMA_LOCK]).await?;
    created?;
    let fresh: [u8; 32] = rand::random();
    writer
        .execute(
            "INSERT INTO meta (key, value) VALUES ('resume_key', $1) ON CONFLICT (key) DO NOTHING",
            &[&fresh.as_slice()],
        )
        .await?;
    let stored: Vec<u8> =
        writer.query_one("SELECT value FROM meta WHERE key = 'resume_key'", &[]).await?.get(0);
    let key = <[u8; 32]>::try_from(stored.as_slice()).unwrap_or(fresh);
    let reader = Reader(Arc::new(connect(url).await?));
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let upkeep = Upkeep::new(shared.budget, shared.counters);
    tokio::spawn(write_loop(writer, rx, shared.commits, upkeep));
    Ok((tx, reader, key))
}

/// Group commit until every `Store` handle is dropped, and between commit groups one step of
/// upkeep at a time while a round is under way.
async fn write_loop(
    mut client: Client,
    mut rx: mpsc::Receiver<Op>,
    commits: Arc<AtomicU64>,
    mut upkeep: Upkeep,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        let op = if upkeep.plan.is_some() {
            match rx.try_recv() {
                Ok(op) => op,
                Err(TryRecvError::Empty) => {
                    upkeep.step(&mut client).await;
                    continue;
                }
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv().await {
                Some(op) => op,
                None => break,
            }
        };
        top_up(op, &mut rx, &mut batch);
        upkeep::take_rounds(&mut batch, &mut upkeep.plan);
        if !batch.is_empty() {
            let outcome = commit(&mut client, &batch).await.map_err(|e| e.to_string());
            commits.fetch_add(1, Relaxed);
            settle(&mut batch, outcome, &upkeep.counters);
        }
    }
    if let Some(plan) = upkeep.plan.take() {
        plan.finish();
    }
}

/// Retention on the writer task, in bounded steps; only the node holding [`RETENTION_LOCK`]
/// deletes.
struct Upkeep {
    budget: Budget,
    counters: Arc<Counters>,
    /// This node's writer holds the retention lock.
    leader: bool,
    /// The stored bytes of all rows and the largest id summed, as last known by the leader.
    stored: Option<(i64, i64)>,
    /// Rounds since the stored bytes were summed from scratch.
    rounds: u32,
    /// Bytes still to delete to get under the cap, this round.
    excess: i64,
    /// A round under way.
    plan: Option<Plan>,
}

impl Upkeep {
    fn new(budget: Budget, counters: Arc<Counters>) -> Upkeep {
        Upkeep { budget, counters, leader: false, stored: None, rounds: 0, excess: 0, plan: None }
    }

    async fn step(&mut self, client: &mut Client) {
        match self.try_step(client).await {
            Ok(true) => {}
            Ok(false) => {
                if let Some(plan) = self.plan.take() {
                    plan.finish();
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "history upkeep step failed");
                self.stored = None;
                if let Some(plan) = self.plan.take() {
                    plan.finish();
                }
            }
        }
    }

    /// One bounded step of the round under way; `false` when the round is over.
    async fn try_step(&mut self, client: &mut Client) -> Result<bool, tokio_postgres::Error> {
        let Some(plan) = &mut self.plan else { return Ok(false) };
        if !plan.measured {
            plan.measured = true;
            let size: i64 = client.query_one("SELECT pg_total_relation_size('history')", &[]).await?.get(0);
            self.counters.db_bytes.store(size.max(0) as u64, Relaxed);
            if !self.leader {
                self.leader =
                    client.query_one("SELECT pg_try_advisory_lock($1)", &[&RETENTION_LOCK]).await?.get(0);
            }
            if !self.leader {
                return Ok(false);
            }
            self.excess = 0;
            if self.budget.max_bytes > 0 {
                let stored = self.stored_bytes(client).await?;
                let cap = self.budget.max_bytes.min(i64::MAX as u64) as i64;
                if stored > cap {
                    self.excess = stored - self.budget.shrink_target() as i64;
                }
            }
            return Ok(true);
        }
        if self.excess > 0 {
            let rows = client
                .query("SELECT id, bytes FROM history ORDER BY id LIMIT $1", &[&(STEP_ROWS as i64)])
                .await?;
            let (mut last, mut freed) = (None, 0i64);
            for r in &rows {
                if freed >= self.excess || freed >= STEP_BYTES as i64 {
                    break;
                }
                last = Some(r.get::<_, i64>(0));
                freed += r.get::<_, i64>(1);
            }
            let Some(last) = last else {
                self.excess = 0;
                return Ok(true);
            };
            let (n, freed) = self.delete_through(client, last).await?;
            self.excess -= freed.max(1);
            self.account(Upkept { by_bytes: n, ..Upkept::default() });
            return Ok(true);
        }
        if !plan.age_done {
            let mut n = 0;
            if let Some(cutoff) = self.budget.history_cutoff(plan.now_ms) {
                let rows = client
                    .query("SELECT id, replied_at FROM history ORDER BY id LIMIT $1", &[&(STEP_ROWS as i64)])
                    .await?;
                let oldest: Vec<(i64, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                if let Some((last, _)) = upkeep::expired_prefix(&oldest, cutoff) {
                    n = self.delete_through(client, last).await?.0;
                }
            }
            let plan = self.plan.as_mut().expect("a round under way");
            plan.age_done = n < STEP_ROWS as u64;
            if n > 0 {
                self.account(Upkept { by_age: n, ..Upkept::default() });
                return Ok(true);
            }
        }
        let plan = self.plan.as_mut().expect("a round under way");
        if !plan.rooms_done {
            let cutoff = self.budget.room_cutoff(plan.now_ms);
            let (forgotten, looked) = forget_rooms(client, plan, cutoff).await?;
            plan.rooms_done = looked < STEP_ROWS;
            if looked > 0 {
                self.account(Upkept { rooms: forgotten, ..Upkept::default() });
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The stored bytes of all rows: summed from scratch now and then, else the rows added
    /// since the last sum are added to it.
    async fn stored_bytes(&mut self, client: &Client) -> Result<i64, tokio_postgres::Error> {
        let since = match self.stored {
            Some((_, max_id)) if self.rounds < RESUM_ROUNDS => max_id,
            _ => {
                self.rounds = 0;
                self.stored = Some((0, 0));
                0
            }
        };
        self.rounds += 1;
        let row = client
            .query_one(
                "SELECT coalesce(sum(bytes), 0)::bigint, coalesce(max(id), $1) FROM history WHERE id > $1",
                &[&since],
            )
            .await?;
        let (added, max_id): (i64, i64) = (row.get(0), row.get(1));
        let total = self.stored.map_or(0, |s| s.0) + added;
        self.stored = Some((total, max_id));
        Ok(total)
    }

    /// Deletes the rows up to id `last`: how many, and their stored bytes.
    async fn delete_through(
        &mut self,
        client: &Client,
        last: i64,
    ) -> Result<(u64, i64), tokio_postgres::Error> {
        let row = client
            .query_one(
                "WITH d AS (DELETE FROM history WHERE id <= $1 RETURNING bytes)
                 SELECT count(*), coalesce(sum(bytes), 0)::bigint FROM d",
                &[&last],
            )
            .await?;
        let (n, freed): (i64, i64) = (row.get(0), row.get(1));
        if let Some(s) = &mut self.stored {
            s.0 -= freed;
        }
        Ok((n.max(0) as u64, freed))
    }

    fn account(&mut self, step: Upkept) {
        let mut sink = Upkept::default();
        let tally = self.plan.as_mut().map_or(&mut sink, |p| &mut p.tally);
        self.counters.pruned(tally, step);
    }
}

/// Forgets rooms not seen since `cutoff` with no history left, at most [`STEP_ROWS`] looked
/// at; one found open here is seen now instead. Returns (forgotten, looked at).
async fn forget_rooms(
    client: &mut Client,
    plan: &Plan,
    cutoff: i64,
) -> Result<(u64, usize), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let candidates = tx
        .query(
            "SELECT room, tag FROM rooms r WHERE seen_at < $1
             AND NOT EXISTS (SELECT 1 FROM history h WHERE h.room = r.room AND h.tag = r.tag)
             ORDER BY seen_at LIMIT $2",
            &[&cutoff, &(STEP_ROWS as i64)],
        )
        .await?;
    let mut forgotten = 0;
    for row in &candidates {
        let (room, tag): (String, String) = (row.get(0), row.get(1));
        if plan.open.is_open(&room) {
            tx.execute(
                "UPDATE rooms SET seen_at = $3 WHERE room = $1 AND tag = $2",
                &[&room, &tag, &(plan.now_ms as i64)],
            )
            .await?;
        } else {
            // Checked again: another node may have opened it, or written to it, meanwhile.
            forgotten += tx
                .execute(
                    "DELETE FROM rooms r WHERE room = $1 AND tag = $2 AND seen_at < $3
                     AND NOT EXISTS (SELECT 1 FROM history h WHERE h.room = r.room AND h.tag = r.tag)",
                    &[&room, &tag, &cutoff],
                )
                .await?;
        }
    }
    tx.commit().await?;
    Ok((forgotten, candidates.len()))
}

async fn commit(client: &mut Client, batch: &[Op]) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let insert = tx
        .prepare(concat!(
            "INSERT INTO history (",
            record_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .await?;
    // A room opened again is seen again: its row is kept for another max age.
    let room = tx
        .prepare(
            "INSERT INTO rooms (room, tag, created_at, seen_at) VALUES ($1, $2, $3, $3)
             ON CONFLICT (room, tag) DO UPDATE SET seen_at = EXCLUDED.seen_at",
        )
        .await?;
    for op in batch {
        match op {
            Op::Record(r, _, _) => {
                let values: [&(dyn tokio_postgres::types::ToSql + Sync); 16] = record_values!(r);
                tx.execute(&insert, &values).await?;
            }
            Op::Room { room: name, tag, .. } => {
                tx.execute(&room, &[name, tag, &(crate::now_ms() as i64)]).await?;
            }
            Op::Barrier(_) | Op::Upkeep(_) => {}
        }
    }
    tx.commit().await
}

/// The read connection.
#[derive(Clone)]
pub(super) struct Reader(Arc<Client>);

impl Reader {
    pub(super) async fn knows_room(&self, room: &str, tag: &str) -> Result<bool, StoreError> {
        let row =
            self.0.query_opt("SELECT 1 FROM rooms WHERE room = $1 AND tag = $2", &[&room, &tag]).await?;
        Ok(row.is_some())
    }

    pub(super) async fn page(
        &self,
        room: &str,
        tag: &str,
        limit: u32,
        before: i64,
        types: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let rows = self
            .0
            .query(
                concat!(
                    "SELECT ",
                    row_columns!(),
                    " FROM history WHERE room = $1 AND tag = $2 AND id < $3",
                    " AND strpos($5, ',' || kind || ',') > 0 ORDER BY id DESC LIMIT $4"
                ),
                &[&room, &tag, &before, &i64::from(limit), &types],
            )
            .await?;
        let items: Result<Vec<Item>, tokio_postgres::Error> =
            rows.iter().map(|r| Ok(Item::from_row(read_row!(r, try_get)))).collect();
        Ok(items?)
    }

    pub(super) async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.0
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )
            .await?;
        Ok(())
    }

    pub(super) async fn take_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = self.0.query_opt("DELETE FROM meta WHERE key = $1 RETURNING value", &[&key]).await?;
        Ok(row.map(|r| r.get(0)))
    }
}
