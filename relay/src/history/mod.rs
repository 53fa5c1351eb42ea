//! The history store: every `post`/`postCb` and `call`/`callCb` pair, the rooms' secrets (as
//! digests) and the resume key.
//!
//! A PC never sees a reply whose pair a crash of the relay process could lose. With SQLite in
//! a file, the pair is first appended to the reply log ([`journal`]: one `write`, no sync) and
//! the reply forwarded then, before the commit; after a crash the log's uncommitted entries
//! are committed at the next start. Elsewhere (PostgreSQL, `sqlite::memory:`) a record's writer
//! is told only after its transaction committed, and the reply forwarded only then. Either
//! way a `kill -9` never loses a pair whose reply the PC already saw, and a read of history
//! finds every pair whose reply was forwarded before it.
//!
//! Both backends commit in groups: one writer (a thread for SQLite, a task for PostgreSQL) takes
//! whatever [`Op`]s are queued and commits them in one transaction, so a busy relay pays one
//! commit for many records. Reads go through a second connection.
//!
//! Every stored byte has a budget ([`Budget`]): a pair's bodies are cut to
//! `--history-max-record` before they are queued ([`cut`]), and the writers keep the store
//! within `--history-max-bytes` and `--history-max-age`, oldest pairs first ([`upkeep`]).
//!
//! Over 500 lines: the store's one API for both backends, the write queue they share and the
//! row and value helpers both use; a fifth of it is tests.
//!
//! # Layout
//! - this module: the store's API ([`Store`], [`Record`], [`Item`], [`StoreError`]), the write
//!   queue both writers drain, and what the two backends share: the history columns, a row
//!   read into an [`Item`], a record's values.
//! - [`cut`]: a record as stored: its reply in columns, its bodies cut and marked.
//! - [`upkeep`]: retention by age and bytes, forgotten rooms, the `/metrics` figures.
//! - [`sqlite`]: the default, embedded (`--db sqlite://PATH`), and [`journal`], its reply log.
//! - [`postgres`]: for relays that share one history (`--db postgres://…`).

/// The history columns a page reads, in [`Row`]'s order (and [`read_row!`]'s).
macro_rules! row_columns {
    () => {
        "id, kind, req_id, pc, device, device_name, target, request, result, cookie, app_info, error, sent_at, replied_at, cut"
    };
}

/// A [`Row`] from a database row `$r`, read by its `$get(index)` (rusqlite's `get`,
/// tokio-postgres's `try_get`), in [`row_columns!`]'s order; `?` on each.
macro_rules! read_row {
    ($r:expr, $get:ident) => {
        super::Row {
            id: $r.$get(0)?,
            kind: $r.$get(1)?,
            req_id: $r.$get(2)?,
            pc: $r.$get(3)?,
            device: $r.$get(4)?,
            device_name: $r.$get(5)?,
            target: $r.$get(6)?,
            request: $r.$get(7)?,
            result: $r.$get(8)?,
            cookie: $r.$get(9)?,
            app_info: $r.$get(10)?,
            error: $r.$get(11)?,
            sent_at: $r.$get(12)?,
            replied_at: $r.$get(13)?,
            cut: $r.$get(14)?,
        }
    };
}

/// The columns a record is written to, in [`record_values!`]'s order.
macro_rules! record_columns {
    () => {
        "room, tag, kind, req_id, pc, device, device_name, target, request, result, cookie, app_info, error, sent_at, replied_at, cut"
    };
}

/// The values of record `$r` (a [`cut::Stored`]), as an array of references for the
/// backend's parameter type.
macro_rules! record_values {
    ($r:expr) => {
        [
            &$r.room,
            &$r.tag,
            &$r.kind.as_str(),
            &$r.req_id,
            &$r.pc,
            &$r.device,
            &$r.device_name,
            &$r.target,
            &$r.request,
            &$r.result,
            &$r.cookie,
            &$r.app_info,
            &$r.error,
            &($r.sent_at as i64),
            &($r.replied_at as i64),
            &$r.cut,
        ]
    };
}

