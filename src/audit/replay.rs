//! `sendgate audit replay`.
//!
//! A decision is a pure function of its stage's input log (see
//! docs/design.md, "The clock is the log"), and the stage logs are retained
//! like the input topics. So the replay reads each stage partition's log
//! from its start up to what the live processor has committed, feeds it
//! through the same stage code into scratch state, and compares every
//! decision it derives with the one on the decisions topic, by the intent
//! record it answers. Then, partition by partition, it compares the state
//! it rebuilt with the state the stage's changelog records (see
//! `super::state`). It only reads live topics; it writes nothing to them.

use super::recorded::{digest, RecordedIndex, RecordedRef};
use super::state::{self, StateComparison};
use crate::cli::kafka_io::{self, ReadRecord};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::PolicyBook;
use crate::stage::pipeline::{self, StageOutput};
use crate::stage::{make_stage, SenderConfig, StageError, StageKind};
use crate::state::rocks::RocksStore;
use crate::state::StageStore;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Which decisions are compared: by decision time, or by the offsets of the
/// intents they answer on the intents topic (`partition:offset,...`).
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Time(i64),
    Offsets(HashMap<i32, i64>),
}

/// Whether a decision lies in [from, to).
pub fn within(from: &Option<Bound>, to: &Option<Bound>, d: &Decision) -> bool {
    from.as_ref().is_none_or(|b| b.reached_by(d)) && to.as_ref().is_none_or(|b| !b.reached_by(d))
}

impl Bound {
    /// `2026-11-20T00:00:00Z` or `0:1200,1:900`.
    pub fn parse(s: &str) -> Result<Bound, String> {
        if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(Bound::Time(t.timestamp_millis()));
        }
        let mut offsets = HashMap::new();
        for part in s.split(',') {
            let (p, o) = part.split_once(':').ok_or_else(|| format!("{s:?} is neither a time (RFC 3339, e.g. 2026-11-20T00:00:00Z) nor offsets of the intents topic (PARTITION:OFFSET,...)"))?;
            let p: i32 = p
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: partition is not a number"))?;
            let o: i64 = o
                .trim()
                .parse()
                .map_err(|_| format!("{part:?}: offset is not a number"))?;
            offsets.insert(p, o);
        }
        Ok(Bound::Offsets(offsets))
    }

    /// Whether a decision is at or after this bound.
    pub fn reached_by(&self, d: &Decision) -> bool {
        match self {
            Bound::Time(t) => d.decided_at_ms >= *t,
            Bound::Offsets(o) => o
                .get(&d.source.partition)
                .is_none_or(|start| d.source.offset >= *start),
        }
    }
}

pub struct ReplayOptions {
    pub from: Option<Bound>,
    pub to: Option<Bound>,
    /// Compare with this topic instead of the namespace's decisions topic.
    pub decisions_topic: Option<String>,
    /// Where the scratch state goes (removed afterwards).
    pub scratch: PathBuf,
    pub sender: SenderConfig,
    /// How many differences to keep for the report.
    pub keep: usize,
    /// Also time a plain read of the same stage records (the baseline the
    /// replay's rate is compared with).
    pub baseline: bool,
    /// At most this many recorded decisions are kept in memory; an audit
    /// with more keeps them in the scratch directory.
    pub in_memory_decisions: u64,
}

/// Where a recorded decision points: all the look-up needs of it (the rest
/// of the record is skipped, not decoded).
#[derive(serde::Deserialize)]
struct Answers {
    source: SourceRef,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub intent_id: String,
    pub source: SourceRef,
    /// (field, recorded, replayed); empty with `missing`.
    pub fields: Vec<(String, String, String)>,
    /// No decision for this intent record on the decisions topic.
    pub missing: bool,
}

