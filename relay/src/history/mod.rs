//! The history store: every `post`/`postCb` and `call`/`callCb` pair, and the resume key.
//!
//! SQLite by default (embedded, created on first run). One writer thread owns the write
//! connection and commits in groups: whatever is queued when it wakes goes into one
//! transaction, so a busy relay pays one commit for many records. A record's writer is told
//! only after its transaction committed; the relay forwards a reply to the PC only after
//! that, so a `kill -9` never loses a pair whose reply the PC already saw. The database runs
//! in WAL mode with `synchronous=NORMAL`: durable across a crash of the relay process; a
//! power cut may lose the last transactions.
//!
//! Reads go through a second connection (WAL lets them run beside the writer).
//!
//! With `--db postgres://…` the same API runs on PostgreSQL (the `postgres` module): several relays
//! share one history, one set of room secrets and one resume key.

mod postgres;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::value::RawValue;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use tether_protocol::Kind;
use tokio::sync::{mpsc, oneshot};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The `--db` URL is not one this build understands.
    #[error("unsupported --db {0:?}: use sqlite://PATH, sqlite::memory: or postgres://USER@HOST:PORT/DB")]
    BadUrl(String),
    /// PostgreSQL said no.
    #[error("history store (PostgreSQL): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// SQLite said no.
    #[error("history store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The writer thread is gone (the relay is shutting down).
    #[error("history store is closed")]
    Closed,
    /// A transaction failed; every record in it was refused.
    #[error("history commit failed: {0}")]
    Commit(String),
    /// The database's folder could not be made, or the writer thread started.
    #[error("history store: {0}")]
    Io(#[from] std::io::Error),
}

/// One stored request/reply pair.
#[derive(Debug, Clone)]
pub struct Record {
    /// Room name.
    pub room: String,
    /// Hex digest of the room's secret ([`crate::token::tag`]).
    pub tag: String,
    /// `post` or `call`.
    pub kind: Kind,
    /// The request's id.
    pub req_id: String,
    /// The PC member that asked.
    pub pc: String,
    /// The device member that answered.
    pub device: String,
    /// The device's name at the time, if it said one.
    pub device_name: Option<String>,
    /// The URL (post) or JS-API method (call).
    pub target: String,
    /// The request body, raw JSON.
    pub request: String,
    /// The reply body, raw JSON.
    pub reply: String,
    /// When the relay forwarded the request, ms since the epoch.
    pub sent_at: u64,
    /// When the reply reached the relay, ms since the epoch.
    pub replied_at: u64,
}

/// One row of `GET /api/rooms/{room}/history`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// Row id; pass it as `before` to get older rows.
    pub id: i64,
    /// `post` or `call`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Request id.
    pub req_id: String,
    /// PC member id.
    pub pc: String,
    /// Device member id.
    pub device: String,
    /// Device name, if known.
    pub device_name: Option<String>,
    /// For a post: the URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For a call: the JS-API method.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The request body as sent.
    pub request: Box<RawValue>,
    /// The reply's `result`.
    pub result: Box<RawValue>,
    /// The reply's `cookie` (posts).
    pub cookie: Option<String>,
    /// The reply's `appInfo`.
    pub app_info: Option<Box<RawValue>>,
    /// The reply's `error`, when the device reported one.
    pub error: Option<Box<RawValue>>,
    /// Request forwarded, ms since the epoch.
    pub sent_at: u64,
    /// Reply received, ms since the epoch.
    pub replied_at: u64,
    /// `repliedAt - sentAt`.
    pub ms: u64,
}

/// What runs once a record's transaction has ended, on the writer's thread (SQLite) or task
/// (PostgreSQL), in the order the records were queued. It must not block.
pub type Then = Box<dyn FnOnce(Result<(), String>) + Send + Sync>;

