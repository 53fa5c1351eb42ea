//! The history store on SQLite, the default (`--db sqlite://PATH`, embedded, created on first
//! run).
//!
//! One writer thread owns the write connection and commits in groups: whatever is queued when it
//! wakes goes into one transaction, so a busy relay pays one commit for many records (and,
//! when busy, it lingers a little for more: [`LINGER`]). The database runs in WAL mode with
//! `synchronous=NORMAL`: durable across a crash of the relay process; a power cut may lose the
//! last transactions. Reads go through a second connection (WAL lets them run beside the
//! writer), on tokio's blocking threads.
//!
//! A database in a file has a reply log beside it ([`super::journal`]): a pair is appended to
//! it before its reply is forwarded, and each commit keeps the highest log entry it covers in
//! `meta.log_seq`; at open, what the log holds beyond that is committed first. Replies then
//! never wait for a commit, nor for the checkpoints a commit may have to run.
//!
//! Retention ([`Upkeep`]) runs on the writer thread between commit groups, one bounded step at
//! a time: the byte cap counts the database's pages in use (`page_count - freelist_count`,
//! times the page size), checked after every commit; deleted rows' pages are reused, and those
//! beyond what the store needs are given back to the file system by `PRAGMA incremental_vacuum`
//! in steps of [`VACUUM_STEP`] pages. That needs `auto_vacuum = INCREMENTAL`, which a database
//! made before it gets at open if it is small ([`CONVERT_MAX`]); a larger one is still kept
//! within its cap (its free pages are reused) but its file does not shrink, and the relay says
//! how to convert it.

use super::journal::Journal;
use super::upkeep::{self, Counters, Plan, STEP_ROWS, Upkept};
use super::{Budget, Item, MAX_BATCH, Op, Shared, StoreError, WRITE_QUEUE, settle, top_up};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

/// When the last commit carried at least [`LINGER_BUSY`] records, the SQLite writer waits this long
/// for more before committing a batch smaller than [`LINGER_FULL`]. A commit writes every
/// index page of every room it touches, so its cost hardly depends on how many records it
/// carries: on SQLite alone, 20 µs of CPU per record at 10 records a commit, 11 µs at 50.
/// At 20k round trips/s on one core it cut commits 4.5× and the relay's CPU per round trip by
/// about a tenth (bench). A quiet relay (a developer and a phone) never waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);
/// [`LINGER`] with a reply log: the replies do not wait for the commit, only reads of history
/// do (for what was logged before them).
const LINGER_LOGGED: std::time::Duration = std::time::Duration::from_millis(2);
const LINGER_BUSY: usize = 8;
const LINGER_FULL: usize = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
-- seen_at: when the room was last opened (or found open by upkeep); a room with no history
-- left that has not been seen for the max age is forgotten.
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT NOT NULL, tag TEXT NOT NULL, created_at INTEGER NOT NULL,
    seen_at INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room, tag)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL, tag TEXT NOT NULL, kind TEXT NOT NULL, req_id TEXT NOT NULL,
    pc TEXT NOT NULL, device TEXT NOT NULL, device_name TEXT,
    target TEXT NOT NULL, request TEXT NOT NULL,
    result TEXT NOT NULL, cookie TEXT, app_info TEXT, error TEXT,
    sent_at INTEGER NOT NULL, replied_at INTEGER NOT NULL,
    cut TEXT
);
-- A room's rows, newest first. Not (room, tag, id): every commit writes the index pages of
-- each room it touches, and the 64-character tag in every entry made those pages fill and
-- split four times as fast (a quarter more CPU per record at 10 records a commit, measured
-- on SQLite alone). A room name reused with another secret costs its readers some skipped
-- rows, nothing else.
CREATE INDEX IF NOT EXISTS history_by_room_id ON history (room, id);
DROP INDEX IF EXISTS history_by_room;
";

/// What a database made before retention lacks (checked column by column), then the index
/// that needs it.
const MIGRATIONS: [(&str, &str, &str); 2] = [
    ("history", "cut", "ALTER TABLE history ADD COLUMN cut TEXT;"),
    (
        "rooms",
        "seen_at",
        "ALTER TABLE rooms ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0; UPDATE rooms SET seen_at = created_at;",
    ),
];
const INDEXES: &str = "CREATE INDEX IF NOT EXISTS rooms_by_seen ON rooms (seen_at);";