#[derive(Debug, Default)]
pub struct ReplayReport {
    pub stage_records: u64,
    /// Stage records that did not decode: their decisions are unchecked.
    pub undecodable: u64,
    pub recorded_decisions: u64,
    pub compared: u64,
    pub differences: u64,
    pub first: Vec<Difference>,
    /// Candidate policies' pairs (shadow-decisions topic) re-derived and compared.
    pub shadow_compared: u64,
    pub shadow_differences: u64,
    /// The first differing pairs: (candidate scope, intent id, missing on the topic).
    pub shadow_first: Vec<(String, String, bool)>,
    pub elapsed: Duration,
    /// The part of `elapsed` spent reading the recorded decisions.
    pub recorded_elapsed: Duration,
    /// With `baseline`: the same stage records read without processing.
    pub raw: Option<(u64, Duration)>,
    /// With `baseline`: the same stage records read and Avro-decoded, with
    /// no stage code and no state (what is left is the stages' work).
    pub decoded: Option<(u64, Duration)>,
    /// The rebuilt state of every stage partition compared with its changelog.
    pub state: StateComparison,
    /// Stage partitions whose state was not compared: the processor
    /// committed more of them during the audit, so their changelog may hold
    /// state of records past the replayed ones.
    pub state_not_compared: Vec<(StageKind, i32)>,
    /// The part of the workers' time spent on the state check (reading the
    /// changelogs, comparing), summed over them: worker time, not wall time.
    pub state_elapsed: Duration,
}

/// Progress, for a progress line: records read so far, of how many.
pub struct Progress {
    pub read: u64,
    pub total: u64,
}

