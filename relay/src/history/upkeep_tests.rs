use super::super::{Record, Store};
use super::*;
use rusqlite::Connection;
use serde_json::{Value, json};
use tether_protocol::Kind;

const DAY: u64 = 86_400_000;

/// Rooms open on the "relay", as the test says.
struct Open(std::sync::Mutex<Vec<String>>);

impl OpenRooms for Open {
    fn is_open(&self, room: &str) -> bool {
        self.0.lock().unwrap().iter().any(|r| r == room)
    }
}

fn open(rooms: &[&str]) -> Arc<Open> {
    Arc::new(Open(std::sync::Mutex::new(rooms.iter().map(|r| (*r).to_owned()).collect())))
}

fn rec(room: &str, n: u64, replied_at: u64, result_bytes: usize) -> Record {
    Record {
        room: room.into(),
        tag: "t".into(),
        kind: Kind::Post,
        req_id: format!("r{n}"),
        pc: "p-1".into(),
        device: "d-1".into(),
        device_name: None,
        target: format!("https://x/{n}"),
        request: format!(r#"{{"url":"https://x/{n}"}}"#),
        reply:
            json!({"method": "post", "result": {"n": n, "pad": "x".repeat(result_bytes)}, "cookie": "c=1"})
                .to_string(),
        sent_at: replied_at.saturating_sub(5),
        replied_at,
    }
}

async fn ids(store: &Store, room: &str) -> Vec<String> {
    store
        .page(room, "t", 500, None, &Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.req_id)
        .collect()
}

fn file_store(dir: &tempfile::TempDir) -> (String, std::path::PathBuf) {
    let path = dir.path().join("h.db");
    (format!("sqlite://{}", path.display()), path)
}

fn pragma(path: &std::path::Path, p: &str) -> i64 {
    Connection::open(path).unwrap().query_row(&format!("PRAGMA {p}"), [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn pairs_older_than_the_max_age_go_as_of_the_clock_given() {
    let budget = Budget { max_age_ms: 7 * DAY, ..Budget::UNLIMITED };
    let (store, _) = Store::open("sqlite::memory:", budget).await.unwrap();
    let t0 = 1_000 * DAY;
    for n in 0..10 {
        // One pair a day.
        store.record(rec("a", n, t0 + n * DAY, 10)).await.unwrap();
    }
    // Day 12: the pairs of days 0..=4 are more than 7 days old.
    let done = store.upkeep(t0 + 12 * DAY, open(&[])).await.unwrap();
    assert_eq!((done.by_age, done.by_bytes), (5, 0));
    assert_eq!(ids(&store, "a").await, ["r9", "r8", "r7", "r6", "r5"]);
    assert_eq!(store.counters().pruned_age.load(Relaxed), 5);
    // The same clock again: nothing more.
    assert_eq!(store.upkeep(t0 + 12 * DAY, open(&[])).await.unwrap().by_age, 0);
    // Without an age, nothing goes by age.
    let (forever, _) = Store::open("sqlite::memory:", Budget::UNLIMITED).await.unwrap();
    forever.record(rec("a", 1, t0, 10)).await.unwrap();
    assert_eq!(forever.upkeep(t0 + 1000 * DAY, open(&[])).await.unwrap().by_age, 0);
    assert_eq!(ids(&forever, "a").await, ["r1"]);
}

#[tokio::test]
async fn many_expired_pairs_go_in_bounded_steps() {
    let budget = Budget { max_age_ms: DAY, ..Budget::UNLIMITED };
    let (store, _) = Store::open("sqlite::memory:", budget).await.unwrap();
    let t0 = 1_000 * DAY;
    let n = 2 * STEP_ROWS as u64 + 150;
    for i in 0..n {
        store.record_then(Box::new(rec("a", i, t0 + i, 0)), Box::new(|_| {})).await;
    }
    store.record(rec("a", n, t0 + 2 * DAY, 0)).await.unwrap();
    let done = store.upkeep(t0 + 2 * DAY, open(&[])).await.unwrap();
    assert_eq!(done.by_age, n);
    // Never more than STEP_ROWS rows in one step: at least three steps for 1150 rows.
    assert!(done.steps >= n.div_ceil(STEP_ROWS as u64), "{done:?}");
    assert_eq!(ids(&store, "a").await, [format!("r{n}")]);
}

#[tokio::test]
async fn over_the_byte_cap_the_oldest_pairs_go_and_the_file_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let (url, path) = file_store(&dir);
    let cap: u64 = 2 << 20;
    let budget = Budget { max_bytes: cap, ..Budget::UNLIMITED };
    let (store, _) = Store::open(&url, budget).await.unwrap();
    assert_eq!(pragma(&path, "auto_vacuum"), 2, "a new database gives space back (incremental)");
    // 100 pairs of ~60 KB: 6 MB written, three times the cap.
    for n in 0..100 {
        store.record(rec("a", n, 1_000 + n, 60_000)).await.unwrap();
    }
    let done = store.upkeep(2_000, open(&[])).await.unwrap();
    let counters = store.counters();
    let pruned = counters.pruned_bytes.load(Relaxed);
    assert!(pruned >= 60, "most of the pairs went: {pruned} ({done:?})");
    // The store is under its cap, the file too (pages given back), and the newest pairs are
    // all there, oldest gone first.
    let db_bytes = counters.db_bytes.load(Relaxed);
    assert!(db_bytes <= cap, "{db_bytes} > {cap}");
    let file = std::fs::metadata(&path).unwrap().len();
    let pages = pragma(&path, "page_count") as u64 * pragma(&path, "page_size") as u64;
    assert!(pages <= cap, "{pages} > {cap}");
    let kept = ids(&store, "a").await;
    assert_eq!(kept.len() as u64, 100 - pruned);
    let newest: Vec<String> = (0..100).rev().take(kept.len()).map(|n| format!("r{n}")).collect();
    assert_eq!(kept, newest);
    eprintln!(
        "byte cap {cap}: {pruned} of 100 pairs pruned, db {db_bytes} bytes, file {file} (before checkpoint)"
    );
}

#[tokio::test]
async fn under_writes_that_never_let_up_the_byte_cap_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let (url, path) = file_store(&dir);
    let cap: u64 = 2 << 20;
    let budget = Budget { max_bytes: cap, ..Budget::UNLIMITED };
    let (store, _) = Store::open(&url, budget).await.unwrap();
    // The pages in use, read beside the writer every few milliseconds until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = std::thread::spawn({
        let (stop, path) = (stop.clone(), path.clone());
        move || {
            let c = Connection::open(&path).unwrap();
            let get =
                |p: &str| c.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0)).unwrap() as u64;
            let mut most = 0;
            while !stop.load(Relaxed) {
                most = most.max((get("page_count") - get("freelist_count")) * get("page_size"));
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            most
        }
    });
    // 6,000 pairs of ~2 KB queued without waiting for any commit: 12 MB, six times the cap,
    // faster than the writer commits them, so it does not find its queue empty until the end.
    for n in 0..6_000 {
        store.record_then(Box::new(rec("a", n, 1_000 + n, 2_000)), Box::new(|_| {})).await;
    }
    store.settled().await;
    stop.store(true, Relaxed);
    let most = watcher.join().unwrap();
    let pruned = store.counters().pruned_bytes.load(Relaxed);
    eprintln!("steady writes, cap {cap}: at most {most} bytes in use, {pruned} of 6000 pairs pruned");
    // Within the cap and one commit group (at most 512 of these pairs) beyond it: a group is
    // committed before the cap is checked again.
    assert!(most <= cap + 512 * 2_400, "{most} bytes in use under a {cap}-byte cap");
    assert!(pruned >= 4_000, "{pruned}");
}