pub(crate) enum Op {
    Record(Box<Record>, Then),
    Room {
        room: String,
        tag: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Writes nothing; answered once everything queued before it has been settled.
    Barrier(oneshot::Sender<()>),
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    writer: mpsc::Sender<Op>,
    reader: Reader,
    /// Transactions the writer has committed (records per commit = writes / commits).
    commits: Arc<AtomicU64>,
}

#[derive(Clone)]
enum Reader {
    Sqlite(Arc<Mutex<Connection>>),
    Postgres(Arc<tokio_postgres::Client>),
}

/// Ops the writer may have queued; a full queue makes writers wait (backpressure on the
/// devices whose replies are being recorded), it never drops a record.
const WRITE_QUEUE: usize = 4096;
/// When the last commit carried at least [`LINGER_BUSY`] records, the SQLite writer waits this long
/// for more before committing a batch smaller than [`LINGER_FULL`]. A commit writes every
/// index page of every room it touches, so its cost hardly depends on how many records it
/// carries: on SQLite alone, 20 µs of CPU per record at 10 records a commit, 11 µs at 50.
/// At 20k round trips/s on one core it cut commits 4.5× and the relay's CPU per round trip by
/// about a tenth (bench). A quiet relay (a developer and a phone) never waits.
const LINGER: std::time::Duration = std::time::Duration::from_micros(500);
const LINGER_BUSY: usize = 8;
const LINGER_FULL: usize = 64;
/// Most records in one transaction.
const MAX_BATCH: usize = 512;

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

fn open(path: &Option<PathBuf>, shared_memory: &str) -> Result<Connection, rusqlite::Error> {
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

impl Store {
    /// Opens (creating if needed) the store named by `--db`, and starts its writer. Returns
    /// the store and the resume-token key kept in it.
    pub async fn open(url: &str) -> Result<(Store, [u8; 32]), StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let commits = Arc::new(AtomicU64::new(0));
            let (writer, reader, key) = postgres::open(url, commits.clone()).await?;
            return Ok((Store { writer, reader: Reader::Postgres(reader), commits }, key));
        }
        let path = parse_url(url)?;
        let memory_name = format!("tether-{:016x}", rand::random::<u64>());
        if let Some(dir) = path.as_ref().and_then(|p| p.parent()).filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let write = open(&path, &memory_name)?;
        write.execute_batch(SCHEMA)?;
        let key = resume_key(&write)?;
        let read = open(&path, &memory_name)?;
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let counted = commits.clone();
        std::thread::Builder::new()
            .name("tether-history".into())
            .spawn(move || writer(write, rx, &counted))?;
        Ok((Store { writer: tx, reader: Reader::Sqlite(Arc::new(Mutex::new(read))), commits }, key))
    }

    /// The count of transactions committed, kept up to date by the writer (for `/metrics`).
    pub fn commits(&self) -> Arc<AtomicU64> {
        self.commits.clone()
    }

