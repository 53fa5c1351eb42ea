//! The reply log: what lets a reply go to its PC before its pair's SQLite commit.
//!
//! The promise is that a PC never sees a reply whose pair a crash of the relay process can
//! lose. It was kept by forwarding each reply only after its commit; but a commit waits behind
//! the WAL checkpoints and their `fsync` (milliseconds, tens on a virtual machine's disk), and
//! every reply queued behind one waited with it: at a fixed 5,000 round trips/s p99 was 29 ms
//! with the replies waiting for their commit, 2.2 ms without (bench/README.md, #20).
//!
//! Now a pair is first appended here: one `write` of the encoded record on the caller's task,
//! no `fsync`. Once `write` returns the bytes are the kernel's, and a crash of the process
//! (`kill -9`, a panic, the OOM killer) cannot lose them. The reply is then forwarded, and the
//! pair queued for the writer as before, which commits in groups and keeps, in the same
//! transaction, the highest sequence number it committed (`meta.log_seq`). At open, the
//! entries beyond that number (pairs whose reply may have been seen, whose commit never
//! happened) are committed before anything else ([`Journal::open`]).
//!
//! A power cut may lose what the kernel had not written yet, in this log as in the WAL
//! (`synchronous=NORMAL`): the newest pairs, never the database. Every entry carries a CRC-32;
//! a torn or damaged entry ends its segment's replay, with a warning.
//!
//! Two segment files (`DB-log0` and `DB-log1`, made with mode 0600: they hold what the
//! database holds) take turns: appends go to one until it holds [`SEGMENT`] bytes, then to
//! the other once every entry of the other has been committed; the other is emptied then. So
//! the log holds about two segments, at most one segment and the write queue's bytes more.
//!
//! Reads of history first wait until what was logged before them has been committed
//! ([`Journal::caught_up`]), so a PC that saw a reply finds its row.
//!
//! An entry: the body's length (u32), the CRC-32 of the body then the sequence number (u32),
//! the sequence number (u64), all little-endian, then the body: the record's text fields, each
//! a length (u32; `u32::MAX` for none) and its UTF-8, then its two times (u64).

use super::cut::Stored;
use crate::util::lock;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;
use tether_protocol::Kind;
use tokio::sync::watch;

/// A segment takes appends until it holds this many bytes (then the other, once it is free).
pub(crate) const SEGMENT: u64 = 4 * 1024 * 1024;
/// An entry's head: length, CRC, sequence number.
const HEAD: usize = 16;
/// A length beyond this is damage, not a record (a record is at most a frame, cut or not).
const MAX_BODY: usize = 512 * 1024 * 1024;
/// How long a read of history waits for the commits of what was logged before it; past it,
/// the read goes ahead (a stuck writer must not stop reads as well).
const CATCH_UP: Duration = Duration::from_secs(5);

/// The reply log beside a SQLite database.
pub(crate) struct Journal {
    state: Mutex<State>,
    /// The highest sequence number appended.
    appended: AtomicU64,
    /// The highest sequence number whose transaction has ended (told by the writer).
    settled: watch::Sender<u64>,
    /// The segments again, for emptying one without holding the appenders' lock.
    emptying: [File; 2],
    /// Whether a failed write was said in the log (once: at a full disk it would be every
    /// reply).
    said: std::sync::atomic::AtomicBool,
}

struct State {
    files: [File; 2],
    /// The segment appends go to.
    cur: usize,
    /// Bytes in it.
    bytes: u64,
    /// The next entry's sequence number.
    next: u64,
    /// The last sequence number in the other segment, while it holds entries not yet settled.
    sealed: Option<u64>,
    /// A failed write could not be cut back off its segment: no more appends (the store then
    /// forwards replies after their commit, as without a log).
    broken: bool,
}

/// A record encoded for the log, its sequence number still to come ([`Journal::append`]).
pub(crate) struct Encoded {
    buf: Vec<u8>,
    /// The CRC of the body so far; the sequence number is added at append.
    crc: crc32fast::Hasher,
}

/// An appended entry. The appenders' lock is held until it is dropped, so whatever is done
/// meanwhile (queueing the record for the writer) keeps the log's order.
pub(crate) struct Appended<'a> {
    pub(crate) seq: u64,
    _state: MutexGuard<'a, State>,
}

/// The segments' paths beside the database `db`.
pub(crate) fn paths(db: &Path) -> [PathBuf; 2] {
    let name = |i: u8| {
        let mut p = db.as_os_str().to_owned();
        p.push(format!("-log{i}"));
        PathBuf::from(p)
    };
    [name(0), name(1)]
}