#[tokio::test]
async fn rooms_with_no_history_are_forgotten_unless_open() {
    let budget = Budget { max_age_ms: 7 * DAY, ..Budget::UNLIMITED };
    let (store, _) = Store::open("sqlite::memory:", budget).await.unwrap();
    let now = crate::now_ms();
    for room in ["gone", "kept", "open"] {
        store.register_room(room, "t").await.unwrap();
    }
    // "kept" has a pair young enough to stay.
    store.record(rec("kept", 1, now + 8 * DAY, 10)).await.unwrap();
    let rooms = open(&["open"]);
    let done = store.upkeep(now + 8 * DAY, rooms.clone()).await.unwrap();
    assert_eq!(done.rooms, 1);
    assert!(!store.knows_room("gone", "t").await.unwrap());
    assert!(store.knows_room("kept", "t").await.unwrap());
    assert!(store.knows_room("open", "t").await.unwrap(), "an open room keeps its row");
    // "open" was seen open at day 8: once closed, it is kept until day 15.
    rooms.0.lock().unwrap().clear();
    assert_eq!(store.upkeep(now + 14 * DAY, rooms.clone()).await.unwrap().rooms, 0);
    assert!(store.knows_room("open", "t").await.unwrap());
    // Day 16: "open" was last seen 8 days ago; "kept"'s pair (day 8) is 8 days old: it goes,
    // then its room.
    let done = store.upkeep(now + 16 * DAY, rooms.clone()).await.unwrap();
    assert_eq!((done.by_age, done.rooms), (1, 2), "{done:?}");
    assert!(!store.knows_room("open", "t").await.unwrap());
    assert!(!store.knows_room("kept", "t").await.unwrap());
    assert_eq!(store.counters().rooms_pruned.load(Relaxed), 3);
}