pub mod cut;
mod journal;
mod postgres;
mod sqlite;
pub mod upkeep;

pub use upkeep::{Budget, Counters, OpenRooms, Upkept};

use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
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
    /// `post`, `call`, `storage`, `eval` or `inspect` (the last three only while a PC of the
    /// room kept inspection). An `inspect` row is one batch of a device's page: its `result`
    /// is the batch as the device sent it, `request` is null, `pc` and `reqId` are empty.
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
    /// For a call: the JS-API method; for a storage, its op; for an eval, the start of its code.
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
    /// Set when bodies were cut to `--history-max-record` before they were stored: each cut
    /// field (`url`/`method`, `request`, `result`, `cookie`, `appInfo`, `error`) with its
    /// original size in bytes. A cut JSON field holds a JSON string: the start of its text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<Box<RawValue>>,
    /// Request forwarded, ms since the epoch.
    pub sent_at: u64,
    /// Reply received, ms since the epoch.
    pub replied_at: u64,
    /// `repliedAt - sentAt`.
    pub ms: u64,
}

/// What runs once a record is safe from a crash of the relay: logged (SQLite in a file: at
/// once, on the caller's task) or committed (on the writer's thread or task), in the order the
/// records were queued. It must not block.
pub type Then = Box<dyn FnOnce(Result<(), String>) + Send + Sync>;

pub(crate) enum Op {
    /// A record, what runs when its transaction has ended, and its reply log sequence number
    /// (0: not logged).
    Record(Box<cut::Stored>, Then, u64),
    Room {
        room: String,
        tag: String,
        done: oneshot::Sender<Result<(), String>>,
    },
    /// Writes nothing; answered once everything queued before it has been settled.
    Barrier(oneshot::Sender<()>),
    /// A round of upkeep ([`upkeep`]); writes nothing in the commit, answered when done.
    Upkeep(Box<upkeep::Round>),
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The writer's queue (both backends' writers drain [`Op`]s).
    writer: mpsc::Sender<Op>,
    /// Where reads go.
    backend: Backend,
    /// Transactions the writer has committed (records per commit = writes / commits).
    commits: Arc<AtomicU64>,
    /// Sizes, rows pruned, records cut (for `/metrics`).
    counters: Arc<Counters>,
    /// Bodies beyond this are cut before they are queued (0: never).
    max_record: usize,
    /// Bytes of records queued for the writer, at most [`WRITE_QUEUE_BYTES`]: a record takes
    /// its size in permits until its transaction has ended.
    queued: Arc<tokio::sync::Semaphore>,
    /// SQLite in a file: the reply log, which a record is appended to before its reply is
    /// forwarded.
    journal: Option<Arc<journal::Journal>>,
}

/// The read side of the backend `--db` chose.
#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Reader),
    Postgres(postgres::Reader),
}

/// Ops the writer may have queued; a full queue makes writers wait (backpressure on the
/// devices whose replies are being recorded), it never drops a record.
const WRITE_QUEUE: usize = 4096;
/// Bytes of records the write queue may hold (records are cut to `--history-max-record`, but
/// 0 never cuts, and 4,096 records of 256 KiB would be 1 GiB): past it, writers wait as they
/// do for a full queue. A record larger than this takes all of it.
const WRITE_QUEUE_BYTES: usize = 64 * 1024 * 1024;
/// Most records in one transaction.
const MAX_BATCH: usize = 512;

