//! `sendgate audit replay`.
//!
//! A decision is a pure function of its stage's input log (see
//! docs/design.md, "The clock is the log"), and the stage logs are retained
//! like the input topics. So the replay reads each stage partition's log
//! from its start up to what the live processor has committed, feeds it
//! through the same stage code into scratch state, and compares every
//! decision it derives with the one on the decisions topic, by the intent
//! record it answers. It only reads live topics; it writes nothing to them.

use crate::cli::kafka_io::{self, ReadRecord};
use crate::codec::{self, RecordType};
use crate::config::Config;
use crate::model::*;
use crate::policy::PolicyBook;
use crate::stage::pipeline::{self, StageOutput};
use crate::stage::{make_stage, SenderConfig, StageError, StageKind};
use crate::state::rocks::RocksStore;
use crate::state::{BaseStore, StageStore};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    pub elapsed: Duration,
    /// With `baseline`: the same stage records read without processing.
    pub raw: Option<(u64, Duration)>,
    /// With `baseline`: the same stage records read and Avro-decoded, with
    /// no stage code and no state (what is left is the stages' work).
    pub decoded: Option<(u64, Duration)>,
}

/// Progress, for a progress line: records read so far, of how many.
pub struct Progress {
    pub read: u64,
    pub total: u64,
}

