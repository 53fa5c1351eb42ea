//! The attacks of issue #17 ("bounded"), each run against a real relay process started with
//! its default budgets: each test drives the attack past the cap it meets, checks the refusal
//! and that nothing else was lost, and prints what the attack reached (memory, disk, sockets)
//! as a line starting `attack:`, the figure docs/reliability.md ("Budgets") quotes.
//!
//! `TETHER_RELAY_BIN=<an older tether-relay> cargo test -p tether-tests --test attacks -- --nocapture`
//! measures an older relay the same way (its assertions then fail, after the figures print).

// History grows forever: a PC and a device exchange pairs with 1000 KiB replies. Each pair is
// stored with its bodies cut to --history-max-record (256 KiB by default), so the database
// grows by at most that much per pair (and --history-max-bytes, 1 GiB, caps the whole; tested
// with a small cap in tests/tests/history.rs), while the PC still gets every reply whole.
#[tokio::test]
async fn large_replies_grow_the_history_database_by_at_most_the_record_cap() {
    use serde_json::json;
    use tether_tests::{Client, RelayProcess, post};
    const SECRET: &str = "s-0123456789abcdef";
    /// The database's size as SQLite sees it (the WAL's pages included), and on disk (file + WAL).
    fn db_bytes(db: &std::path::Path) -> (u64, u64) {
        let c =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
        let get = |p: &str| c.query_row(&format!("PRAGMA {p}"), [], |r| r.get::<_, i64>(0)).unwrap() as u64;
        let len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        (get("page_count") * get("page_size"), len(db) + len(&db.with_extension("db-wal")))
    }

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("tether.db");
    let relay = RelayProcess::start("127.0.0.1:0", &db, &[]).await;
    let mut pc = Client::join(&relay.ws_url(), "hoard", "pc", SECRET).await;
    let mut dev = Client::join(&relay.ws_url(), "hoard", "device", SECRET).await;
    let data = "z".repeat(1000 * 1024);
    let pair = async |pc: &mut Client, dev: &mut Client, i: usize| {
        pc.send(post(&format!("p{i}"), "https://x/")).await;
        let req = dev.expect("post").await;
        dev.send(json!({"type": "postCb", "id": req["id"], "msg": {"method": "post", "result": data}})).await;
        let got = pc.expect("postCb").await;
        assert_eq!(got["msg"]["result"].as_str().map(str::len), Some(data.len()), "the PC gets it whole");
    };
    pair(&mut pc, &mut dev, 0).await;
    let (before, _) = db_bytes(&db);
    let n = 40;
    for i in 1..=n {
        pair(&mut pc, &mut dev, i).await;
    }
    let (after, disk) = db_bytes(&db);
    let per_pair = (after - before) / n as u64;
    println!(
        "attack: history {n} pairs of 1000 KiB replies grew the database by {} bytes ({per_pair} bytes a pair); \
         {after} bytes in all ({disk} on disk with the WAL)",
        after - before
    );
    // Cut to 256 KiB, plus the row's other columns and page slack.
    assert!(per_pair <= 270 * 1024, "{per_pair} bytes a pair");
    drop((pc, dev));
    relay.signal("TERM").await;
}