impl Store {
    /// Opens (creating if needed) the store named by `--db`, and starts its writer, which
    /// keeps the store within `budget`. Returns the store and the resume-token key kept in it.
    pub async fn open(url: &str, budget: Budget) -> Result<(Store, [u8; 32]), StoreError> {
        let commits = Arc::new(AtomicU64::new(0));
        let counters = Arc::new(Counters::default());
        let shared = Shared { commits: commits.clone(), counters: counters.clone(), budget };
        let (writer, backend, key, journal) =
            if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                let (writer, reader, key) = postgres::open(url, shared).await?;
                (writer, Backend::Postgres(reader), key, None)
            } else {
                let (writer, reader, key, journal) = sqlite::open(url, shared)?;
                (writer, Backend::Sqlite(reader), key, journal)
            };
        let queued = Arc::new(tokio::sync::Semaphore::new(WRITE_QUEUE_BYTES));
        let max_record = budget.max_record;
        Ok((Store { writer, backend, commits, counters, max_record, queued, journal }, key))
    }

    /// Bytes of records waiting for the writer (for `/metrics`).
    pub fn queued_bytes(&self) -> usize {
        WRITE_QUEUE_BYTES - self.queued.available_permits()
    }

    /// The count of transactions committed, kept up to date by the writer (for `/metrics`).
    pub fn commits(&self) -> Arc<AtomicU64> {
        self.commits.clone()
    }

    /// Stores a pair; returns once it is committed (logged is not enough here).
    pub async fn record(&self, rec: Record) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        let (rec, size) = self.prepare(rec);
        let permit = self.permit(size).await;
        let then = Box::new(move |outcome| drop(done.send(outcome)));
        self.queue(Op::Record(rec, self.holding(permit, size, then), 0)).await;
        wait.await.map_err(|_| StoreError::Closed)?.map_err(StoreError::Commit)
    }

    /// Queues a pair and returns as soon as it is queued; `then` runs exactly once, when the
    /// pair is safe from a crash of the relay: at once once it is in the reply log (SQLite in
    /// a file), else when its transaction has ended (with the commit's error, if any), or at
    /// once if the store is closed. The caller does not wait for the commit, so one connection
    /// can have many records on their way to disk; the queue is bounded ([`WRITE_QUEUE`]
    /// records and [`WRITE_QUEUE_BYTES`]), and while it is full this waits (backpressure,
    /// never a dropped record). Continuations run in queue order. The bodies are cut to
    /// `--history-max-record` here, on the caller's task, so the queue holds at most that much
    /// per record beyond its small columns.
    pub async fn record_then(&self, rec: Box<Record>, then: Then) {
        let (rec, size) = self.prepare(*rec);
        let permit = self.permit(size).await;
        let Some(journal) = &self.journal else {
            return self.queue(Op::Record(rec, self.holding(permit, size, then), 0)).await;
        };
        // A slot in the queue first: the record is queued under the log's lock, so the writer
        // sees records in the log's order and a commit up to entry N covers every entry before.
        let slot = match self.writer.try_reserve() {
            Ok(slot) => slot,
            Err(mpsc::error::TrySendError::Full(())) => match Box::pin(self.writer.reserve()).await {
                Ok(slot) => slot,
                Err(_) => return then(Err(StoreError::Closed.to_string())),
            },
            Err(mpsc::error::TrySendError::Closed(())) => return then(Err(StoreError::Closed.to_string())),
        };
        match journal.append(&mut journal::encode(&rec)) {
            Ok(appended) => {
                let seq = appended.seq;
                slot.send(Op::Record(rec, self.holding(permit, size, Box::new(|_| {})), seq));
                drop(appended);
                then(Ok(()));
            }
            // Without the log, the reply waits for its commit.
            Err(_) => {
                self.counters.log_failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                slot.send(Op::Record(rec, self.holding(permit, size, then), 0))
            }
        }
    }

    /// `size` bytes of the write queue, waiting while it is full.
    async fn permit(&self, size: u32) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match self.queued.clone().try_acquire_many_owned(size) {
            Ok(p) => Some(p),
            // Boxed, as the other waits for the queue: rare, and every connection's future
            // holds this one. The semaphore is never closed.
            Err(_) => Box::pin(self.queued.clone().acquire_many_owned(size)).await.ok(),
        }
    }

    /// Queues `op`, waiting while the queue is full.
    async fn queue(&self, op: Op) {
        let op = match self.writer.try_send(op) {
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

    /// Queues a record only if the write queue has room for it now; never waits. For what may
    /// be lost rather than slow its sender down (a kept `inspect` batch): `false` when it was
    /// not queued (`then` is then never called). Otherwise as [`Store::record_then`].
    pub fn offer(&self, rec: Record, then: Then) -> bool {
        let Ok(slot) = self.writer.try_reserve() else { return false };
        let rec = Box::new(cut::Stored::of(rec, self.max_record));
        let size = Self::size(&rec);
        let Ok(permit) = self.queued.clone().try_acquire_many_owned(size) else { return false };
        let permit = Some(permit);
        self.count_cut(&rec);
        slot.send(Op::Record(rec, self.holding(permit, size, then), 0));
        true
    }

    /// `rec` as stored (cut to `--history-max-record`, counted if it was) and the bytes it
    /// holds in the write queue.
    fn prepare(&self, rec: Record) -> (Box<cut::Stored>, u32) {
        let rec = Box::new(cut::Stored::of(rec, self.max_record));
        self.count_cut(&rec);
        let size = Self::size(&rec);
        (rec, size)
    }

    /// The bytes `rec` holds in the write queue.
    fn size(rec: &cut::Stored) -> u32 {
        u32::try_from(rec.bytes().clamp(1, WRITE_QUEUE_BYTES)).unwrap_or(u32::MAX)
    }

    fn count_cut(&self, rec: &cut::Stored) {
        if rec.cut.is_some() {
            self.counters.cut.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// `then`, holding the record's bytes of the write queue (`permit`) until its transaction
    /// has ended (or the store closed).
    fn holding(&self, permit: Option<tokio::sync::OwnedSemaphorePermit>, size: u32, then: Then) -> Then {
        let counters = self.counters.clone();
        counters.queued_bytes.fetch_add(u64::from(size), std::sync::atomic::Ordering::Relaxed);
        Box::new(move |outcome| {
            counters.queued_bytes.fetch_sub(u64::from(size), std::sync::atomic::Ordering::Relaxed);
            drop(permit);
            then(outcome)
        })
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
        match &self.backend {
            Backend::Sqlite(b) => b.put_meta(key, value).await,
            Backend::Postgres(b) => b.put_meta(key, value).await,
        }
    }

    /// Takes what is kept under `key` out of the `meta` table: it is there for one reader.
    pub async fn take_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.backend {
            Backend::Sqlite(b) => b.take_meta(key).await,
            Backend::Postgres(b) => b.take_meta(key).await,
        }
    }

    /// Whether `room` was ever opened with the secret whose digest is `tag`.
    pub async fn knows_room(&self, room: &str, tag: &str) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(b) => b.knows_room(room, tag).await,
            Backend::Postgres(b) => b.knows_room(room, tag).await,
        }
    }

    /// A page of a room's history, newest first: at most `limit` rows older than `before`,
    /// of the types in `types` (see [`Types`]).
    pub async fn page(
        &self,
        room: &str,
        tag: &str,
        limit: u32,
        before: Option<i64>,
        types: &Types,
    ) -> Result<Vec<Item>, StoreError> {
        let before = before.unwrap_or(i64::MAX);
        // Every pair whose reply was forwarded before this read is in it.
        if let Some(journal) = &self.journal {
            journal.caught_up().await;
        }
        match &self.backend {
            Backend::Sqlite(b) => b.page(room, tag, limit, before, &types.0).await,
            Backend::Postgres(b) => b.page(room, tag, limit, before, &types.0).await,
        }
    }
}

