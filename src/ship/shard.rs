//! Shipping one shard. A reader thread scans the log from the cursor and hands over
//! batches of COPY lines while this thread commits the one before it, so reading and
//! PostgreSQL's work overlap. Each batch is one transaction with the cursor.
//!
//! A batch PostgreSQL refuses for good is split, and its halves shipped, until the one
//! record it refuses is found. A value it cannot hold (class 22, data exception, or 54,
//! program limit: `1e-20000` in jsonb, say) is shipped [`degrade`]d, exactly once, its
//! every byte in `body_raw`, and logged with its id; anything else stops the shard at
//! that record, named by id, segment and offset, and the caller retries it later.

use std::borrow::Cow;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};

use postgres::{Client, Transaction};

use super::recheck::Recheck;
use super::rows::{copy_line, degrade, Degrade};
use super::sync::sync_segments;
use super::{describe, schema, transient, Options, Progress, Stop};
use crate::domain::validate::Validator;
use crate::log::files::list_segments;
use crate::log::record::Record;
use crate::log::recover::{scan_shard_from, Scanned};

/// Why a shard's pass ended early.
pub enum ShardError {
    /// The connection broke: reconnect, then try again.
    Db(postgres::Error),
    /// This shard cannot go on for now: why, naming the record and where it is.
    Failed(String),
    /// Nothing may go on.
    Stop(Stop),
}

/// Records read for one transaction.
struct Batch {
    lines: Vec<u8>,
    records: Vec<Line>,
}

#[derive(Clone, Copy)]
struct Line {
    seq: u64,
    /// Its offset in its segment.
    offset: u64,
    received_ns: u64,
    /// Where its line ends in `lines`.
    end: usize,
    /// It has a key: it goes through the staging table.
    keyed: bool,
}

impl Batch {
    fn new(capacity: usize) -> Batch {
        Batch {
            lines: Vec::with_capacity(capacity * 1200),
            records: Vec::with_capacity(capacity),
        }
    }

    /// A shipped batch back from the committer (its memory already mapped), or a new one.
    fn reuse(used: &Receiver<Batch>, capacity: usize) -> Batch {
        match used.try_recv() {
            Ok(mut batch) => {
                batch.lines.clear();
                batch.records.clear();
                batch
            }
            Err(_) => Batch::new(capacity),
        }
    }

    fn bytes(&self, records: Range<usize>) -> &[u8] {
        let start = match records.start {
            0 => 0,
            i => self.records[i - 1].end,
        };
        &self.lines[start..self.records[records.end - 1].end]
    }

    /// The lines of `records`: those without a key, then those with one.
    fn split(&self, records: Range<usize>) -> (Cow<'_, [u8]>, Cow<'_, [u8]>) {
        let all = self.bytes(records.clone());
        let lines = &self.records[records.clone()];
        if lines.iter().all(|l| !l.keyed) {
            return (Cow::Borrowed(all), Cow::Borrowed(&[]));
        }
        if lines.iter().all(|l| l.keyed) {
            return (Cow::Borrowed(&[]), Cow::Borrowed(all));
        }
        let (mut plain, mut keyed) = (Vec::new(), Vec::new());
        for i in records {
            let into = if self.records[i].keyed {
                &mut keyed
            } else {
                &mut plain
            };
            into.extend_from_slice(self.bytes(i..i + 1));
        }
        (Cow::Owned(plain), Cow::Owned(keyed))
    }
}

/// One shard's pass: what it ships into PostgreSQL.
struct Shipper<'a> {
    client: &'a mut Client,
    opts: &'a Options,
    shard: u16,
    dir: &'a Path,
    /// The cursor: one past the last record committed.
    committed: u64,
    progress: &'a mut Progress,
}

