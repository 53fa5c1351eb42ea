//! The history store on SQLite, the default (`--db sqlite://PATH`, embedded, created on first
//! run).
//!
//! One writer thread owns the write connection and commits in groups: whatever is queued when it
//! wakes goes into one transaction, so a busy relay pays one commit for many records (and,
//! when busy, it lingers a little for more: [`LINGER`]). The database runs in WAL mode with
//! `synchronous=NORMAL`: durable across a crash of the relay process; a power cut may lose the
//! last transactions. Reads go through a second connection (WAL lets them run beside the
//! writer), on tokio's blocking threads.

use super::{Item, MAX_BATCH, Op, ReplyParts, StoreError, WRITE_QUEUE, settle, top_up};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// When the last commit carried at least [`LINGER_BUSY`] records, the SQLite writer waits this long
/// for more before committing a batch smaller than [`LINGER_FULL`]. A commit writes every
/// index page of every room it touches, so its cost hardly depends on how many records it
/// carries: on SQLite alone, 20 µs of CPU per record at 10 records a commit, 11 µs at 50.
/// At 20k round trips/s on one core it cut commits 4.5× and the relay's CPU per round trip by
/// about a tenth (bench). A quiet relay (a developer and a phone) never waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);
const LINGER_BUSY: usize = 8;
const LINGER_FULL: usize = 64;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT NOT NULL, tag TEXT NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (room, tag)
);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL, tag TEXT NOT NULL, kind TEXT NOT NULL, req_id TEXT NOT NULL,
    pc TEXT NOT NULL, device TEXT NOT NULL, device_name TEXT,
    target TEXT NOT NULL, request TEXT NOT NULL,
    result TEXT NOT NULL, cookie TEXT, app_info TEXT, error TEXT,
    sent_at INTEGER NOT NULL, replied_at INTEGER NOT NULL
);
-- A room's rows, newest first. Not (room, tag, id): every commit writes the index pages of
-- each room it touches, and the 64-character tag in every entry made those pages fill and
-- split four times as fast (a quarter more CPU per record at 10 records a commit, measured
-- on SQLite alone). A room name reused with another secret costs its readers some skipped
-- rows, nothing else.
CREATE INDEX IF NOT EXISTS history_by_room_id ON history (room, id);
DROP INDEX IF EXISTS history_by_room;
";

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

fn open_connection(path: &Option<PathBuf>, shared_memory: &str) -> Result<Connection, rusqlite::Error> {
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
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Opens (creating if needed) the database `url` names, and starts the writer thread: the
/// writer's queue, the reader, and the resume key kept in the database.
pub(super) fn open(
    url: &str,
    commits: Arc<AtomicU64>,
) -> Result<(mpsc::Sender<Op>, Reader, [u8; 32]), StoreError> {
    let path = parse_url(url)?;
    let memory_name = format!("tether-{:016x}", rand::random::<u64>());
    if let Some(dir) = path.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let write = open_connection(&path, &memory_name)?;
    write.execute_batch(SCHEMA)?;
    let key = resume_key(&write)?;
    let read = open_connection(&path, &memory_name)?;
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    std::thread::Builder::new().name("tether-history".into()).spawn(move || writer(write, rx, &commits))?;
    Ok((tx, Reader(Arc::new(Mutex::new(read))), key))
}

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
    ) -> Result<Vec<Item>, StoreError> {
        let (room, tag) = (room.to_owned(), tag.to_owned());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(concat!(
                "SELECT ",
                row_columns!(),
                " FROM history WHERE room = ?1 AND tag = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4"
            ))?;
            let rows =
                stmt.query_map(params![room, tag, before, limit], |r| Ok(Item::from_row(read_row!(r, get))))?;
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

/// The writer thread: group commit until every `Store` handle is dropped.
fn writer(mut conn: Connection, mut rx: mpsc::Receiver<Op>, commits: &AtomicU64) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Whether the last commit carried many records: the relay is busy, and a short wait lets
    // the next commit carry more (each reply waits at most LINGER longer; see LINGER).
    let mut busy = false;
    while let Some(op) = rx.blocking_recv() {
        top_up(op, &mut rx, &mut batch);
        if busy && batch.len() < LINGER_FULL {
            std::thread::sleep(LINGER);
            while batch.len() < MAX_BATCH {
                let Ok(op) = rx.try_recv() else { break };
                batch.push(op);
            }
        }
        busy = batch.len() >= LINGER_BUSY;
        let outcome = commit(&mut conn, &batch).map_err(|e| e.to_string());
        commits.fetch_add(1, Relaxed);
        settle(&mut batch, outcome);
    }
}

fn commit(conn: &mut Connection, batch: &[Op]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(concat!(
            "INSERT INTO history (",
            record_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ))?;
        let mut room =
            tx.prepare_cached("INSERT OR IGNORE INTO rooms (room, tag, created_at) VALUES (?1, ?2, ?3)")?;
        for op in batch {
            match op {
                Op::Record(r, _) => {
                    let reply = ReplyParts::of(&r.reply);
                    let values: [&dyn rusqlite::ToSql; 15] = record_values!(r, reply);
                    insert.execute(&values[..])?;
                }
                Op::Room { room: name, tag, .. } => {
                    room.execute(params![name, tag, crate::now_ms() as i64])?;
                }
                Op::Barrier(_) => {}
            }
        }
    }
    tx.commit()
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