/// Which rows' types a page of history holds: by default the request/reply pairs (`post`,
/// `call`, `storage`, `eval`); `inspect` batches only when asked, as they are many and of
/// another shape. Held as `,a,b,` for the queries' `instr`/`strpos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Types(String);

impl Types {
    /// The row types there are.
    pub const NAMES: [&str; 5] = ["post", "call", "storage", "eval", "inspect"];

    /// `list`, comma-separated names of [`Types::NAMES`] (none: the default); an unknown one
    /// is refused (`Err` names it).
    pub fn parse(list: &str) -> Result<Types, String> {
        let mut out = String::from(",");
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !Self::NAMES.contains(&name) {
                return Err(name.to_owned());
            }
            out.push_str(name);
            out.push(',');
        }
        Ok(if out == "," { Types::default() } else { Types(out) })
    }
}

impl Default for Types {
    fn default() -> Types {
        Types(",post,call,storage,eval,".into())
    }
}

/// A history row as both backends read it ([`read_row!`]), before it becomes an [`Item`].
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
    cut: Option<String>,
}

impl Item {
    fn from_row(r: Row) -> Item {
        let (url, method) = match r.kind.as_str() {
            "post" => (Some(r.target), None),
            "inspect" => (None, None),
            _ => (None, Some(r.target)),
        };
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
            cut: r.cut.map(raw),
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

/// Tells the writer of a record that the store closed before it was queued.
fn closed(op: Op) {
    if let Op::Record(_, then, _) = op {
        then(Err(StoreError::Closed.to_string()));
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

/// Tells every writer of the batch how its transaction ended, counts its records as written
/// or failed, and empties the batch.
pub(crate) fn settle(batch: &mut Vec<Op>, outcome: Result<(), String>, counters: &Counters) {
    if let Err(e) = &outcome {
        tracing::error!(error = %e, records = batch.len(), "history commit failed");
    }
    let count = if outcome.is_ok() { &counters.written } else { &counters.failed };
    for op in batch.drain(..) {
        match op {
            Op::Record(_, then, _) => {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                then(outcome.clone())
            }
            Op::Room { done, .. } => drop(done.send(outcome.clone())),
            Op::Barrier(done) => drop(done.send(())),
            // Taken out of the batch before it commits (upkeep::take_rounds).
            Op::Upkeep(_) => {}
        }
    }
}

/// What the store's handle shares with its writer.
pub(crate) struct Shared {
    /// Transactions committed.
    pub(crate) commits: Arc<AtomicU64>,
    /// Sizes and rows pruned.
    pub(crate) counters: Arc<Counters>,
    /// The caps the writer keeps.
    pub(crate) budget: Budget,
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

    #[tokio::test]
    async fn pages_newest_first_per_room_and_secret() {
        let (store, _) = Store::open("sqlite::memory:", Budget::UNLIMITED).await.unwrap();
        for n in 0..7 {
            store.record(rec("a", "t1", n)).await.unwrap();
        }
        store.record(rec("a", "t2", 100)).await.unwrap();
        store.record(rec("b", "t1", 200)).await.unwrap();

        let first = store.page("a", "t1", 3, None, &Types::default()).await.unwrap();
        let ids: Vec<_> = first.iter().map(|i| i.req_id.as_str()).collect();
        assert_eq!(ids, ["r6", "r5", "r4"]);
        let next = store.page("a", "t1", 3, Some(first[2].id), &Types::default()).await.unwrap();
        assert_eq!(next.iter().map(|i| i.req_id.as_str()).collect::<Vec<_>>(), ["r3", "r2", "r1"]);
        let last = store.page("a", "t1", 3, Some(next[2].id), &Types::default()).await.unwrap();
        assert_eq!(last.len(), 1);

        let item = &first[0];
        assert_eq!(item.ms, 10);
        assert_eq!(item.result.get(), r#"{"n":6}"#);
        assert_eq!(item.cookie.as_deref(), Some("c=6"));
        assert_eq!(item.url.as_deref(), Some("https://x/6"));
        // Rows of another secret or another room never show.
        assert_eq!(store.page("a", "t2", 50, None, &Types::default()).await.unwrap().len(), 1);
        assert_eq!(store.page("b", "t1", 50, None, &Types::default()).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn survives_reopen_with_the_same_resume_key() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("sub/h.db").display());
        let (store, key1) = Store::open(&url, Budget::UNLIMITED).await.unwrap();
        store.register_room("a", "t").await.unwrap();
        store.record(rec("a", "t", 1)).await.unwrap();
        drop(store);
        let (store, key2) = Store::open(&url, Budget::UNLIMITED).await.unwrap();
        assert_eq!(key1, key2);
        assert!(store.knows_room("a", "t").await.unwrap());
        assert!(!store.knows_room("a", "u").await.unwrap());
        assert_eq!(store.page("a", "t", 10, None, &Types::default()).await.unwrap().len(), 1);
    }

    /// Pages of room `a`, tag `t`, as request ids.
    async fn ids(store: &Store) -> Vec<String> {
        let page = store.page("a", "t", 100, None, &Types::default()).await.unwrap();
        page.into_iter().map(|i| i.req_id).collect()
    }

    #[tokio::test]
    async fn with_a_file_a_reply_goes_on_once_logged_and_a_read_after_it_finds_its_row() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("h.db").display());
        let (store, _) = Store::open(&url, Budget::UNLIMITED).await.unwrap();
        store.register_room("a", "t").await.unwrap();
        for n in 1..=50 {
            let (done, mut told) = oneshot::channel();
            store.record_then(Box::new(rec("a", "t", n)), Box::new(move |o| drop(done.send(o)))).await;
            // Told on this task, before the writer has had a turn.
            assert_eq!(told.try_recv().expect("told once logged"), Ok(()));
        }
        assert_eq!(ids(&store).await.len(), 50, "a read waits for what was logged before it");
        store.settled().await;
        assert!(store.commits().load(std::sync::atomic::Ordering::Relaxed) >= 1);
        assert_eq!(store.counters.written.load(std::sync::atomic::Ordering::Relaxed), 50);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_database_and_its_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.db");
        let (store, _) = Store::open(&format!("sqlite://{}", db.display()), Budget::UNLIMITED).await.unwrap();
        store.record(rec("a", "t", 1)).await.unwrap();
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        for p in [db.clone(), wal.into()].into_iter().chain(journal::paths(&db)) {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
    }

    #[tokio::test]
    async fn when_the_reply_log_fails_a_reply_waits_for_its_commit_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.db");
        let (store, _) = Store::open(&format!("sqlite://{}", db.display()), Budget::UNLIMITED).await.unwrap();
        store.register_room("a", "t").await.unwrap();
        journal::tests::break_writes(store.journal.as_ref().unwrap(), &db);
        let (done, told) = oneshot::channel();
        store.record_then(Box::new(rec("a", "t", 1)), Box::new(move |o| drop(done.send(o)))).await;
        // Told when the writer has committed it (the commit's outcome), not as logged.
        assert_eq!(told.await.unwrap(), Ok(()));
        assert_eq!(ids(&store).await, ["r1"]);
        assert_eq!(store.counters.log_failed.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn pairs_logged_but_never_committed_are_committed_at_the_next_open_once() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("h.db");
        let url = format!("sqlite://{}", db.display());
        // A relay that stopped after logging pairs (their replies forwarded), before their
        // commit: the log holds them, the database does not. Its store is forgotten, not
        // dropped, as a crash would: its writer never runs again (nor empties the log).
        let (store, _) = Store::open(&url, Budget::UNLIMITED).await.unwrap();
        store.register_room("a", "t").await.unwrap();
        store.record(rec("a", "t", 1)).await.unwrap();
        let (j, _) = journal::Journal::open(&db, 0).unwrap();
        for n in 2..=4 {
            j.append(&mut journal::encode(&cut::Stored::of(rec("a", "t", n), 0))).unwrap();
        }
        std::mem::forget(store);

        let (store, _) = Store::open(&url, Budget::UNLIMITED).await.unwrap();
        assert_eq!(ids(&store).await, ["r4", "r3", "r2", "r1"]);
        for p in journal::paths(&db) {
            assert_eq!(std::fs::metadata(&p).unwrap().len(), 0, "replayed, the log is emptied");
        }
        // Logged and committed, then a crash before the log let go of it: not added twice.
        store.record_then(Box::new(rec("a", "t", 5)), Box::new(|_| {})).await;
        store.settled().await;
        assert!(std::fs::metadata(&journal::paths(&db)[0]).unwrap().len() > 0);
        std::mem::forget(store);
        let (store, _) = Store::open(&url, Budget::UNLIMITED).await.unwrap();
        assert_eq!(ids(&store).await, ["r5", "r4", "r3", "r2", "r1"]);
    }

    #[tokio::test]
    async fn the_write_queue_holds_at_most_its_bytes_and_loses_nothing_past_them() {
        let (store, _) = Store::open("sqlite::memory:", Budget::UNLIMITED).await.unwrap();
        // 100 records of 2 MB each (never cut here) queued at once: 200 MB, more than the
        // queue's 64 MiB. Writers wait for room; every record is committed.
        let mut waiting = Vec::new();
        for n in 0..100 {
            let mut r = rec("big", "t", n);
            r.reply = format!(r#"{{"method":"post","result":"{}"}}"#, "y".repeat(2_000_000));
            let (done, wait) = oneshot::channel();
            store.record_then(Box::new(r), Box::new(move |o| drop(done.send(o)))).await;
            waiting.push(wait);
        }
        for w in waiting {
            w.await.unwrap().unwrap();
        }
        assert_eq!(store.queued_bytes(), 0, "every record's bytes are given back once committed");
        assert_eq!(store.counters.queued_bytes.load(std::sync::atomic::Ordering::Relaxed), 0);
        assert_eq!(store.page("big", "t", 500, None, &Types::default()).await.unwrap().len(), 100);
        // One record larger than the whole queue still goes through, alone.
        let mut r = rec("big", "t", 1000);
        r.reply = format!(r#"{{"method":"post","result":"{}"}}"#, "z".repeat(WRITE_QUEUE_BYTES + 10));
        store.record(r).await.unwrap();
        assert_eq!(store.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn an_offer_is_queued_only_while_the_queue_has_room_now_and_types_pick_rows() {
        let (store, _) = Store::open("sqlite::memory:", Budget::UNLIMITED).await.unwrap();
        let inspect = |n: u64| {
            let mut r = rec("a", "t", n);
            (r.kind, r.target, r.request) = (Kind::Inspect, String::new(), "null".into());
            r.reply = format!(r#"{{"result":{{"events":[{{"k":"console","n":{n}}}]}}}}"#);
            r
        };
        // The queue's bytes all taken (as by records waiting for a slow disk): not queued, and
        // its continuation is never run; nothing is held for it.
        let held = store.queued.clone().try_acquire_many_owned(WRITE_QUEUE_BYTES as u32).unwrap();
        let ran = Arc::new(AtomicU64::new(0));
        let then = |ran: &Arc<AtomicU64>| -> Then {
            let ran = ran.clone();
            Box::new(move |o| {
                o.unwrap();
                ran.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            })
        };
        assert!(!store.offer(inspect(1), then(&ran)));
        assert_eq!(store.counters.queued_bytes.load(std::sync::atomic::Ordering::Relaxed), 0);
        drop(held);
        assert!(store.offer(inspect(2), then(&ran)));
        store.record(rec("a", "t", 3)).await.unwrap();
        store.settled().await;
        assert_eq!(ran.load(std::sync::atomic::Ordering::Relaxed), 1);
        assert_eq!(store.queued_bytes(), 0);

        // By default a page holds the pairs; `inspect` rows only when asked.
        let page = |types: &'static str| {
            let store = &store;
            async move {
                let types = Types::parse(types).unwrap();
                let rows = store.page("a", "t", 50, None, &types).await.unwrap();
                rows.into_iter().map(|i| (i.kind, i.method, i.result.get().to_owned())).collect::<Vec<_>>()
            }
        };
        let pair = ("call".to_owned(), Some("https://x/3".to_owned()), r#"{"n":3}"#.to_owned());
        let batch = ("inspect".to_owned(), None, r#"{"events":[{"k":"console","n":2}]}"#.to_owned());
        assert_eq!(page("").await, std::slice::from_ref(&pair));
        assert_eq!(page("inspect").await, std::slice::from_ref(&batch));
        assert_eq!(page("post, inspect,call").await, [pair, batch]);
        assert_eq!(page("post").await, []);
        assert_eq!(Types::parse("post,pcap"), Err("pcap".to_owned()));
    }

    #[tokio::test]
    async fn bad_urls_are_refused_clearly() {
        for url in ["mysql://x", "tether.db", "sqlite://"] {
            let err = Store::open(url, Budget::UNLIMITED).await.err().expect("refused").to_string();
            assert!(err.contains("--db"), "{err}");
        }
    }
}