fn open_segment(path: &Path, append: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).read(true);
    if append {
        o.append(true);
    } else {
        o.write(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

impl Journal {
    /// Opens the log beside the database `db`, whose transactions have committed every entry
    /// up to `committed`. Returns the log and what it holds beyond `committed`, in order: the
    /// caller commits those, then calls [`Journal::start`]. A damaged entry ends its segment
    /// (said in the log).
    pub(crate) fn open(db: &Path, committed: u64) -> io::Result<(Journal, Vec<(u64, Stored)>)> {
        let paths = paths(db);
        let mut pending = Vec::new();
        let mut last = committed;
        for path in &paths {
            for (seq, rec) in read_segment(path)? {
                last = last.max(seq);
                if seq > committed {
                    pending.push((seq, rec));
                }
            }
        }
        pending.sort_by_key(|(seq, _)| *seq);
        let files = [open_segment(&paths[0], true)?, open_segment(&paths[1], true)?];
        let emptying = [open_segment(&paths[0], false)?, open_segment(&paths[1], false)?];
        let state = State { files, cur: 0, bytes: 0, next: last + 1, sealed: None, broken: false };
        let journal = Journal {
            state: Mutex::new(state),
            appended: AtomicU64::new(last),
            settled: watch::Sender::new(last),
            emptying,
            said: std::sync::atomic::AtomicBool::new(false),
        };
        Ok((journal, pending))
    }

    /// Empties both segments: what they held has been committed.
    pub(crate) fn start(&self) -> io::Result<()> {
        let _state = lock(&self.state);
        for f in &self.emptying {
            f.set_len(0)?;
        }
        Ok(())
    }

    /// Appends `entry` (one `write`). On an error nothing of it stays in the log.
    pub(crate) fn append(&self, entry: &mut Encoded) -> io::Result<Appended<'_>> {
        let mut s = lock(&self.state);
        if s.broken {
            return Err(io::Error::other("the reply log is off since a write to it failed"));
        }
        if s.bytes >= SEGMENT && s.sealed.is_none() {
            s.sealed = Some(s.next - 1);
            s.cur ^= 1;
            s.bytes = 0;
        }
        let seq = s.next;
        let mut crc = entry.crc.clone();
        crc.update(&seq.to_le_bytes());
        entry.buf[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
        entry.buf[8..16].copy_from_slice(&seq.to_le_bytes());
        let cur = s.cur;
        if let Err(e) = (&s.files[cur]).write_all(&entry.buf) {
            // A partial entry would end the replay of every entry after it: cut it off.
            let keep = s.bytes;
            if s.files[cur].set_len(keep).is_err() {
                s.broken = true;
            }
            if !self.said.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    error = %e,
                    off = s.broken,
                    "history: a write to the reply log failed; such replies wait for their commit instead (said once)"
                );
            }
            return Err(e);
        }
        s.bytes += entry.buf.len() as u64;
        s.next += 1;
        self.appended.store(seq, Ordering::Release);
        Ok(Appended { seq, _state: s })
    }

    /// Every entry up to `seq` has had its transaction (from the writer, after each one that
    /// carried logged records). Frees the other segment once all of it is settled.
    pub(crate) fn settled(&self, seq: u64) {
        self.settled.send_if_modified(|s| {
            let newer = seq > *s;
            if newer {
                *s = seq;
            }
            newer
        });
        let other = {
            let s = lock(&self.state);
            match s.sealed {
                Some(last) if seq >= last => s.cur ^ 1,
                _ => return,
            }
        };
        // Emptied outside the lock: truncating a file may wait for the file system's journal.
        match self.emptying[other].set_len(0) {
            Ok(()) => lock(&self.state).sealed = None,
            Err(e) => {
                tracing::warn!(error = %e, "history: emptying a reply log segment failed; tried again later")
            }
        }
    }

    /// Waits until every entry appended before this call has been settled (at most
    /// [`CATCH_UP`]).
    pub(crate) async fn caught_up(&self) {
        let target = self.appended.load(Ordering::Acquire);
        let mut rx = self.settled.subscribe();
        let _ = tokio::time::timeout(CATCH_UP, rx.wait_for(|s| *s >= target)).await;
    }

    /// At the writer's end: empties the log when everything in it has been committed, so a
    /// clean stop leaves nothing to replay.
    pub(crate) fn close(&self) {
        if *self.settled.borrow() >= self.appended.load(Ordering::Acquire) {
            let _ = self.start();
        }
    }
}

/// `rec` encoded for [`Journal::append`].
pub(crate) fn encode(rec: &Stored) -> Encoded {
    let mut buf = Vec::with_capacity(HEAD + rec.bytes() + 14 * 4 + 16);
    buf.extend_from_slice(&[0; HEAD]);
    for text in [
        rec.room.as_str(),
        &rec.tag,
        rec.kind.as_str(),
        &rec.req_id,
        &rec.pc,
        &rec.device,
        &rec.target,
        &rec.request,
        &rec.result,
    ] {
        put(&mut buf, Some(text));
    }
    for text in [&rec.device_name, &rec.cookie, &rec.app_info, &rec.error, &rec.cut] {
        put(&mut buf, text.as_deref());
    }
    buf.extend_from_slice(&rec.sent_at.to_le_bytes());
    buf.extend_from_slice(&rec.replied_at.to_le_bytes());
    let len = (buf.len() - HEAD) as u32;
    buf[0..4].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&buf[HEAD..]);
    Encoded { buf, crc }
}