/// A database made without `auto_vacuum = INCREMENTAL` is converted at open (one `VACUUM`,
/// which rewrites the file and holds the writer meanwhile) up to this size: a few seconds at
/// most. A larger one is left as it is, with a warning.
const CONVERT_MAX: u64 = 64 * 1024 * 1024;
/// Most pages one step of `PRAGMA incremental_vacuum` gives back (4 MiB of 4 KiB pages).
const VACUUM_STEP: u64 = 1024;
/// Free pages kept for reuse without giving them back: a quarter of the pages in use, at
/// least this many.
const MIN_FREE_KEPT: u64 = 256;
/// After a checkpoint the WAL file is cut back to this size (a commit group of large
/// records may grow it well beyond).
const WAL_LIMIT: i64 = 32 * 1024 * 1024;

/// Where the database lives, from `--db`.
fn parse_url(url: &str) -> Result<Option<PathBuf>, StoreError> {
    if url == "sqlite::memory:" || url == "sqlite://:memory:" {
        return Ok(None);
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::BadUrl(url.to_owned()))?;
    if path.is_empty() {
        return Err(StoreError::BadUrl(url.to_owned()));
    }
    Ok(Some(PathBuf::from(path)))
}

/// `writer`: the writer's connection, which asks for incremental vacuum before the first table
/// is made (later it takes a `VACUUM`: [`incremental_vacuum`]) and limits the WAL.
fn open_connection(
    path: &Option<PathBuf>,
    shared_memory: &str,
    writer: bool,
) -> Result<Connection, rusqlite::Error> {
    let conn = match path {
        Some(p) => Connection::open(p)?,
        // Two connections to one in-memory database need a shared-cache URI.
        None => Connection::open_with_flags(
            format!("file:{shared_memory}?mode=memory&cache=shared"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
                | rusqlite::OpenFlags::SQLITE_OPEN_URI,
        )?,
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if writer {
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    if writer {
        conn.pragma_update(None, "journal_size_limit", WAL_LIMIT)?;
    }
    Ok(conn)
}

/// Adds what a database made before retention lacks.
fn migrate(conn: &Connection) -> Result<(), rusqlite::Error> {
    for (table, column, sql) in MIGRATIONS {
        let has: bool = conn.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get(0),
        )?;
        if !has {
            tracing::info!(table, column, "history store: adding a column");
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.commit()?;
        }
    }
    conn.execute_batch(INDEXES)
}

/// Whether the database gives free pages back with `PRAGMA incremental_vacuum`; one made
/// without it is converted here when it is small ([`CONVERT_MAX`]).
fn incremental_vacuum(conn: &Connection, path: &Option<PathBuf>) -> Result<bool, rusqlite::Error> {
    let mode = |c: &Connection| c.query_row("PRAGMA auto_vacuum", [], |r| r.get::<_, i64>(0));
    if mode(conn)? == 2 {
        return Ok(true);
    }
    let size = Sizes::of(conn)?.file_bytes();
    if size <= CONVERT_MAX {
        let started = std::time::Instant::now();
        // auto_vacuum was asked for at open; VACUUM makes it so.
        conn.execute_batch("VACUUM")?;
        let ok = mode(conn)? == 2;
        tracing::info!(
            bytes = size,
            ms = started.elapsed().as_millis() as u64,
            converted = ok,
            "history store: converted to incremental vacuum, so the space of pruned history is given back"
        );
        return Ok(ok);
    }
    let shown = path.as_ref().map_or_else(|| "the database".to_owned(), |p| p.display().to_string());
    tracing::warn!(
        bytes = size,
        "history store: {shown} was made without incremental vacuum and is too large to convert at start; \
         it is still kept within --history-max-bytes (free pages are reused), but its file will not shrink. \
         To convert it, stop the relay and run: sqlite3 {shown} 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'"
    );
    Ok(false)
}

/// What [`open`] gives the store: the writer's queue, the reader, the resume key kept in the
/// database, and the reply log (a database in a file).
type Opened = (mpsc::Sender<Op>, Reader, [u8; 32], Option<Arc<Journal>>);

/// Opens (creating if needed) the database `url` names, commits what its reply log holds
/// beyond its last commit, and starts the writer thread.
pub(super) fn open(url: &str, shared: Shared) -> Result<Opened, StoreError> {
    let path = parse_url(url)?;
    let memory_name = format!("tether-{:016x}", rand::random::<u64>());
    if let Some(dir) = path.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    if let Some(p) = &path {
        create_private(p)?;
    }
    let mut write = open_connection(&path, &memory_name, true)?;
    write.execute_batch(SCHEMA)?;
    migrate(&write)?;
    let vacuum = incremental_vacuum(&write, &path)?;
    let key = resume_key(&write)?;
    let journal = match &path {
        Some(p) => Some(Arc::new(replay(&mut write, p)?)),
        None => None,
    };
    let read = open_connection(&path, &memory_name, false)?;
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    let upkeep = Upkeep::new(&write, shared.budget, shared.counters, vacuum)?;
    let commits = shared.commits;
    let log = journal.clone();
    std::thread::Builder::new()
        .name("tether-history".into())
        .spawn(move || writer(write, rx, &commits, upkeep, log))?;
    Ok((tx, Reader(Arc::new(Mutex::new(read))), key, journal))
}

/// Makes the database file, if it is new, readable by this user only: it holds the phones'
/// cookies. SQLite gives its WAL and shared-memory files the database file's mode.
fn create_private(db: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(db) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens the reply log beside `db` and commits the pairs it holds that the database does not
/// (the relay stopped between their reply and their commit); then empties it.
fn replay(conn: &mut Connection, db: &Path) -> Result<Journal, StoreError> {
    let committed: Option<i64> =
        conn.query_row("SELECT value FROM meta WHERE key = 'log_seq'", [], |r| r.get(0)).optional()?;
    let (journal, pending) = Journal::open(db, committed.unwrap_or(0).max(0) as u64)?;
    if let Some((last, _)) = pending.last() {
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            for (_, r) in &pending {
                let values: [&dyn rusqlite::ToSql; 16] = record_values!(r);
                insert.execute(&values[..])?;
            }
        }
        set_log_seq(&tx, *last)?;
        tx.commit()?;
        tracing::info!(
            pairs = pending.len(),
            "history: committed the pairs the reply log held (the relay had stopped before their commit)"
        );
    }
    journal.start()?;
    Ok(journal)
}

/// Keeps `seq` as the last reply log entry committed (in the transaction that commits it).
fn set_log_seq(conn: &Connection, seq: u64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('log_seq', ?1)")?
        .execute([seq as i64])
        .map(drop)
}

const INSERT: &str = concat!(
    "INSERT INTO history (",
    record_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
);

/// The read connection.
#[derive(Clone)]
pub(super) struct Reader(Arc<Mutex<Connection>>);

impl Reader {
    pub(super) async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
                .map(drop)
        })
        .await
    }

    pub(super) async fn take_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.read(move |c| {
            let v: Option<Vec<u8>> =
                c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0)).optional()?;
            c.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
            Ok(v)
        })
        .await
    }

    pub(super) async fn knows_room(&self, room: &str, tag: &str) -> Result<bool, StoreError> {
        let (room, tag) = (room.to_owned(), tag.to_owned());
        self.read(move |c| {
            c.query_row("SELECT 1 FROM rooms WHERE room = ?1 AND tag = ?2", params![room, tag], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
        .await
    }

    pub(super) async fn page(
        &self,
        room: &str,
        tag: &str,
        limit: u32,
        before: i64,
        types: &str,
    ) -> Result<Vec<Item>, StoreError> {
        let (room, tag, types) = (room.to_owned(), tag.to_owned(), types.to_owned());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(concat!(
                "SELECT ",
                row_columns!(),
                " FROM history WHERE room = ?1 AND tag = ?2 AND id < ?3",
                " AND instr(?5, ',' || kind || ',') > 0 ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![room, tag, before, limit, types], |r| {
                Ok(Item::from_row(read_row!(r, get)))
            })?;
            rows.collect()
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.0.clone();
        tokio::task::spawn_blocking(move || {
            let conn = crate::util::lock(&reader);
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

fn resume_key(conn: &Connection) -> Result<[u8; 32], rusqlite::Error> {
    let existing: Option<Vec<u8>> =
        conn.query_row("SELECT value FROM meta WHERE key = 'resume_key'", [], |r| r.get(0)).optional()?;
    if let Some(k) = existing.and_then(|v| <[u8; 32]>::try_from(v.as_slice()).ok()) {
        return Ok(k);
    }
    let key: [u8; 32] = rand::random();
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('resume_key', ?1)",
        params![key.to_vec()],
    )?;
    Ok(key)
}

/// The writer thread: group commit until every `Store` handle is dropped, and between commit
/// groups one step of upkeep at a time while there is some to do.
fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    commits: &AtomicU64,
    mut upkeep: Upkeep,
    journal: Option<Arc<Journal>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let linger = if journal.is_some() { LINGER_LOGGED } else { LINGER };
    // Whether the last commit carried many records: the relay is busy, and a short wait lets
    // the next commit carry more (each reply waits at most LINGER longer; see LINGER).
    let mut busy = false;
    loop {
        // Records first; upkeep only when none are waiting.
        let op = if upkeep.has_work() {
            match rx.try_recv() {
                Ok(op) => Some(op),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.blocking_recv() {
                Some(op) => Some(op),
                None => break,
            }
        };
        let Some(op) = op else {
            upkeep.step(&conn);
            continue;
        };
        top_up(op, &mut rx, &mut batch);
        if busy && batch.len() < LINGER_FULL {
            std::thread::sleep(linger);
            while batch.len() < MAX_BATCH {
                let Ok(op) = rx.try_recv() else { break };
                batch.push(op);
            }
        }
        upkeep::take_rounds(&mut batch, &mut upkeep.plan);
        busy = batch.len() >= LINGER_BUSY;
        if !batch.is_empty() {
            let logged = logged_up_to(&batch);
            // Over the byte cap, the oldest rows go in the same transaction.
            let prune = upkeep.prune_bound(&conn, batch.len() as u64);
            let outcome = commit(&mut conn, &batch, logged, prune).map_err(|e| e.to_string());
            commits.fetch_add(1, Relaxed);
            if let Ok(n @ 1..) = outcome {
                upkeep.account(Upkept { by_bytes: n, ..Upkept::default() });
            }
            settle(&mut batch, outcome.map(drop), &upkeep.counters);
            if let (Some(journal), Some(seq)) = (&journal, logged) {
                journal.settled(seq);
            }
            upkeep.measure = true;
            // Under steady writes the queue is never empty and the steps between commit groups
            // never run: the byte cap is checked after every commit, and kept by the commits.
            upkeep.after_commit(&conn);
        }
    }
    if let Some(plan) = upkeep.plan.take() {
        plan.finish();
    }
    if let Some(journal) = journal {
        journal.close();
    }
}

/// The highest reply log entry among the batch's records, if any was logged (they are queued
/// in the log's order).
fn logged_up_to(batch: &[Op]) -> Option<u64> {
    batch.iter().rev().find_map(|op| match op {
        Op::Record(_, _, seq) if *seq > 0 => Some(*seq),
        _ => None,
    })
}

/// Commits the batch; with `logged`, the last reply log entry it covers too; with `prune`,
/// the rows below that id go. Returns how many went.
fn commit(
    conn: &mut Connection,
    batch: &[Op],
    logged: Option<u64>,
    prune: Option<i64>,
) -> Result<u64, rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        // A room opened again is seen again: its row is kept for another max age.
        let mut room = tx.prepare_cached(
            "INSERT INTO rooms (room, tag, created_at, seen_at) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT (room, tag) DO UPDATE SET seen_at = excluded.seen_at",
        )?;
        for op in batch {
            match op {
                Op::Record(r, _, _) => {
                    let values: [&dyn rusqlite::ToSql; 16] = record_values!(r);
                    insert.execute(&values[..])?;
                }
                Op::Room { room: name, tag, .. } => {
                    room.execute(params![name, tag, crate::now_ms() as i64])?;
                }
                Op::Barrier(_) | Op::Upkeep(_) => {}
            }
        }
    }
    if let Some(seq) = logged {
        set_log_seq(&tx, seq)?;
    }
    let pruned = match prune {
        Some(below) => tx.prepare_cached("DELETE FROM history WHERE id < ?1")?.execute([below])? as u64,
        None => 0,
    };
    tx.commit()?;
    Ok(pruned)
}

/// The database's size, in pages.
#[derive(Debug, Clone, Copy, Default)]
struct Sizes {
    page_size: u64,
    pages: u64,
    free: u64,
}

impl Sizes {
    /// Read after every commit: three pragmas, answered from the database header.
    fn of(conn: &Connection) -> Result<Sizes, rusqlite::Error> {
        let get = |sql: &str| conn.prepare_cached(sql)?.query_row([], |r| r.get::<_, i64>(0));
        Ok(Sizes {
            page_size: get("PRAGMA page_size")?.max(0) as u64,
            pages: get("PRAGMA page_count")?.max(0) as u64,
            free: get("PRAGMA freelist_count")?.max(0) as u64,
        })
    }

    /// Bytes in pages in use: what `--history-max-bytes` caps.
    fn used_bytes(&self) -> u64 {
        (self.pages - self.free.min(self.pages)) * self.page_size
    }

    /// The file's size once checkpointed (free pages included).
    fn file_bytes(&self) -> u64 {
        self.pages * self.page_size
    }
}

/// Retention on the writer thread: one bounded step at a time ([`Upkeep::step`]).
struct Upkeep {
    budget: Budget,
    counters: Arc<Counters>,
    /// Whether free pages can be given back (`auto_vacuum = INCREMENTAL`).
    vacuum: bool,
    /// The sizes are to be read again before the next step (after a commit or a deletion).
    measure: bool,
    sizes: Sizes,
    /// Over the byte cap: the oldest rows go until the store is down to its shrink target.
    shrinking: bool,
    /// A round of age and room upkeep under way.
    plan: Option<Plan>,
    /// Whether the store was found over its cap with no history to delete (said once).
    said_full: bool,
}

impl Upkeep {
    fn new(
        conn: &Connection,
        budget: Budget,
        counters: Arc<Counters>,
        vacuum: bool,
    ) -> Result<Upkeep, rusqlite::Error> {
        let sizes = Sizes::of(conn)?;
        counters.db_bytes.store(sizes.file_bytes(), Relaxed);
        Ok(Upkeep {
            budget,
            counters,
            vacuum,
            measure: true,
            sizes,
            shrinking: false,
            plan: None,
            said_full: false,
        })
    }

    /// Whether a step has something to do (the writer then does not block on its queue).
    fn has_work(&self) -> bool {
        self.measure || self.shrinking || self.plan.is_some() || self.vacuum_pages() > 0
    }

    /// Free pages to give back: those beyond the byte cap's worth of pages, and those beyond
    /// what is kept for reuse (a quarter of the pages in use).
    fn vacuum_pages(&self) -> u64 {
        if !self.vacuum || self.sizes.page_size == 0 {
            return 0;
        }
        let s = &self.sizes;
        let beyond_cap = match self.budget.max_bytes {
            0 => 0,
            cap => s.pages.saturating_sub(cap / s.page_size),
        };
        let kept = ((s.pages - s.free.min(s.pages)) / 4).max(MIN_FREE_KEPT);
        beyond_cap.max(s.free.saturating_sub(kept)).min(s.free)
    }

    /// One bounded step: measure, or delete at most [`STEP_ROWS`] rows (over the byte cap
    /// first, then by age, then rooms), or give back at most [`VACUUM_STEP`] pages; a round
    /// with nothing left to do is answered.
    fn step(&mut self, conn: &Connection) {
        let started = std::time::Instant::now();
        if let Err(e) = self.try_step(conn) {
            tracing::warn!(error = %e, "history upkeep step failed");
            // Tried again after the next commit or round, not in a loop.
            self.shrinking = false;
            self.measure = false;
            if let Some(plan) = self.plan.take() {
                plan.finish();
            }
        }
        let ms = started.elapsed().as_millis() as u64;
        if ms >= 100 {
            tracing::debug!(ms, "history upkeep step was slow");
        }
    }

    fn try_step(&mut self, conn: &Connection) -> Result<(), rusqlite::Error> {
        if self.measure {
            self.measure = false;
            self.sizes = Sizes::of(conn)?;
            self.counters.db_bytes.store(self.sizes.file_bytes(), Relaxed);
            let used = self.sizes.used_bytes();
            if self.budget.max_bytes > 0 && used > self.budget.max_bytes {
                self.shrinking = true;
            } else if used <= self.budget.shrink_target() {
                self.shrinking = false;
            }
        }
        if self.shrinking {
            let n = self.shrink(conn)?;
            self.account(Upkept { by_bytes: n, ..Upkept::default() });
            self.measure = true;
            return Ok(());
        }
        if let Some(plan) = &mut self.plan {
            if !plan.age_done {
                let n = match self.budget.history_cutoff(plan.now_ms) {
                    Some(cutoff) => delete_expired(conn, cutoff)?,
                    None => 0,
                };
                plan.age_done = n < STEP_ROWS as u64;
                if n > 0 {
                    self.account(Upkept { by_age: n, ..Upkept::default() });
                    self.measure = true;
                    return Ok(());
                }
            }
            if !plan.rooms_done {
                let (forgotten, looked) = forget_rooms(conn, plan, self.budget.room_cutoff(plan.now_ms))?;
                plan.rooms_done = looked < STEP_ROWS;
                if looked > 0 {
                    self.account(Upkept { rooms: forgotten, ..Upkept::default() });
                    self.measure = true;
                    return Ok(());
                }
            }
        }
        let pages = self.vacuum_pages();
        if pages > 0 {
            conn.execute_batch(&format!("PRAGMA incremental_vacuum({})", pages.min(VACUUM_STEP)))?;
            let before = self.sizes.pages;
            self.sizes = Sizes::of(conn)?;
            self.counters.db_bytes.store(self.sizes.file_bytes(), Relaxed);
            if self.sizes.pages < before {
                if self.vacuum_pages() == 0 {
                    // The file is cut at a checkpoint: now, rather than at the next automatic
                    // one, which a quiet store may not reach for hours.
                    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
                }
                return Ok(());
            }
            // Never expected; but a vacuum that makes no progress must not spin the writer.
            self.vacuum = false;
            tracing::warn!(
                "history store: incremental vacuum made no progress; not trying again until restart"
            );
        }
        if let Some(plan) = self.plan.take() {
            plan.finish();
        }
        Ok(())
    }

    /// After a commit: the sizes read again, so that a store over its byte cap starts
    /// shrinking even while records keep coming (the steps between commit groups only run
    /// when none are waiting; see [`Upkeep::prune_bound`]).
    fn after_commit(&mut self, conn: &Connection) {
        if self.budget.max_bytes == 0 {
            return;
        }
        match Sizes::of(conn) {
            Ok(sizes) => {
                self.sizes = sizes;
                self.measure = false;
                self.counters.db_bytes.store(sizes.file_bytes(), Relaxed);
                let used = sizes.used_bytes();
                if used > self.budget.max_bytes {
                    self.shrinking = true;
                } else if used <= self.budget.shrink_target() {
                    self.shrinking = false;
                }
            }
            Err(e) => tracing::warn!(error = %e, "history store: reading its size after a commit failed"),
        }
    }

    /// While shrinking, the id below which the next commit group, of `records`, deletes rows
    /// (one step's worth, and at least as many rows as it adds): the oldest rows go in the
    /// same transaction as the new ones, so a store written without a pause stays within its
    /// cap (without this it grew to 12× a 2 MiB cap in
    /// `under_writes_that_never_let_up_the_byte_cap_still_holds`).
    fn prune_bound(&mut self, conn: &Connection, records: u64) -> Option<i64> {
        if !self.shrinking {
            return None;
        }
        match self.shrink_bound(conn, records) {
            Ok(bound) => bound,
            Err(e) => {
                tracing::warn!(error = %e, "history store: finding the oldest rows to prune failed");
                self.shrinking = false;
                None
            }
        }
    }

    /// Adds a step's deletions to the counters and to the round under way.
    fn account(&mut self, step: Upkept) {
        let mut sink = Upkept::default();
        let tally = self.plan.as_mut().map_or(&mut sink, |p| &mut p.tally);
        self.counters.pruned(tally, step);
    }

    /// Deletes the oldest rows: as many as bring the store to its shrink target, by the
    /// average row, within one step's bounds. Returns how many went.
    fn shrink(&mut self, conn: &Connection) -> Result<u64, rusqlite::Error> {
        let Some(below) = self.shrink_bound(conn, 0)? else { return Ok(0) };
        let deleted = conn.execute("DELETE FROM history WHERE id < ?1", [below])?;
        Ok(deleted as u64)
    }

    /// The id below which the rows that bring the store to its shrink target (within one
    /// step's bounds, and at least `at_least` of them) are; `None` (and shrinking ends) when
    /// there is nothing to delete.
    fn shrink_bound(&mut self, conn: &Connection, at_least: u64) -> Result<Option<i64>, rusqlite::Error> {
        // Two queries: each is answered from one end of the table's B-tree, where
        // `SELECT min(id), max(id)` reads every row (it was most of the writer's time at the cap).
        let end = |sql: &str| conn.prepare_cached(sql)?.query_row([], |r| r.get::<_, Option<i64>>(0));
        let (min, max) = (end("SELECT min(id) FROM history")?, end("SELECT max(id) FROM history")?);
        let (Some(min), Some(max)) = (min, max) else {
            // Nothing left to delete: what fills the store is not history (room rows go by
            // age only). Said once, not after every commit.
            if !self.said_full {
                self.said_full = true;
                tracing::warn!(
                    bytes = self.sizes.used_bytes(),
                    "history store: over --history-max-bytes with no history left to delete"
                );
            }
            self.shrinking = false;
            return Ok(None);
        };
        // Rows go only from the oldest end, so the ids in between are (nearly) all there.
        let rows = (max - min + 1).max(1) as u64;
        let n = upkeep::rows_to_shrink(self.sizes.used_bytes(), self.budget.shrink_target(), rows);
        if n == 0 {
            self.shrinking = false;
            return Ok(None);
        }
        Ok(Some(min + n.max(at_least).min(rows) as i64))
    }
}

/// Deletes the oldest rows replied before `cutoff`, at most [`STEP_ROWS`]; how many went.
fn delete_expired(conn: &Connection, cutoff: i64) -> Result<u64, rusqlite::Error> {
    let mut stmt = conn.prepare_cached("SELECT id, replied_at FROM history ORDER BY id LIMIT ?1")?;
    let mut oldest = Vec::with_capacity(STEP_ROWS);
    let mut rows = stmt.query([STEP_ROWS as i64])?;
    while let Some(r) = rows.next()? {
        let row: (i64, i64) = (r.get(0)?, r.get(1)?);
        // Stop reading at the first row young enough to stay.
        if row.1 >= cutoff {
            break;
        }
        oldest.push(row);
    }
    let Some((last, _)) = upkeep::expired_prefix(&oldest, cutoff) else { return Ok(0) };
    Ok(conn.execute("DELETE FROM history WHERE id <= ?1", [last])? as u64)
}

/// Forgets rooms not seen since `cutoff` with no history left, at most [`STEP_ROWS`] looked
/// at; one found open is seen now instead. Returns (forgotten, looked at).
fn forget_rooms(conn: &Connection, plan: &Plan, cutoff: i64) -> Result<(u64, usize), rusqlite::Error> {
    let tx = conn.unchecked_transaction()?;
    let candidates: Vec<(String, String)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT room, tag FROM rooms WHERE seen_at < ?1
             AND NOT EXISTS (SELECT 1 FROM history h WHERE h.room = rooms.room AND h.tag = rooms.tag)
             ORDER BY seen_at LIMIT ?2",
        )?;
        stmt.query_map(params![cutoff, STEP_ROWS as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?
    };
    let mut forgotten = 0;
    for (room, tag) in &candidates {
        if plan.open.is_open(room) {
            tx.execute(
                "UPDATE rooms SET seen_at = ?3 WHERE room = ?1 AND tag = ?2",
                params![room, tag, plan.now_ms as i64],
            )?;
        } else {
            forgotten +=
                tx.execute("DELETE FROM rooms WHERE room = ?1 AND tag = ?2", params![room, tag])? as u64;
        }
    }
    tx.commit()?;
    Ok((forgotten, candidates.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_history_is_read_through_the_room_index() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT id FROM history
                 WHERE room = ?1 AND tag = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
            )
            .unwrap()
            .query_map(params!["r", "t", 100, 10], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("USING INDEX history_by_room_id"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
    }
}