/// Ships shard `shard`'s records (in `dir`) from its cursor on; how many it shipped.
pub fn ship(
    client: &mut Client,
    opts: &Options,
    (shard, dir): (u16, &Path),
    stop: &AtomicBool,
    progress: &mut Progress,
) -> Result<u64, ShardError> {
    let shard_no = i32::from(shard);
    let cursor = schema::cursor(client, (&opts.node, &opts.node_id.0), shard_no)
        .map_err(ShardError::Db)? as u64;
    progress.cursors.insert(shard, cursor);
    let last = schema::last_shipped(client, &opts.node, shard_no, cursor as i64)
        .map_err(ShardError::Db)?;
    let recheck = Recheck::new(last, dir);
    let mut shipper = Shipper {
        client,
        opts,
        shard,
        dir,
        committed: cursor,
        progress,
    };
    let shipped_before = shipper.progress.shipped;
    let (sender, batches) = sync_channel::<Batch>(1);
    let (give_back, used) = channel::<Batch>();
    let (outcome, read) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let batches = (sender, used);
            read(opts, (shard, dir), cursor, recheck, stop, batches)
        });
        let mut outcome = Ok(());
        for batch in &batches {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            outcome = shipper.ship_range(&batch, 0..batch.records.len());
            if outcome.is_err() {
                break;
            }
            // The reader may have ended: then nobody needs it back.
            let _ = give_back.send(batch);
        }
        // The reader stops at its next batch once nobody takes it.
        drop(batches);
        (
            outcome,
            reader.join().expect("the log reader does not panic"),
        )
    });
    outcome?;
    // What was read before any damage is shipped before the damage is reported.
    read.map_err(|why| ShardError::Failed(format!("shard {shard}: {why}")))?;
    Ok(shipper.progress.shipped - shipped_before)
}

/// The reader: scans the shard from `cursor` (from the last shipped record, to check
/// it), sending batches of `opts.batch` records (filling those given back); why it
/// stopped early, if it did.
fn read(
    opts: &Options,
    (shard, dir): (u16, &Path),
    cursor: u64,
    mut recheck: Recheck,
    stop: &AtomicBool,
    (sender, used): (SyncSender<Batch>, Receiver<Batch>),
) -> Result<(), String> {
    let mut out = Batcher::new(opts, sender, used);
    let mut failed: Option<String> = None;
    let mut checked = false;
    let mut next = cursor;
    let scanned = scan_shard_from(
        dir,
        shard,
        recheck.from(cursor),
        |record, at| {
            if failed.is_some() || out.gone || stop.load(Ordering::Relaxed) {
                return;
            }
            if let Some(why) = recheck.observe(record, &at.hash) {
                failed = Some(format!("{why}; stopping"));
                return;
            }
            if record.seq < cursor {
                return;
            }
            if !checked {
                checked = true;
                if let Some(why) = recheck.finish() {
                    failed = Some(format!("{why}; stopping"));
                    return;
                }
            }
            out.append(record, at);
            next = record.seq + 1;
        },
        |_| {},
    );
    if let Some(why) = failed {
        return Err(why);
    }
    out.finish();
    match scanned {
        Err(damage) => Err(format!(
            "stopped at record s{shard}-{next}: shipped up to the damage, stopping: {damage}"
        )),
        Ok(_) if !checked => recheck
            .finish()
            .map_or(Ok(()), |why| Err(format!("{why}; stopping"))),
        Ok(_) => Ok(()),
    }
}

/// The reader's side of the batches: COPY lines appended, full batches sent to the
/// committer, shipped ones taken back to fill again.
struct Batcher<'a> {
    opts: &'a Options,
    validator: Validator,
    batch: Batch,
    sender: SyncSender<Batch>,
    used: Receiver<Batch>,
    /// The committer stopped taking batches.
    gone: bool,
}

impl<'a> Batcher<'a> {
    fn new(opts: &'a Options, sender: SyncSender<Batch>, used: Receiver<Batch>) -> Self {
        Batcher {
            opts,
            validator: Validator::for_stored(),
            batch: Batch::new(opts.batch),
            sender,
            used,
            gone: false,
        }
    }