#[tokio::test]
async fn a_cut_record_reads_back_as_json_with_its_marker() {
    let budget = Budget { max_record: 4096, ..Budget::UNLIMITED };
    let (store, _) = Store::open("sqlite::memory:", budget).await.unwrap();
    let big = rec("a", 1, 1_000, 100_000);
    let original: Value = serde_json::from_str(&big.reply).unwrap();
    let result_len = original["result"].to_string().len();
    store.record(big).await.unwrap();
    store.record(rec("a", 2, 1_001, 10)).await.unwrap();
    let items = store.page("a", "t", 10, None, &Default::default()).await.unwrap();
    let v: Value = serde_json::to_value(&items).unwrap();
    assert!(v[0].get("cut").is_none(), "a small pair has no marker: {}", v[0]);
    assert_eq!(v[0]["result"]["n"], 2);
    let cut = &v[1];
    assert_eq!(cut["cut"], json!({"result": result_len}));
    let kept = cut["result"].as_str().expect("the cut result is a JSON string");
    assert!(original["result"].to_string().starts_with(kept) && kept.len() > 3000, "{}", kept.len());
    assert_eq!((cut["cookie"].as_str(), cut["url"].as_str()), (Some("c=1"), Some("https://x/1")));
    assert_eq!(store.counters().cut.load(Relaxed), 1);
}

#[tokio::test]
async fn a_database_made_before_retention_is_migrated_and_converted() {
    let dir = tempfile::tempdir().unwrap();
    let (url, path) = file_store(&dir);
    {
        // The schema as it was, without incremental vacuum.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE rooms (room TEXT NOT NULL, tag TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (room, tag));
             CREATE TABLE history (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 room TEXT NOT NULL, tag TEXT NOT NULL, kind TEXT NOT NULL, req_id TEXT NOT NULL,
                 pc TEXT NOT NULL, device TEXT NOT NULL, device_name TEXT,
                 target TEXT NOT NULL, request TEXT NOT NULL,
                 result TEXT NOT NULL, cookie TEXT, app_info TEXT, error TEXT,
                 sent_at INTEGER NOT NULL, replied_at INTEGER NOT NULL);
             INSERT INTO rooms VALUES ('old', 't', 1000);
             INSERT INTO history (room, tag, kind, req_id, pc, device, target, request, result, sent_at, replied_at)
                 VALUES ('old', 't', 'post', 'r0', 'p', 'd', 'https://x/', '{}', '[1]', 1, 2);",
        )
        .unwrap();
        assert_eq!(pragma(&path, "auto_vacuum"), 0);
    }
    let (store, _) = Store::open(&url, Budget { max_age_ms: 7 * DAY, ..Budget::UNLIMITED }).await.unwrap();
    assert_eq!(pragma(&path, "auto_vacuum"), 2, "small: converted at open");
    let items = store.page("old", "t", 10, None, &Default::default()).await.unwrap();
    assert_eq!((items.len(), items[0].result.get(), items[0].cut.is_none()), (1, "[1]", true));
    // The room's seen_at came from its created_at: with its history gone by age, it goes too.
    let done = store.upkeep(1000 + 8 * DAY, open(&[])).await.unwrap();
    assert_eq!((done.by_age, done.rooms), (1, 1));
}