fn source_key(s: &SourceRef) -> Vec<u8> {
    format!("{}\u{0}{}\u{0}{:020}", s.topic, s.partition, s.offset).into_bytes()
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
        // of each and where it is, not its bytes (a tenth of the size to
        // write; a differing one is read again for its fields).
        let (recorded, _) =
            RocksStore::open(&opts.scratch.join("recorded")).map_err(|e| e.to_string())?;
        let decisions_topic = opts
            .decisions_topic
            .clone()
            .unwrap_or_else(|| topo.full("decisions"));
        let marks = kafka_io::watermarks(cfg, &decisions_topic)?;
        let recorded_n = AtomicU64::new(0);
        on_workers(marks.into_iter().collect(), |(_, (s, e))| e - s, |(p, range)| {
            let mut batch = Vec::new();
            kafka_io::read_ranges(
                cfg,
                &decisions_topic,
                &HashMap::from([(p, range)]),
                |r: ReadRecord| {
                    let bytes = r.payload.unwrap_or_default();
                    let d: Decision = codec::decode(RecordType::Decision, &bytes).map_err(|e| {
                        format!("{decisions_topic} [{}] @{}: {e}", r.partition, r.offset)
                    })?;
                    batch.push((
                        source_key(&d.source),
                        Some(
                            RecordedRef {
                                digest: digest(&bytes),
                                partition: r.partition,
                                offset: r.offset,
                            }
                            .to_bytes(),
                        ),
                    ));
                    if batch.len() >= 10_000 {
                        recorded
                            .write(std::mem::take(&mut batch))
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                },
            )
            .and_then(|n| {
                recorded_n.fetch_add(n, Ordering::Relaxed);
                recorded.write(batch).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("{decisions_topic} [{p}]: {e}"))
        })?;
        let recorded = Arc::new(recorded);

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
        let read = AtomicU64::new(0);
        let report = Mutex::new(ReplayReport {
            recorded_decisions: recorded_n.load(Ordering::Relaxed),
            ..ReplayReport::default()
        });
        let found: Mutex<Vec<(Difference, Option<(i32, i64)>, Decision)>> = Mutex::new(Vec::new());
        on_workers(units, |(_, _, _, (s, e))| e - s, |(kind, topic, p, range)| {
            replay_stage(
                cfg,
                opts,
                kind,
                topic,
                &HashMap::from([(p, range)]),
                &recorded,
                &read,
                &report,
                &found,
                progress,
                total,
            )
            .map_err(|e| format!("{} [{p}]: {e}", kind.name()))
        })?;
        let mut report = report.into_inner().expect("not poisoned");
        report.first = with_fields(
            cfg,
            &decisions_topic,
            found.into_inner().expect("not poisoned"),
        )?;
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

#[allow(clippy::too_many_arguments)]
fn replay_stage(
    cfg: &Config,
    opts: &ReplayOptions,
    kind: StageKind,
    topic: &str,
    ranges: &HashMap<i32, (i64, i64)>,
    recorded: &RocksStore,
    read: &AtomicU64,
    report: &Mutex<ReplayReport>,
    found: &Mutex<Vec<(Difference, Option<(i32, i64)>, Decision)>>,
    progress: &(dyn Fn(Progress) + Sync),
    total: u64,
) -> Result<(), String> {
    let mut buf = Vec::with_capacity(512);
    let mut last_progress = Instant::now();
    let parts: Vec<String> = ranges.keys().map(|p| p.to_string()).collect();
    let dir = opts
        .scratch
        .join(format!("{}-{}", kind.name(), parts.join("-")));
    let log = StageLog {
        cfg,
        kind,
        topic,
        ranges,
        state_dir: &dir,
        sender: &opts.sender,
        trace: false,
    };
    let undecodable = log.run(|step| {
        let n = read.fetch_add(1, Ordering::Relaxed) + 1;
        if last_progress.elapsed() > Duration::from_millis(250) {
            progress(Progress { read: n, total });
            last_progress = Instant::now();
        }
        for d in &step.out.decisions {
            compare(opts, d, recorded, report, found, &mut buf)?;
        }
        Ok(())
    })?;
    report.lock().expect("not poisoned").undecodable += undecodable;
    Ok(())
}

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
    /// Record every check (for explanations).
    pub trace: bool,
}

impl StageLog<'_> {
    /// Replays the log, calling `visit` after each record; returns how many
    /// records did not decode (the live task dead-lettered them, or they
    /// were written with a schema this binary does not know).
    pub fn run(
        &self,
        mut visit: impl FnMut(Step<'_>) -> Result<(), String>,
    ) -> Result<u64, String> {
        let stage = make_stage(self.kind, self.sender.clone());
        let (base, _) = RocksStore::open(self.state_dir).map_err(|e| e.to_string())?;
        let mut store = StageStore::new(Box::new(base));
        let mut books: HashMap<i32, PolicyBook> = HashMap::new();
        let mut out = StageOutput {
            trace: self.trace.then(Vec::new),
            ..StageOutput::default()
        };
        let mut pending = 0usize;
        let mut undecodable = 0u64;
        kafka_io::read_ranges(self.cfg, self.topic, self.ranges, |r: ReadRecord| {
            let Some(Ok(env)) = r
                .payload
                .as_deref()
                .map(|b| codec::decode::<StageEnvelope>(RecordType::StageEnvelope, b))
            else {
                undecodable += 1;
                return Ok(());
            };
            let book = books.entry(r.partition).or_default();
            store.begin_record(r.partition);
            let mut view = store.view(r.partition);
            out.clear();
            match pipeline::process(stage.as_ref(), &mut view, book, &env, &mut out) {
                Ok(()) => {}
                // As the live task: a dead letter, with none of its writes kept.
                Err(StageError::BadRecord(_)) => {
                    out.clear();
                    store.rollback_record(r.partition);
                }
                Err(StageError::Store(e)) => return Err(e.to_string()),
            }
            pending += 1;
            // Bounded memory: move the overlay into the scratch store now and then.
            if pending >= 5_000 {
                store.prepare_commit();
                store.commit(&HashMap::new()).map_err(|e| e.to_string())?;
                pending = 0;
            }
            visit(Step {
                partition: r.partition,
                offset: r.offset,
                env: &env,
                out: &out,
                book,
            })
        })?;
        Ok(undecodable)
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
        let committed =
            kafka_io::group_offsets(cfg, &format!("{}.{}", cfg.namespace, kind.name()), &topic)?;
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

/// A 128-bit SipHash of a record's bytes: equal digests stand for equal
/// bytes (a chance collision is about 2^-128).
fn digest(bytes: &[u8]) -> [u8; 16] {
    use std::hash::Hasher;
    let mut h = siphasher::sip128::SipHasher13::new_with_keys(0, 0);
    h.write(bytes);
    siphasher::sip128::Hasher128::finish128(&h).as_bytes()
}

/// A recorded decision as the replay keeps it.
struct RecordedRef {
    digest: [u8; 16],
    partition: i32,
    offset: i64,
}

impl RecordedRef {
    fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(28);
        v.extend_from_slice(&self.digest);
        v.extend_from_slice(&self.partition.to_be_bytes());
        v.extend_from_slice(&self.offset.to_be_bytes());
        v
    }

    fn from_bytes(b: &[u8]) -> Option<RecordedRef> {
        Some(RecordedRef {
            digest: b.get(..16)?.try_into().ok()?,
            partition: i32::from_be_bytes(b.get(16..20)?.try_into().ok()?),
            offset: i64::from_be_bytes(b.get(20..28)?.try_into().ok()?),
        })
    }
}

fn compare(
    opts: &ReplayOptions,
    d: &Decision,
    recorded: &RocksStore,
    report: &Mutex<ReplayReport>,
    found: &Mutex<Vec<(Difference, Option<(i32, i64)>, Decision)>>,
    buf: &mut Vec<u8>,
) -> Result<(), String> {
    if !within(&opts.from, &opts.to, d) {
        return Ok(());
    }
    buf.clear();
    codec::encode_into(RecordType::Decision, d, buf).map_err(|e| e.to_string())?;
    let at = match recorded
        .get(&source_key(&d.source))
        .map_err(|e| e.to_string())?
    {
        Some(v) => {
            let r = RecordedRef::from_bytes(&v)
                .ok_or("a scratch entry of the recorded decisions is cut short")?;
            if r.digest == digest(buf) {
                let mut rep = report.lock().expect("not poisoned");
                rep.compared += 1;
                return Ok(());
            }
            Some((r.partition, r.offset))
        }
        None => None,
    };
    let mut rep = report.lock().expect("not poisoned");
    rep.compared += 1;
    rep.differences += 1;
    let mut found = found.lock().expect("not poisoned");
    if found.len() < opts.keep {
        let diff = Difference {
            intent_id: d.intent_id.clone(),
            source: d.source.clone(),
            fields: Vec::new(),
            missing: at.is_none(),
        };
        found.push((diff, at, d.clone()));
    }
    Ok(())
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