    /// Stores a pair; returns once it is committed.
    pub async fn record(&self, rec: Record) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.record_then(Box::new(rec), Box::new(move |outcome| drop(done.send(outcome)))).await;
        wait.await.map_err(|_| StoreError::Closed)?.map_err(StoreError::Commit)
    }

    /// Queues a pair and returns as soon as it is queued; `then` runs exactly once, when its
    /// transaction has ended (with the commit's error, if any), or at once if the store is
    /// closed. The caller does not wait for the commit, so one connection can have many
    /// records on their way to disk; the queue is bounded ([`WRITE_QUEUE`]), and while it is
    /// full this waits (backpressure, never a dropped record). Continuations run in queue
    /// order.
    pub async fn record_then(&self, rec: Box<Record>, then: Then) {
        let closed = |op: Op| {
            if let Op::Record(_, then) = op {
                then(Err(StoreError::Closed.to_string()));
            }
        };
        let op = match self.writer.try_send(Op::Record(rec, then)) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(op)) => op,
            Err(mpsc::error::TrySendError::Closed(op)) => return closed(op),
        };
        // The queue is full: wait for room. Boxed, so that this rare wait does not make every
        // connection's future (which holds this one) larger.
        if let Err(e) = Box::pin(self.writer.send(op)).await {
            closed(e.0);
        }
    }

    /// Returns once every record queued before this call has been committed (or refused)
    /// and its continuation has run: at shutdown, before the rooms are saved.
    pub async fn settled(&self) {
        let (done, wait) = oneshot::channel();
        if self.writer.send(Op::Barrier(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Remembers that `room` was opened with the secret whose digest is `tag`, so its
    /// history can be read with that secret later, even after the room emptied.
    pub async fn register_room(&self, room: &str, tag: &str) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let op = Op::Room { room: room.to_owned(), tag: tag.to_owned(), done };
        self.writer.send(op).await.map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?.map_err(StoreError::Commit)
    }

    /// Keeps `value` under `key` in the store's `meta` table (the restart snapshot).
    pub async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        if let Reader::Postgres(c) = &self.reader {
            return postgres::put_meta(c, key, value).await;
        }
        let key = key.to_owned();
        self.read(move |c| {
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])
                .map(drop)
        })
        .await
    }

    /// Takes what is kept under `key` out of the `meta` table: it is there for one reader.
    pub async fn take_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Reader::Postgres(c) = &self.reader {
            return postgres::take_meta(c, key).await;
        }
        let key = key.to_owned();
        self.read(move |c| {
            let v: Option<Vec<u8>> =
                c.query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0)).optional()?;
            c.execute("DELETE FROM meta WHERE key = ?1", [&key])?;
            Ok(v)
        })
        .await
    }

    /// Whether `room` was ever opened with the secret whose digest is `tag`.
    pub async fn knows_room(&self, room: &str, tag: &str) -> Result<bool, StoreError> {
        if let Reader::Postgres(c) = &self.reader {
            return postgres::knows_room(c, room, tag).await;
        }
        let (room, tag) = (room.to_owned(), tag.to_owned());
        self.read(move |c| {
            c.query_row("SELECT 1 FROM rooms WHERE room = ?1 AND tag = ?2", params![room, tag], |_| Ok(()))
                .optional()
                .map(|r| r.is_some())
        })
        .await
    }

    /// A page of a room's history, newest first: at most `limit` rows older than `before`.
    pub async fn page(
        &self,
        room: &str,
        tag: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<Item>, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        if let Reader::Postgres(c) = &self.reader {
            return postgres::page(c, room, tag, limit, before).await;
        }
        let (room, tag) = (room.to_owned(), tag.to_owned());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, kind, req_id, pc, device, device_name, target, request, result, cookie,
                        app_info, error, sent_at, replied_at
                 FROM history WHERE room = ?1 AND tag = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![room, tag, before, limit], |r| {
                Ok(Item::from_row(Row {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    req_id: r.get(2)?,
                    pc: r.get(3)?,
                    device: r.get(4)?,
                    device_name: r.get(5)?,
                    target: r.get(6)?,
                    request: r.get(7)?,
                    result: r.get(8)?,
                    cookie: r.get(9)?,
                    app_info: r.get(10)?,
                    error: r.get(11)?,
                    sent_at: r.get(12)?,
                    replied_at: r.get(13)?,
                }))
            })?;
            rows.collect()
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let Reader::Sqlite(reader) = self.reader.clone() else {
            unreachable!("only the SQLite store reads here")
        };
        tokio::task::spawn_blocking(move || {
            let conn = crate::util::lock(&reader);
            f(&conn).map_err(StoreError::from)
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// A history row as both backends read it, before it becomes an [`Item`].
struct Row {
    id: i64,
    kind: String,
    req_id: String,
    pc: String,
    device: String,
    device_name: Option<String>,
    target: String,
    request: String,
    result: String,
    cookie: Option<String>,
    app_info: Option<String>,
    error: Option<String>,
    sent_at: i64,
    replied_at: i64,
}

impl Item {
    fn from_row(r: Row) -> Item {
        let (url, method) = if r.kind == "post" { (Some(r.target), None) } else { (None, Some(r.target)) };
        Item {
            id: r.id,
            kind: r.kind,
            req_id: r.req_id,
            pc: r.pc,
            device: r.device,
            device_name: r.device_name,
            url,
            method,
            request: raw(r.request),
            result: raw(r.result),
            cookie: r.cookie,
            app_info: r.app_info.map(raw),
            error: r.error.map(raw),
            sent_at: r.sent_at.max(0) as u64,
            replied_at: r.replied_at.max(0) as u64,
            ms: r.replied_at.saturating_sub(r.sent_at).max(0) as u64,
        }
    }
}

/// Stored JSON was written from validated raw JSON; if it is somehow not JSON any more, it
/// is returned as a JSON string rather than failing the whole page.
fn raw(text: String) -> Box<RawValue> {
    match RawValue::from_string(text) {
        Ok(v) => v,
        Err(e) => {
            RawValue::from_string(serde_json::to_string(&format!("<unreadable: {e}>")).unwrap_or_default())
                .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("null is JSON"))
        }
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

/// Starts a batch with `first` and adds whatever else is already queued (up to [`MAX_BATCH`]).
pub(crate) fn top_up(first: Op, rx: &mut mpsc::Receiver<Op>, batch: &mut Vec<Op>) {
    batch.push(first);
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(op) => batch.push(op),
            Err(_) => break,
        }
    }
}

/// Tells every writer of the batch how its transaction ended, and empties the batch.
pub(crate) fn settle(batch: &mut Vec<Op>, outcome: Result<(), String>) {
    if let Err(e) = &outcome {
        tracing::error!(error = %e, records = batch.len(), "history commit failed");
    }
    for op in batch.drain(..) {
        match op {
            Op::Record(_, then) => then(outcome.clone()),
            Op::Room { done, .. } => drop(done.send(outcome.clone())),
            Op::Barrier(done) => drop(done.send(())),
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Op]) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO history (room, tag, kind, req_id, pc, device, device_name, target, request,
                                  result, cookie, app_info, error, sent_at, replied_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        let mut room =
            tx.prepare_cached("INSERT OR IGNORE INTO rooms (room, tag, created_at) VALUES (?1, ?2, ?3)")?;
        for op in batch {
            match op {
                Op::Record(r, _) => {
                    let reply = ReplyParts::of(&r.reply);
                    insert.execute(params![
                        r.room,
                        r.tag,
                        r.kind.as_str(),
                        r.req_id,
                        r.pc,
                        r.device,
                        r.device_name,
                        r.target,
                        r.request,
                        reply.result,
                        reply.cookie,
                        reply.app_info,
                        reply.error,
                        r.sent_at as i64,
                        r.replied_at as i64,
                    ])?;
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

/// The parts of a reply body that get their own columns.
pub(crate) struct ReplyParts {
    result: String,
    cookie: Option<String>,
    app_info: Option<String>,
    error: Option<String>,
}

impl ReplyParts {
    pub(crate) fn of(reply: &str) -> ReplyParts {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            #[serde(borrow, default)]
            result: Option<&'a RawValue>,
            #[serde(default)]
            cookie: Option<String>,
            #[serde(borrow, default)]
            app_info: Option<&'a RawValue>,
            #[serde(borrow, default)]
            error: Option<&'a RawValue>,
        }
        match serde_json::from_str::<Body<'_>>(reply) {
            Ok(b) => ReplyParts {
                result: b.result.map_or_else(|| "null".into(), |v| v.get().to_owned()),
                cookie: b.cookie,
                app_info: b.app_info.map(|v| v.get().to_owned()),
                error: b.error.map(|v| v.get().to_owned()),
            },
            // A reply whose body is not an object is kept whole as the result.
            Err(_) => ReplyParts { result: reply.to_owned(), cookie: None, app_info: None, error: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(room: &str, tag: &str, n: u64) -> Record {
        Record {
            room: room.into(),
            tag: tag.into(),
            kind: if n % 2 == 0 { Kind::Post } else { Kind::Call },
            req_id: format!("r{n}"),
            pc: "p-1".into(),
            device: "d-1".into(),
            device_name: Some("phone".into()),
            target: format!("https://x/{n}"),
            request: format!(r#"{{"url":"https://x/{n}"}}"#),
            reply: format!(
                r#"{{"method":"post","result":{{"n":{n}}},"cookie":"c={n}","appInfo":{{"v":1}}}}"#
            ),
            sent_at: 1000 + n,
            replied_at: 1010 + n,
        }
    }

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

    #[tokio::test]
    async fn pages_newest_first_per_room_and_secret() {
        let (store, _) = Store::open("sqlite::memory:").await.unwrap();
        for n in 0..7 {
            store.record(rec("a", "t1", n)).await.unwrap();
        }
        store.record(rec("a", "t2", 100)).await.unwrap();
        store.record(rec("b", "t1", 200)).await.unwrap();

        let first = store.page("a", "t1", 3, None).await.unwrap();
        let ids: Vec<_> = first.iter().map(|i| i.req_id.as_str()).collect();
        assert_eq!(ids, ["r6", "r5", "r4"]);
        let next = store.page("a", "t1", 3, Some(first[2].id)).await.unwrap();
        assert_eq!(next.iter().map(|i| i.req_id.as_str()).collect::<Vec<_>>(), ["r3", "r2", "r1"]);
        let last = store.page("a", "t1", 3, Some(next[2].id)).await.unwrap();
        assert_eq!(last.len(), 1);

        let item = &first[0];
        assert_eq!(item.ms, 10);
        assert_eq!(item.result.get(), r#"{"n":6}"#);
        assert_eq!(item.cookie.as_deref(), Some("c=6"));
        assert_eq!(item.url.as_deref(), Some("https://x/6"));
        // Rows of another secret or another room never show.
        assert_eq!(store.page("a", "t2", 50, None).await.unwrap().len(), 1);
        assert_eq!(store.page("b", "t1", 50, None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn survives_reopen_with_the_same_resume_key() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sub/h.db").display());
        let (store, key1) = Store::open(&url).await.unwrap();
        store.register_room("a", "t").await.unwrap();
        store.record(rec("a", "t", 1)).await.unwrap();
        drop(store);
        let (store, key2) = Store::open(&url).await.unwrap();
        assert_eq!(key1, key2);
        assert!(store.knows_room("a", "t").await.unwrap());
        assert!(!store.knows_room("a", "u").await.unwrap());
        assert_eq!(store.page("a", "t", 10, None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn bad_urls_are_refused_clearly() {
        for url in ["mysql://x", "tether.db", "sqlite://"] {
            let err = Store::open(url).await.err().expect("refused").to_string();
            assert!(err.contains("--db"), "{err}");
        }
    }
}