fn put(buf: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => {
            buf.extend_from_slice(&(t.len() as u32).to_le_bytes());
            buf.extend_from_slice(t.as_bytes());
        }
        None => buf.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

/// The entries of one segment, up to its end or its first damaged entry.
fn read_segment(path: &Path) -> io::Result<Vec<(u64, Stored)>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        match entry(&data[at..]) {
            Some((seq, rec, size)) => {
                out.push((seq, rec));
                at += size;
            }
            None => {
                tracing::warn!(
                    segment = %path.display(),
                    at,
                    bytes = data.len() - at,
                    "history: a damaged entry ends this reply log segment (a power cut?); what follows it is not replayed"
                );
                break;
            }
        }
    }
    Ok(out)
}

/// The entry at the start of `data`, with its size; `None` if it is torn or damaged.
fn entry(data: &[u8]) -> Option<(u64, Stored, usize)> {
    let head = data.get(..HEAD)?;
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
    if len > MAX_BODY {
        return None;
    }
    let body = data.get(HEAD..HEAD + len)?;
    let mut check = crc32fast::Hasher::new();
    check.update(body);
    check.update(&seq.to_le_bytes());
    if check.finalize() != crc {
        return None;
    }
    Some((seq, decode(body)?, HEAD + len))
}

fn decode(body: &[u8]) -> Option<Stored> {
    let mut c = Cursor(body);
    let room = c.text()?;
    let tag = c.text()?;
    let kind = Kind::parse(&c.text()?)?;
    let (req_id, pc, device, target) = (c.text()?, c.text()?, c.text()?, c.text()?);
    let (request, result) = (c.text()?, c.text()?);
    let (device_name, cookie, app_info, error, cut) = (c.opt()?, c.opt()?, c.opt()?, c.opt()?, c.opt()?);
    let (sent_at, replied_at) = (c.u64()?, c.u64()?);
    c.0.is_empty().then_some(Stored {
        room,
        tag,
        kind,
        req_id,
        pc,
        device,
        device_name,
        target,
        request,
        result,
        cookie,
        app_info,
        error,
        cut,
        sent_at,
        replied_at,
    })
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn opt(&mut self) -> Option<Option<String>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        if len == u32::MAX {
            return Some(None);
        }
        let bytes = self.take(len as usize)?.to_vec();
        Some(Some(String::from_utf8(bytes).ok()?))
    }

    fn text(&mut self) -> Option<String> {
        self.opt()?
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn rec(n: u64, result_bytes: usize) -> Stored {
        Stored {
            room: "room".into(),
            tag: "tag".into(),
            kind: if n % 2 == 0 { Kind::Post } else { Kind::Call },
            req_id: format!("r{n}"),
            pc: "pc-1".into(),
            device: "dev-1".into(),
            device_name: (n % 3 == 0).then(|| "Pixel 8 ✓".into()),
            target: "https://example.test/x".into(),
            request: "{\"a\":1}".into(),
            result: format!("\"{}\"", "x".repeat(result_bytes)),
            cookie: Some("sid=1".into()),
            app_info: None,
            error: (n % 5 == 0).then(|| "{\"code\":\"e\"}".into()),
            cut: None,
            sent_at: 1_700_000_000_000 + n,
            replied_at: 1_700_000_000_010 + n,
        }
    }

    fn append(j: &Journal, r: &Stored) -> u64 {
        j.append(&mut encode(r)).unwrap().seq
    }

    fn db(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("h.db")
    }

    #[test]
    fn entries_not_yet_committed_come_back_in_order_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (j, pending) = Journal::open(&db(&dir), 0).unwrap();
        assert!(pending.is_empty());
        j.start().unwrap();
        let records: Vec<Stored> = (1..=20).map(|n| rec(n, n as usize * 7)).collect();
        let seqs: Vec<u64> = records.iter().map(|r| append(&j, r)).collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
        drop(j); // a crash: nothing committed past 12
        let (j, pending) = Journal::open(&db(&dir), 12).unwrap();
        let got: Vec<u64> = pending.iter().map(|(s, _)| *s).collect();
        assert_eq!(got, (13..=20).collect::<Vec<_>>());
        for (seq, r) in &pending {
            let want = &records[*seq as usize - 1];
            assert_eq!(format!("{r:?}"), format!("{want:?}"));
        }
        // Numbering goes on after the highest entry seen.
        j.start().unwrap();
        assert_eq!(append(&j, &rec(21, 1)), 21);
    }

    #[test]
    fn a_torn_or_damaged_entry_ends_its_segment_and_nothing_before_it_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&db(&dir), 0).unwrap();
        j.start().unwrap();
        for n in 1..=5 {
            append(&j, &rec(n, 10));
        }
        drop(j);
        let seg = paths(&db(&dir))[0].clone();
        let whole = std::fs::read(&seg).unwrap();
        // Torn: the last entry's tail missing (a write cut short).
        std::fs::write(&seg, &whole[..whole.len() - 3]).unwrap();
        let (_, pending) = Journal::open(&db(&dir), 0).unwrap();
        assert_eq!(pending.len(), 4);
        // Damaged: one byte of the third entry's body changed.
        let mut bad = whole.clone();
        let third = 2 * (whole.len() / 5) + HEAD + 5;
        bad[third] ^= 0x40;
        std::fs::write(&seg, &bad).unwrap();
        let (_, pending) = Journal::open(&db(&dir), 0).unwrap();
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1, 2]);
        // Garbage of the right length is not a record either.
        std::fs::write(&seg, [0u8; 64]).unwrap();
        let (_, pending) = Journal::open(&db(&dir), 0).unwrap();
        assert!(pending.is_empty());
    }

    #[test]
    fn segments_take_turns_and_a_settled_one_is_emptied_so_the_log_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&db(&dir), 0).unwrap();
        j.start().unwrap();
        let [p0, p1] = paths(&db(&dir));
        let size = |p: &Path| std::fs::metadata(p).unwrap().len();
        let big = rec(0, 256 * 1024);
        let per_segment = SEGMENT / encode(&big).buf.len() as u64 + 1;
        // Nothing settled: the first segment fills, then the second takes the appends.
        let mut last = 0;
        for _ in 0..per_segment + 2 {
            last = append(&j, &big);
        }
        assert!(size(&p0) >= SEGMENT && size(&p1) > 0, "{} {}", size(&p0), size(&p1));
        // The second cannot hand over while the first is not settled: it grows.
        for _ in 0..per_segment {
            last = append(&j, &big);
        }
        assert!(size(&p1) >= SEGMENT);
        let before = size(&p0);
        j.settled(per_segment - 1);
        assert_eq!(size(&p0), before, "the first segment still holds an unsettled entry");
        j.settled(per_segment);
        assert_eq!(size(&p0), 0, "settled, the first segment is emptied");
        // The next append goes to the emptied one.
        let next = append(&j, &big);
        assert_eq!(next, last + 1);
        assert!(size(&p0) > 0);
        // Everything settled and the writer gone: a clean stop leaves nothing to replay.
        j.settled(next);
        j.close();
        assert_eq!((size(&p0), size(&p1)), (0, 0));
        let (_, pending) = Journal::open(&db(&dir), 0).unwrap();
        assert!(pending.is_empty());
    }

    #[tokio::test]
    async fn a_read_waits_for_what_was_logged_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&db(&dir), 0).unwrap();
        let j = std::sync::Arc::new(j);
        j.start().unwrap();
        j.caught_up().await; // nothing logged: at once
        let seq = append(&j, &rec(1, 1));
        let reader = tokio::spawn({
            let j = j.clone();
            async move { j.caught_up().await }
        });
        tokio::task::yield_now().await;
        assert!(!reader.is_finished());
        j.settled(seq);
        tokio::time::timeout(Duration::from_secs(2), reader).await.unwrap().unwrap();
    }

    /// The journal's segment handles replaced by read-only ones: every write fails.
    pub(crate) fn break_writes(j: &Journal, db: &Path) {
        let mut s = lock(&j.state);
        for (i, p) in paths(db).iter().enumerate() {
            s.files[i] = File::open(p).unwrap();
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind_and_a_write_that_cannot_be_cut_back_turns_the_log_off() {
        let dir = tempfile::tempdir().unwrap();
        let (j, _) = Journal::open(&db(&dir), 0).unwrap();
        j.start().unwrap();
        assert_eq!(append(&j, &rec(1, 10)), 1);
        break_writes(&j, &db(&dir));
        assert!(j.append(&mut encode(&rec(2, 10))).is_err());
        // A read-only handle cannot cut the file back either: the log is off from now on.
        let e = j.append(&mut encode(&rec(3, 10))).err().expect("off");
        assert!(e.to_string().contains("off"), "{e}");
        drop(j);
        let (_, pending) = Journal::open(&db(&dir), 0).unwrap();
        assert_eq!(pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(), vec![1]);
    }

    #[cfg(unix)]
    #[test]
    fn segments_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let _ = Journal::open(&db(&dir), 0).unwrap();
        for p in paths(&db(&dir)) {
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
