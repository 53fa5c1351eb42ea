//! The history store on PostgreSQL, for relays that share one history (`--db postgres://…`).
//!
//! Same tables and the same group commit as SQLite: one writer task owns a connection and
//! commits whatever is queued in one transaction, acknowledging each record only after the
//! commit. Reads use a second connection. Several relays may start at once: the schema is
//! created under an advisory lock, and the resume key is created once and then shared, so a
//! member's resume token works on every node.

use super::{Item, MAX_BATCH, Op, ReplyParts, StoreError, WRITE_QUEUE, settle, top_up};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS rooms (
    room TEXT NOT NULL, tag TEXT NOT NULL, created_at BIGINT NOT NULL,
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
";

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
    commits: Arc<AtomicU64>,
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
    tokio::spawn(write_loop(writer, rx, commits));
    Ok((tx, reader, key))
}

async fn write_loop(mut client: Client, mut rx: mpsc::Receiver<Op>, commits: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(op) = rx.recv().await {
        top_up(op, &mut rx, &mut batch);
        let outcome = commit(&mut client, &batch).await.map_err(|e| e.to_string());
        commits.fetch_add(1, Relaxed);
        settle(&mut batch, outcome);
    }
}

async fn commit(client: &mut Client, batch: &[Op]) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let insert = tx
        .prepare(concat!(
            "INSERT INTO history (",
            record_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        ))
        .await?;
    let room = tx
        .prepare("INSERT INTO rooms (room, tag, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .await?;
    for op in batch {
        match op {
            Op::Record(r, _) => {
                let reply = ReplyParts::of(&r.reply);
                let values: [&(dyn tokio_postgres::types::ToSql + Sync); 15] = record_values!(r, reply);
                tx.execute(&insert, &values).await?;
            }
            Op::Room { room: name, tag, .. } => {
                tx.execute(&room, &[name, tag, &(crate::now_ms() as i64)]).await?;
            }
            Op::Barrier(_) => {}
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
    ) -> Result<Vec<Item>, StoreError> {
        let rows = self
            .0
            .query(
                concat!(
                    "SELECT ",
                    row_columns!(),
                    " FROM history WHERE room = $1 AND tag = $2 AND id < $3 ORDER BY id DESC LIMIT $4"
                ),
                &[&room, &tag, &before, &i64::from(limit)],
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