pub fn replay(
    cfg: &Config,
    opts: &ReplayOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<ReplayReport, String> {
    let topo = cfg.topology()?;
    let ranges = committed_ranges(cfg)?;
    let raw = if opts.baseline {
        Some(raw_read(cfg, &ranges, false)?)
    } else {
        None
    };
    let decoded = if opts.baseline {
        Some(raw_read(cfg, &ranges, true)?)
    } else {
        None
    };
    let started = Instant::now();
    let total: u64 = ranges
        .iter()
        .flat_map(|(_, _, r)| r.values())
        .map(|(s, e)| (e - s).max(0) as u64)
        .sum();

    std::fs::create_dir_all(&opts.scratch)
        .map_err(|e| format!("cannot create {}: {e}", opts.scratch.display()))?;
    let result = (|| {
        // The recorded decisions, by the intent record they answer: a digest
        // of each and where it is, not its bytes (a differing one is read
        // again for its fields); see `super::recorded` for where they live.
        let decisions_topic = opts
            .decisions_topic
            .clone()
            .unwrap_or_else(|| topo.full("decisions"));
        let marks = kafka_io::watermarks(cfg, &decisions_topic)?;
        let expected = marks.values().map(|(s, e)| (e - s).max(0) as u64).sum();
        let recorded = RecordedIndex::new(expected, opts.in_memory_decisions, &opts.scratch.join("recorded"))?;
        let recorded_n = AtomicU64::new(0);
        // The candidates' pairs, by candidate scope and intent record.
        let shadow_topic = topo.full("shadow-decisions");
        let shadow_marks = kafka_io::watermarks(cfg, &shadow_topic)?;
        let shadow_expected = shadow_marks.values().map(|(s, e)| (e - s).max(0) as u64).sum();
        let shadow_recorded = RecordedIndex::new(shadow_expected, opts.in_memory_decisions, &opts.scratch.join("recorded-shadow"))?;
        let mut batch = Vec::new();
        kafka_io::read_ranges(cfg, &shadow_topic, &shadow_marks, |r: ReadRecord| {
            let bytes = r.payload.unwrap_or_default();
            let s: ShadowDecision = codec::decode(RecordType::ShadowDecision, bytes).map_err(|e| format!("{shadow_topic} [{}] @{}: {e}", r.partition, r.offset))?;
            batch.push((shadow_key(&s), RecordedRef { digest: digest(bytes), partition: r.partition, offset: r.offset }));
            if batch.len() >= 10_000 {
                shadow_recorded.add(std::mem::take(&mut batch))?;
            }
            Ok(())
        })?;
        shadow_recorded.add(batch)?;
        on_workers(marks.into_iter().collect(), |(_, (s, e))| e - s, |(p, range)| {
            let mut batch = Vec::new();
            kafka_io::read_ranges(
                cfg,
                &decisions_topic,
                &HashMap::from([(p, range)]),
                |r: ReadRecord| {
                    let bytes = r.payload.unwrap_or_default();
                    let d: Answers = codec::decode(RecordType::Decision, &bytes).map_err(|e| {
                        format!("{decisions_topic} [{}] @{}: {e}", r.partition, r.offset)
                    })?;
                    let at = RecordedRef { digest: digest(&bytes), partition: r.partition, offset: r.offset };
                    batch.push((d.source, at));
                    if batch.len() >= 10_000 {
                        recorded.add(std::mem::take(&mut batch))?;
                    }
                    Ok(())
                },
            )
            .and_then(|n| {
                recorded_n.fetch_add(n, Ordering::Relaxed);
                recorded.add(batch)
            })
            .map_err(|e| format!("{decisions_topic} [{p}]: {e}"))
        })?;

        // Every stage partition's log is independent of the others (its own
        // state, its own clock): work units for a thread per core, longest
        // first so that no long partition starts last.
        let units: Vec<(StageKind, &str, i32, (i64, i64))> = ranges
            .iter()
            .flat_map(|(kind, topic, r)| {
                r.iter()
                    .filter(|(_, (s, e))| e > s)
                    .map(move |(p, range)| (*kind, topic.as_str(), *p, *range))
            })
            .collect();
        // Where each changelog partition ends (read after the committed
        // offsets the replay stops at): the state check reads it to there.
        let mut changelog_ends = HashMap::new();
        for kind in StageKind::ALL {
            let topic = topo.full(&kind.changelog());
            changelog_ends.insert(kind, (kafka_io::watermarks(cfg, &topic)?, topic));
        }
        // Each partition's state comparison, with the committed offset it was replayed to.
        let states: Mutex<Vec<(StageKind, i32, i64, StateComparison)>> = Mutex::new(Vec::new());
        let state_elapsed = Mutex::new(Duration::ZERO);
        let recorded_elapsed = started.elapsed();
        // The derived decisions go to one comparing thread, so that a long
        // stage partition (a busy sender domain) is not also held up by the
        // look-ups: the processing of a partition is sequential, its
        // comparison need not be.
        let read = AtomicU64::new(0);
        let undecodable = AtomicU64::new(0);
        let (to_compare, derived) = std::sync::mpsc::sync_channel::<Derived>(COMPARE_QUEUE);
        let (replayed, compared) = std::thread::scope(|s| {
            let comparer = s.spawn(|| {
                let mut c = Comparison::new(opts, &recorded, &shadow_recorded);
                for (decisions, pairs) in derived {
                    decisions.iter().try_for_each(|d| c.add(d))?;
                    pairs.iter().try_for_each(|p| c.add_shadow(p))?;
                }
                Ok::<_, String>(c)
            });
            let replayed = on_workers(units, |(_, _, _, (s, e))| e - s, |(kind, topic, p, range)| {
                let (ends, changelog) = &changelog_ends[&kind];
                let changelog_range = ends.get(&p).copied().ok_or_else(|| format!("{changelog} has no partition {p}: a changelog has as many partitions as its stage topic"))?;
                let compared = replay_stage(
                    cfg,
                    opts,
                    kind,
                    topic,
                    (changelog, changelog_range),
                    (p, range),
                    &to_compare,
                    &read,
                    &undecodable,
                    &state_elapsed,
                    progress,
                    total,
                )
                .map_err(|e| format!("{} [{p}]: {e}", kind.name()))?;
                states.lock().expect("not poisoned").push((kind, p, range.1, compared));
                Ok(())
            });
            drop(to_compare);
            (replayed, comparer.join().expect("the comparing thread does not panic"))
        });
        // A comparison that failed stopped the replay: its error is the cause.
        let compared = compared?;
        replayed?;
        let mut report = ReplayReport {
            recorded_decisions: recorded_n.load(Ordering::Relaxed),
            undecodable: undecodable.load(Ordering::Relaxed),
            compared: compared.compared,
            differences: compared.differences,
            shadow_compared: compared.shadow_compared,
            shadow_differences: compared.shadow_differences,
            shadow_first: compared.shadow_found.clone(),
            recorded_elapsed,
            state_elapsed: state_elapsed.into_inner().expect("not poisoned"),
            ..ReplayReport::default()
        };
        report.first = with_fields(cfg, &decisions_topic, compared.found)?;
        // A partition's changelog was read to its end, which is the point
        // its committed offset stands for only if the processor committed
        // nothing more of it since that offset was read: asked again now,
        // after every changelog read, a partition whose offset moved is left
        // out rather than reported as different. (An offset fetch waits for
        // a transaction being committed to settle, so a changelog read that
        // saw a transaction's records is followed by an offset that counts
        // the input of that transaction.)
        let mut states = states.into_inner().expect("not poisoned");
        states.sort_by_key(|(kind, p, _, _)| (StageKind::ALL.iter().position(|k| k == kind), *p));
        let mut now_committed = HashMap::new();
        for kind in StageKind::ALL {
            now_committed.insert(kind, committed_offsets(cfg, kind)?);
        }
        for (kind, p, replayed_to, compared) in states {
            if now_committed[&kind].get(&p) == Some(&replayed_to) {
                report.state.merge(compared, opts.keep);
            } else {
                report.state_not_compared.push((kind, p));
            }
        }
        report.stage_records = read.load(Ordering::Relaxed);
        report.elapsed = started.elapsed();
        report.raw = raw;
        report.decoded = decoded;
        Ok(report)
    })();
    let _ = std::fs::remove_dir_all(&opts.scratch);
    result
}

/// Reads the stage records (a thread per stage) and does nothing with them,
/// or only decodes them: the raw consumer rate of the same records, and the
/// rate with Avro decoding.
fn raw_read(
    cfg: &Config,
    ranges: &[(StageKind, String, HashMap<i32, (i64, i64)>)],
    decode: bool,
) -> Result<(u64, Duration), String> {
    let started = Instant::now();
    let n = AtomicU64::new(0);
    let errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (_, topic, r) in ranges {
            let (n, errors) = (&n, &errors);
            s.spawn(move || {
                if let Err(e) = kafka_io::read_ranges(cfg, topic, r, |r: ReadRecord| {
                    if decode {
                        let env = r.payload.as_deref().map(|b| codec::decode::<StageEnvelope>(RecordType::StageEnvelope, b));
                        std::hint::black_box(env);
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }) {
                    errors.lock().expect("not poisoned").push(e);
                }
            });
        }
    });
    if let Some(e) = errors
        .into_inner()
        .expect("not poisoned")
        .into_iter()
        .next()
    {
        return Err(e);
    }
    Ok((n.load(Ordering::Relaxed), started.elapsed()))
}