    /// Appends `record`'s COPY line; sends the batch once it is full.
    fn append(&mut self, record: &Record<'_>, at: &Scanned) {
        let row = (record, &at.hash);
        let lines = &mut self.batch.lines;
        let keyed = copy_line(&mut self.validator, &self.opts.node, row, lines);
        self.batch.records.push(Line {
            seq: record.seq,
            offset: at.offset,
            received_ns: record.received_ns,
            end: self.batch.lines.len(),
            keyed,
        });
        if self.batch.records.len() >= self.opts.batch {
            let next = Batch::reuse(&self.used, self.opts.batch);
            let full = std::mem::replace(&mut self.batch, next);
            self.gone = self.sender.send(full).is_err();
        }
    }

    /// Sends the last batch, if it holds any record and the committer still takes them.
    fn finish(self) {
        if !self.batch.records.is_empty() && !self.gone {
            let _ = self.sender.send(self.batch);
        }
    }
}

/// Why one transaction did not commit.
enum NotCommitted {
    Db(postgres::Error),
    /// The segments could not be synced: what was read may not survive a power cut.
    Sync(String),
    /// The cursor was not where this shipper left it.
    Moved,
}

impl Shipper<'_> {
    /// Ships `records` of `batch`; a batch PostgreSQL refuses is split until the record
    /// it refuses is found.
    fn ship_range(&mut self, batch: &Batch, records: Range<usize>) -> Result<(), ShardError> {
        let (plain, keyed) = batch.split(records.clone());
        let refused = match self.commit(batch, records.clone(), (&plain, &keyed)) {
            Ok(()) => return Ok(()),
            Err(NotCommitted::Db(e)) if !transient(&e) => e,
            Err(other) => return Err(self.fail(batch.records[records.start], other)),
        };
        // A second shipper of this node committed these records first: not theirs to
        // take apart.
        let shard = i32::from(self.shard);
        let first = batch.records[records.start];
        match schema::cursor_now(self.client, &self.opts.node, shard) {
            Ok(now) if now as u64 != self.committed => {
                return Err(self.fail(first, NotCommitted::Moved))
            }
            Ok(_) => {}
            Err(e) => return Err(self.fail(first, NotCommitted::Db(e))),
        }
        if records.len() > 1 {
            let middle = records.start + records.len() / 2;
            self.ship_range(batch, records.start..middle)?;
            return self.ship_range(batch, middle..records.end);
        }
        let line = batch.records[records.start];
        let mut refused = refused;
        for level in [Degrade::Jsonb, Degrade::Fields] {
            if !holds_no_value(&refused) {
                break;
            }
            let why = describe(&refused);
            let degraded = degrade(batch.bytes(records.clone()), level, &why);
            let lines: (&[u8], &[u8]) = match line.keyed {
                false => (&degraded, &[]),
                true => (&[], &degraded),
            };
            match self.commit(batch, records.clone(), lines) {
                Ok(()) => {
                    self.progress.refused += 1;
                    let left_out = match level {
                        Degrade::Jsonb => "its jsonb",
                        Degrade::Fields => "its jsonb and the fields read from its body",
                    };
                    log::warn!(
                        "ship: shard {}: record s{}-{} ({}) shipped without {left_out} \
                         (body_raw holds it exactly): PostgreSQL refused it: {why}",
                        self.shard,
                        self.shard,
                        line.seq,
                        self.place(line)
                    );
                    return Ok(());
                }
                Err(NotCommitted::Db(e)) if !transient(&e) => refused = e,
                Err(other) => return Err(self.fail(line, other)),
            }
        }
        Err(self.fail(line, NotCommitted::Db(refused)))
    }

    /// The error for a transaction of records from `line` on that did not commit.
    fn fail(&self, line: Line, why: NotCommitted) -> ShardError {
        let (shard, seq, place) = (self.shard, line.seq, self.place(line));
        match why {
            NotCommitted::Db(e) if transient(&e) => ShardError::Db(e),
            NotCommitted::Db(e) => ShardError::Failed(format!(
                "shard {shard}: stopped at record s{shard}-{seq} ({place}): PostgreSQL \
                 refused it: {}",
                describe(&e)
            )),
            NotCommitted::Sync(e) => ShardError::Failed(format!(
                "shard {shard}: stopped at record s{shard}-{seq} ({place}): {e}: what was \
                 read may not survive a power cut, so it is not shipped"
            )),
            NotCommitted::Moved => ShardError::Stop(Stop::Fatal(format!(
                "ship: the cursor of node {} shard {shard} moved under this shipper: is \
                 another one shipping the same node?",
                self.opts.node
            ))),
        }
    }

    /// Where record `line` is: its segment and offset.
    fn place(&self, line: Line) -> String {
        let segment = list_segments(self.dir).ok().and_then(|segments| {
            let at = segments.iter().rposition(|s| s.first_seq <= line.seq)?;
            Some(segments[at].path.display().to_string())
        });
        let segment = segment.unwrap_or_else(|| self.dir.display().to_string());
        format!("{segment} at offset {}", line.offset)
    }

    /// One transaction: COPY the lines of `records` of `batch` (those without a key
    /// into the table, those with one into the staging table, then moved), advance the
    /// cursor past them. The segments they were read from are synced first: the
    /// shipper reads records as soon as they are written, and one not yet on stable
    /// storage could be lost to a power cut after PostgreSQL has it (a row the log no
    /// longer holds, for a record that, with durability `sync`, was never acknowledged).
    fn commit(
        &mut self,
        batch: &Batch,
        records: Range<usize>,
        (plain, keyed): (&[u8], &[u8]),
    ) -> Result<(), NotCommitted> {
        let first = batch.records[records.start];
        let last = batch.records[records.end - 1];
        sync_segments(self.dir, first.seq).map_err(|e| NotCommitted::Sync(e.to_string()))?;
        let db = NotCommitted::Db;
        let mut tx = self.client.transaction().map_err(db)?;
        if !plain.is_empty() {
            copy(&mut tx, &schema::copy_records(), plain)?;
        }
        if !keyed.is_empty() {
            copy(&mut tx, &schema::copy_staged(), keyed)?;
            schema::move_staged(&mut tx).map_err(db)?;
        }
        let count = records.len() as i64;
        let (shard, next) = (i32::from(self.shard), last.seq + 1);
        let moved = schema::advance(
            &mut tx,
            &self.opts.node,
            shard,
            self.committed as i64,
            next as i64,
            count,
        )
        .map_err(db)?;
        if !moved {
            return Err(NotCommitted::Moved);
        }
        tx.commit().map_err(db)?;
        self.committed = next;
        self.progress.shipped += count as u64;
        self.progress.last_ns = last.received_ns;
        self.progress.cursors.insert(self.shard, next);
        self.progress.report();
        Ok(())
    }
}

/// One COPY of `lines` by `statement` in `tx`.
fn copy(tx: &mut Transaction<'_>, statement: &str, lines: &[u8]) -> Result<(), NotCommitted> {
    use std::io::Write;
    let mut writer = tx.copy_in(statement).map_err(NotCommitted::Db)?;
    if let Err(e) = writer.write_all(lines) {
        // What PostgreSQL said, when it was PostgreSQL that stopped the COPY.
        return Err(match writer.finish() {
            Err(e) => NotCommitted::Db(e),
            Ok(_) => NotCommitted::Sync(format!("COPY: {e}")),
        });
    }
    writer.finish().map(drop).map_err(NotCommitted::Db)
}

/// Whether PostgreSQL refused a value rather than the statement or the session: a data
/// exception (class 22) or a program limit (class 54).
fn holds_no_value(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("54"))
}