/// What the replay derives from a batch of stage records: decisions, and
/// candidate policies' pairs.
type Derived = (Vec<Decision>, Vec<ShadowDecision>);

/// Where a recorded pair is looked up: its candidate's scope and the intent
/// record it answers, as one source reference.
fn shadow_key(s: &ShadowDecision) -> SourceRef {
    let src = &s.candidate.source;
    SourceRef { topic: format!("{}\u{1}{}", s.shadow_scope, src.topic), partition: src.partition, offset: src.offset }
}

/// Derived decisions per message to the comparing thread.
const COMPARE_BATCH: usize = 512;
/// Messages the comparing thread may have waiting (bounded memory).
const COMPARE_QUEUE: usize = 16;

/// Replays one stage partition, sends what it derives to the comparing
/// thread, then compares the state it rebuilt with the partition's changelog.
#[allow(clippy::too_many_arguments)]
fn replay_stage(
    cfg: &Config,
    opts: &ReplayOptions,
    kind: StageKind,
    topic: &str,
    (changelog, changelog_range): (&str, (i64, i64)),
    (partition, range): (i32, (i64, i64)),
    to_compare: &std::sync::mpsc::SyncSender<Derived>,
    read: &AtomicU64,
    undecodable: &AtomicU64,
    state_elapsed: &Mutex<Duration>,
    progress: &(dyn Fn(Progress) + Sync),
    total: u64,
) -> Result<StateComparison, String> {
    const STOPPED: &str = "the comparison stopped";
    let mut last_progress = Instant::now();
    let dir = opts.scratch.join(format!("{}-{partition}", kind.name()));
    let ranges = HashMap::from([(partition, range)]);
    let log = StageLog { cfg, kind, topic, ranges: &ranges, state_dir: &dir, sender: &opts.sender, trace: None };
    let mut batch: Derived = (Vec::with_capacity(COMPARE_BATCH), Vec::new());
    let mut since_progress = 0u32;
    let (bad, mut store) = log.run_keeping_state(|step| {
        since_progress += 1;
        if since_progress == 1024 {
            let n = read.fetch_add(1024, Ordering::Relaxed) + 1024;
            since_progress = 0;
            if last_progress.elapsed() > Duration::from_millis(250) {
                progress(Progress { read: n, total });
                last_progress = Instant::now();
            }
        }
        batch.0.extend(step.out.decisions.iter().cloned());
        batch.1.extend(step.out.shadow.iter().cloned());
        if batch.0.len() + batch.1.len() >= COMPARE_BATCH {
            to_compare.send(std::mem::replace(&mut batch, (Vec::with_capacity(COMPARE_BATCH), Vec::new()))).map_err(|_| STOPPED)?;
        }
        Ok(())
    })?;
    read.fetch_add(u64::from(since_progress), Ordering::Relaxed);
    to_compare.send(batch).map_err(|_| STOPPED)?;
    undecodable.fetch_add(bad, Ordering::Relaxed);
    let started = Instant::now();
    // The last records' writes, committed to the scratch store as the live
    // task commits a transaction's (the same needless tombstones dropped).
    store.prepare_commit();
    store.commit(&HashMap::new()).map_err(|e| e.to_string())?;
    let recorded = state::changelog_state(cfg, changelog, partition, changelog_range)?;
    let compared = state::compare_partition(store.base(), kind, partition, recorded, opts.keep).map_err(|e| e.to_string())?;
    *state_elapsed.lock().expect("not poisoned") += started.elapsed();
    Ok(compared)
}

/// A stage record as read, decoded (None: it does not decode).
struct Decoded {
    partition: i32,
    offset: i64,
    env: Option<StageEnvelope>,
}

/// Records per message from the reading thread to the stage code.
const DECODED_BATCH: usize = 1024;
/// Messages the stage code may have waiting (bounded memory).
const DECODED_QUEUE: usize = 8;
const PROCESSING_STOPPED: &str = "the processing stopped";

/// One record of a stage log as the replay processed it.
pub struct Step<'a> {
    pub partition: i32,
    pub offset: i64,
    pub env: &'a StageEnvelope,
    pub out: &'a StageOutput,
    pub book: &'a PolicyBook,
}

/// A stage's recorded log, replayed through the stage code into scratch state.
pub struct StageLog<'a> {
    pub cfg: &'a Config,
    pub kind: StageKind,
    pub topic: &'a str,
    pub ranges: &'a HashMap<i32, (i64, i64)>,
    /// Where the replayed state goes (a fresh directory).
    pub state_dir: &'a std::path::Path,
    pub sender: &'a SenderConfig,
    /// Record every check of this intent (for explanations).
    pub trace: Option<&'a str>,
}

impl StageLog<'_> {
    /// Replays the log, calling `visit` after each record; returns how many
    /// records did not decode (the live task dead-lettered them, or they
    /// were written with a schema this binary does not know).
    pub fn run(&self, visit: impl FnMut(Step<'_>) -> Result<(), String>) -> Result<u64, String> {
        self.run_keeping_state(visit).map(|(undecodable, _)| undecodable)
    }

    /// As `run`, and returns the replayed state: the writes of the last
    /// records may still be in its overlay (`prepare_commit` and `commit`
    /// move them into its base store).
    pub fn run_keeping_state(
        &self,
        mut visit: impl FnMut(Step<'_>) -> Result<(), String>,
    ) -> Result<(u64, StageStore), String> {
        let stage = make_stage(self.kind, self.sender.clone());
        let (base, _) = RocksStore::open(self.state_dir).map_err(|e| e.to_string())?;
        let mut store = StageStore::new(Box::new(base));
        let mut books: HashMap<i32, PolicyBook> = HashMap::new();
        let mut out = StageOutput {
            trace: self.trace.map(|_| Vec::new()),
            trace_only: self.trace.map(str::to_string),
            ..StageOutput::default()
        };
        let mut pending = 0usize;
        let mut undecodable = 0u64;
        // Reading and decoding run on a thread of their own, a batch ahead
        // of the stage code: a stage partition is processed in order, but
        // its decoding need not wait for it.
        let (to_process, decoded) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(DECODED_QUEUE);
        std::thread::scope(|s| {
            // Owns the sender: the batches end when the reader does.
            let reader = s.spawn(move || {
                let mut batch = Vec::with_capacity(DECODED_BATCH);
                kafka_io::read_ranges(self.cfg, self.topic, self.ranges, |r: ReadRecord| {
                    let env = r.payload.as_deref().and_then(|b| codec::decode::<StageEnvelope>(RecordType::StageEnvelope, b).ok());
                    batch.push(Decoded { partition: r.partition, offset: r.offset, env });
                    if batch.len() >= DECODED_BATCH {
                        to_process.send(std::mem::replace(&mut batch, Vec::with_capacity(DECODED_BATCH))).map_err(|_| PROCESSING_STOPPED.to_string())?;
                    }
                    Ok(())
                })?;
                to_process.send(batch).map_err(|_| PROCESSING_STOPPED.to_string())
            });
            // By reference: a stage envelope is large, and moving each one
            // out of its batch was a visible copy.
            let processed = decoded.iter().try_for_each(|batch| batch.iter().try_for_each(|&Decoded { partition, offset, ref env }| {
                let Some(env) = env else {
                    undecodable += 1;
                    return Ok(());
                };
                let book = books.entry(partition).or_default();
                store.begin_record(partition);
                let mut view = store.view(partition);
                out.clear();
                match pipeline::process(stage.as_ref(), &mut view, book, env, &mut out) {
                    Ok(()) => {}
                    // As the live task: a dead letter, with none of its writes kept.
                    Err(StageError::BadRecord(_)) => {
                        out.clear();
                        store.rollback_record(partition);
                    }
                    Err(StageError::Store(e)) => return Err(e.to_string()),
                }
                pending += 1;
                // Bounded memory: move the overlay into the scratch store now and then.
                if pending >= 20_000 {
                    store.prepare_commit();
                    store.commit(&HashMap::new()).map_err(|e| e.to_string())?;
                    pending = 0;
                }
                visit(Step { partition, offset, env, out: &out, book })
            }));
            // Stops the reader (its next send fails) if processing failed.
            drop(decoded);
            let read = reader.join().expect("the reading thread does not panic");
            match (read, processed) {
                // A failed read ends the batches early: its error is the cause.
                (Err(e), _) if e != PROCESSING_STOPPED => Err(e),
                (_, Err(e)) => Err(e),
                (read, Ok(())) => read,
            }
        })?;
        Ok((undecodable, store))
    }
}

/// What the live processor has committed of each stage's log: every
/// decision of those records is on the decisions topic (same transaction).
pub fn committed_ranges(
    cfg: &Config,
) -> Result<Vec<(StageKind, String, HashMap<i32, (i64, i64)>)>, String> {
    let topo = cfg.topology()?;
    let mut ranges = Vec::new();
    for kind in StageKind::ALL {
        let topic = topo.full(&kind.topic());
        let committed = committed_offsets(cfg, kind)?;
        let marks = kafka_io::watermarks(cfg, &topic)?;
        let mut r = HashMap::new();
        for (p, (low, high)) in marks {
            if low > 0 {
                return Err(format!("{topic} [{p}] starts at offset {low}: records before it were deleted by retention, so its state cannot be rebuilt from the log (raise retention.ms to cover the audit window)"));
            }
            r.insert(p, (0, committed.get(&p).copied().unwrap_or(0).min(high)));
        }
        ranges.push((kind, topic, r));
    }
    Ok(ranges)
}

/// The offsets a stage's consumer group has committed on its topic, by partition.
fn committed_offsets(cfg: &Config, kind: StageKind) -> Result<HashMap<i32, i64>, String> {
    let topic = cfg.topology()?.full(&kind.topic());
    kafka_io::group_offsets(cfg, &format!("{}.{}", cfg.namespace, kind.name()), &topic)
}

/// Runs `work` on every unit, on a thread per core, longest first (by `len`,
/// its offset range) so that no long one starts last; stops at the first
/// error.
fn on_workers<U: Clone + Send + Sync>(
    mut units: Vec<U>,
    len: impl Fn(&U) -> i64,
    work: impl Fn(U) -> Result<(), String> + Sync,
) -> Result<(), String> {
    units.sort_by_key(|u| std::cmp::Reverse(len(u)));
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, units.len().max(1));
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers {
            let (units, next, failed, work) = (&units, &next, &failed, &work);
            s.spawn(move || {
                while let Some(u) = units.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if failed.lock().expect("not poisoned").is_some() {
                        return;
                    }
                    if let Err(e) = work(u.clone()) {
                        failed.lock().expect("not poisoned").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().expect("not poisoned") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The comparison of derived decisions with the recorded ones.
struct Comparison<'a> {
    opts: &'a ReplayOptions,
    recorded: &'a RecordedIndex,
    shadow: &'a RecordedIndex,
    shadow_compared: u64,
    shadow_differences: u64,
    /// The first pairs that differ: (candidate scope, intent id, missing).
    shadow_found: Vec<(String, String, bool)>,
    compared: u64,
    differences: u64,
    /// The first differences (at most `opts.keep`): the difference, where
    /// the recorded decision is (None: missing), and the derived decision.
    found: Vec<(Difference, Option<(i32, i64)>, Decision)>,
    buf: Vec<u8>,
}

impl<'a> Comparison<'a> {
    fn new(opts: &'a ReplayOptions, recorded: &'a RecordedIndex, shadow: &'a RecordedIndex) -> Self {
        Comparison { opts, recorded, shadow, shadow_compared: 0, shadow_differences: 0, shadow_found: Vec::new(), compared: 0, differences: 0, found: Vec::new(), buf: Vec::with_capacity(512) }
    }

    /// A candidate's pair, compared byte for byte with the recorded one.
    fn add_shadow(&mut self, p: &ShadowDecision) -> Result<(), String> {
        if !within(&self.opts.from, &self.opts.to, &p.enforced) {
            return Ok(());
        }
        self.shadow_compared += 1;
        self.buf.clear();
        codec::encode_into(RecordType::ShadowDecision, p, &mut self.buf).map_err(|e| e.to_string())?;
        let recorded = self.shadow.get(&shadow_key(p))?;
        if recorded.is_some_and(|r| r.digest == digest(&self.buf)) {
            return Ok(());
        }
        self.shadow_differences += 1;
        if self.shadow_found.len() < self.opts.keep {
            self.shadow_found.push((p.shadow_scope.clone(), p.intent_id.clone(), recorded.is_none()));
        }
        Ok(())
    }

    fn add(&mut self, d: &Decision) -> Result<(), String> {
        if !within(&self.opts.from, &self.opts.to, d) {
            return Ok(());
        }
        self.compared += 1;
        self.buf.clear();
        codec::encode_into(RecordType::Decision, d, &mut self.buf).map_err(|e| e.to_string())?;
        let at = match self.recorded.get(&d.source)? {
            Some(r) => {
                if r.digest == digest(&self.buf) {
                    return Ok(());
                }
                Some((r.partition, r.offset))
            }
            None => None,
        };
        self.differences += 1;
        if self.found.len() < self.opts.keep {
            let diff = Difference { intent_id: d.intent_id.clone(), source: d.source.clone(), fields: Vec::new(), missing: at.is_none() };
            self.found.push((diff, at, d.clone()));
        }
        Ok(())
    }
}

/// Reads the recorded decisions that differ again, for their fields.
fn with_fields(
    cfg: &Config,
    topic: &str,
    found: Vec<(Difference, Option<(i32, i64)>, Decision)>,
) -> Result<Vec<Difference>, String> {
    let mut ranges: HashMap<i32, (i64, i64)> = HashMap::new();
    for (_, at, _) in &found {
        if let Some((p, o)) = at {
            let r = ranges.entry(*p).or_insert((*o, *o + 1));
            *r = (r.0.min(*o), r.1.max(*o + 1));
        }
    }
    let wanted: std::collections::HashSet<(i32, i64)> =
        found.iter().filter_map(|(_, at, _)| *at).collect();
    let mut recorded: HashMap<(i32, i64), Decision> = HashMap::new();
    kafka_io::read_ranges(cfg, topic, &ranges, |r: ReadRecord| {
        if wanted.contains(&(r.partition, r.offset)) {
            let d = codec::decode(
                RecordType::Decision,
                r.payload.as_deref().unwrap_or_default(),
            )
            .map_err(|e| format!("{topic} [{}] @{}: {e}", r.partition, r.offset))?;
            recorded.insert((r.partition, r.offset), d);
        }
        Ok(())
    })?;
    Ok(found
        .into_iter()
        .map(|(mut diff, at, replayed)| {
            if let Some(r) = at.and_then(|at| recorded.get(&at)) {
                diff.fields = field_differences(r, &replayed);
            }
            diff
        })
        .collect())
}

/// Every field that differs: (name, recorded, replayed).
pub fn field_differences(
    recorded: &Decision,
    replayed: &Decision,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut check = |name: &str, a: String, b: String| {
        if a != b {
            out.push((name.to_string(), a, b));
        }
    };
    check(
        "intent_id",
        recorded.intent_id.clone(),
        replayed.intent_id.clone(),
    );
    check("tenant", recorded.tenant.clone(), replayed.tenant.clone());
    check("sender", recorded.sender.clone(), replayed.sender.clone());
    check(
        "recipient",
        recorded.recipient.clone(),
        replayed.recipient.clone(),
    );
    check(
        "status",
        recorded.status.as_str().into(),
        replayed.status.as_str().into(),
    );
    check("reason", recorded.reason.clone(), replayed.reason.clone());
    check(
        "retry_at_ms",
        format!("{:?}", recorded.retry_at_ms),
        format!("{:?}", replayed.retry_at_ms),
    );
    check(
        "usage",
        format!("{:?}", recorded.usage),
        format!("{:?}", replayed.usage),
    );
    check(
        "policy_version",
        recorded.policy_version.to_string(),
        replayed.policy_version.to_string(),
    );
    check(
        "decided_at_ms",
        recorded.decided_at_ms.to_string(),
        replayed.decided_at_ms.to_string(),
    );
    check(
        "source",
        format!("{:?}", recorded.source),
        format!("{:?}", replayed.source),
    );
    check(
        "stage",
        format!("{:?}", recorded.stage),
        format!("{:?}", replayed.stage),
    );
    check(
        "replayed",
        recorded.replayed.to_string(),
        replayed.replayed.to_string(),
    );
    out
}
