//! The whole pipeline in memory: ingress, every stage, and the stage topics
//! between them, with the runtime's exactly-once semantics. Each stage
//! processes its partitions' logs into an open transaction whose outputs
//! (decisions, alerts, records for other stages, state) only become visible
//! when it commits; a crash aborts the transaction and the stage reads again
//! from its last commit. Scenario tests, the property test and what-if runs
//! use it; the Kafka runtime uses the same stage code.

use super::ingress::{Ingress, Routed, Target};
use super::pipeline::{self, Forward, StageKind, StageOutput};
use super::{make_stage, SenderConfig, Stage, StageError};
use crate::codec::{self, RecordType};
use crate::model::*;
use crate::policy::{PolicyBook, PolicySpec, Scope};
use crate::state::{MemStore, StageStore, StateValue, WindowCounter};
use std::collections::HashMap;

/// Stable partitioner (FNV-1a, 64-bit): the same key always lands in the
/// same stage partition, whatever the client library or version.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % partitions.max(1) as u64) as i32
}

/// One stage partition's log: what is not yet committed past, and where it starts.
#[derive(Default)]
struct PartLog {
    base: usize,
    entries: std::collections::VecDeque<StageEnvelope>,
}

impl PartLog {
    fn len(&self) -> usize {
        self.base + self.entries.len()
    }
    fn get(&self, pos: usize) -> Option<&StageEnvelope> {
        pos.checked_sub(self.base).and_then(|i| self.entries.get(i))
    }
    fn push(&mut self, env: StageEnvelope) {
        self.entries.push_back(env);
    }
    /// Forgets what every reader has committed past (bounded memory).
    fn trim(&mut self, upto: usize) {
        while self.base < upto && self.entries.pop_front().is_some() {
            self.base += 1;
        }
    }
}

struct Slot {
    kind: StageKind,
    stage: Box<dyn Stage + Send>,
    store: StageStore,
    books: HashMap<i32, PolicyBook>,
    logs: HashMap<i32, PartLog>,
    committed: HashMap<i32, usize>,
    position: HashMap<i32, usize>,
    open: StageOutput,
}

impl Slot {
    fn unread(&self) -> Vec<i32> {
        let mut ps: Vec<i32> = self.logs.iter().filter(|(p, log)| self.position.get(p).copied().unwrap_or(0) < log.len()).map(|(p, _)| *p).collect();
        ps.sort();
        ps
    }
}

/// What a dead letter said.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub stage: String,
    pub reason: String,
}

pub struct Driver {
    ingress: Ingress,
    partitions: i32,
    slots: Vec<Slot>,
    offsets: HashMap<String, i64>,
    pub decisions: Vec<Decision>,
    pub alerts: Vec<Alert>,
    /// Candidate policies' decisions paired with the enforced ones.
    pub shadow: Vec<ShadowDecision>,
    pub refused: Vec<Refused>,
    /// Every check made, when tracing (what-if explanations).
    pub traces: Vec<super::pipeline::Trace>,
    trace: bool,
}

impl Driver {
    pub fn new(partitions: i32, sender: SenderConfig) -> Self {
        let ingress = Ingress::for_namespace("sendgate");
        Self::with_stores(ingress, partitions, sender, |_| Box::new(MemStore::default()))
    }

    /// A driver reading the given input topic names, with a base store per
    /// stage (RocksDB in a scratch directory for long runs).
    pub fn with_stores(ingress: Ingress, partitions: i32, sender: SenderConfig, mut store: impl FnMut(StageKind) -> Box<dyn crate::state::BaseStore>) -> Self {
        let slots = StageKind::ALL
            .iter()
            .map(|&kind| Slot {
                kind,
                stage: make_stage(kind, sender.clone()),
                store: StageStore::new(store(kind)),
                books: HashMap::new(),
                logs: HashMap::new(),
                committed: HashMap::new(),
                position: HashMap::new(),
                open: StageOutput::default(),
            })
            .collect();
        Driver { ingress, partitions, slots, offsets: HashMap::new(), decisions: Vec::new(), alerts: Vec::new(), shadow: Vec::new(), refused: Vec::new(), traces: Vec::new(), trace: false }
    }

    /// Records every check the stages make into `traces`.
    /// Routes engagement events to the sender stage, as a processor with
    /// `engagement_events` does.
    pub fn with_engagement_events(mut self) -> Self {
        self.ingress.engagement = true;
        self
    }

    pub fn with_trace(mut self) -> Self {
        self.trace = true;
        self
    }

    /// Routes a record of an input topic as the router would (ingress is
    /// stateless, so it commits at once).
    pub fn submit(&mut self, rec: &InputRecord<'_>) {
        match self.ingress.route(rec) {
            Ok(routed) => routed.into_iter().for_each(|r| self.append(r)),
            Err(reason) => self.refused.push(Refused { stage: "ingress".into(), reason }),
        }
    }

    /// Appends an input record at log time `at` and routes it (ingress is
    /// stateless, so it commits at once).
    pub fn submit_raw(&mut self, topic: &str, key: Option<&[u8]>, payload: Option<&[u8]>, at: i64) {
        let topic = match topic {
            "intents" => self.ingress.intents.clone(),
            "delivery" => self.ingress.delivery.clone(),
            "policies" => self.ingress.policies.clone(),
            _ => self.ingress.commands.clone(),
        };
        let offset = self.offsets.entry(topic.clone()).or_insert(0);
        let rec = InputRecord { topic: &topic, partition: 0, offset: *offset, key, payload, timestamp_ms: Some(at) };
        *offset += 1;
        self.submit(&rec);
    }

    /// Publishes a policy document (TOML, as in a policy file) for a scope.
    pub fn policy(&mut self, scope: &str, toml_text: &str, at: i64) {
        let spec: PolicySpec = toml::from_str(toml_text).expect("test policy parses");
        spec.validate().expect("test policy is valid");
        let scope = Scope::parse(scope).expect("test scope parses").to_string();
        let doc = PolicyDocument { scope: scope.clone(), spec_json: spec.to_canonical_json(), source_name: None };
        let bytes = codec::encode(RecordType::PolicyDocument, &doc).expect("encodes");
        self.submit_raw("policies", Some(scope.as_bytes()), Some(&bytes), at);
    }

    /// Publishes a candidate policy document in shadow for a scope (None: stops it).
    pub fn shadow_policy(&mut self, scope: &str, toml_text: Option<&str>, at: i64) {
        let scope = Scope::parse(scope).expect("test scope parses").to_string();
        let key = format!("{}{scope}", crate::policy::resolve::SHADOW_PREFIX);
        let bytes = toml_text.map(|t| {
            let spec: PolicySpec = toml::from_str(t).expect("test policy parses");
            spec.validate().expect("test policy is valid");
            let doc = PolicyDocument { scope: scope.clone(), spec_json: spec.to_canonical_json(), source_name: None };
            codec::encode(RecordType::PolicyDocument, &doc).expect("encodes")
        });
        self.submit_raw("policies", Some(key.as_bytes()), bytes.as_deref(), at);
    }

    pub fn intent(&mut self, intent: &SendIntent, at: i64) {
        let bytes = codec::encode(RecordType::SendIntent, intent).expect("encodes");
        self.submit_raw("intents", None, Some(&bytes), at);
    }

    pub fn delivery(&mut self, ev: &DeliveryEvent, at: i64) {
        let bytes = codec::encode(RecordType::DeliveryEvent, ev).expect("encodes");
        self.submit_raw("delivery", None, Some(&bytes), at);
    }

    pub fn command(&mut self, cmd: &Command, at: i64) {
        let bytes = codec::encode(RecordType::Command, cmd).expect("encodes");
        self.submit_raw("commands", None, Some(&bytes), at);
    }

    fn slot(&mut self, kind: StageKind) -> &mut Slot {
        self.slots.iter_mut().find(|s| s.kind == kind).expect("every kind has a slot")
    }

    fn append(&mut self, r: Routed) {
        let partitions = self.partitions;
        let slot = self.slot(r.stage);
        match r.target {
            Target::Key(k) => slot.logs.entry(partition_for(&k, partitions)).or_default().push(r.envelope),
            Target::All => (0..partitions).for_each(|p| slot.logs.entry(p).or_default().push(r.envelope.clone())),
        }
    }

    /// Processes one record of a stage partition into its open transaction.
    /// Returns false when there was nothing to read.
    pub fn step(&mut self, kind: StageKind, partition: i32) -> bool {
        let trace = self.trace;
        let slot = self.slot(kind);
        let pos = slot.position.get(&partition).copied().unwrap_or(0);
        let Some(env) = slot.logs.get(&partition).and_then(|l| l.get(pos)).cloned() else { return false };
        slot.position.insert(partition, pos + 1);
        if !slot.books.contains_key(&partition) {
            // As after an assignment: the book comes from committed state.
            let mut book = PolicyBook::default();
            pipeline::load_policies(&slot.store.view(partition), &mut book).expect("memory store");
            slot.books.insert(partition, book);
        }
        let mut out = StageOutput { trace: trace.then(Vec::new), ..StageOutput::default() };
        let book = slot.books.get_mut(&partition).expect("just inserted");
        slot.store.begin_record(partition);
        let mut view = slot.store.view(partition);
        match pipeline::process(slot.stage.as_ref(), &mut view, book, &env, &mut out) {
            Ok(()) => {
                slot.open.decisions.extend(out.decisions);
                slot.open.alerts.extend(out.alerts);
                slot.open.forwards.extend(out.forwards);
                slot.open.shadow.extend(out.shadow);
                if let Some(t) = out.trace {
                    slot.open.trace.get_or_insert_with(Vec::new).extend(t);
                }
            }
            Err(StageError::BadRecord(reason)) => {
                slot.store.rollback_record(partition);
                self.refused.push(Refused { stage: kind.name().into(), reason });
            }
            Err(StageError::Store(e)) => panic!("memory store failed: {e}"),
        }
        true
    }

    /// Commits a stage's open transaction: its outputs become visible.
    pub fn commit(&mut self, kind: StageKind) {
        let partitions = self.partitions;
        let slot = self.slot(kind);
        slot.store.prepare_commit();
        slot.store.commit(&HashMap::new()).expect("memory store");
        slot.committed = slot.position.clone();
        for (p, log) in slot.logs.iter_mut() {
            log.trim(slot.committed.get(p).copied().unwrap_or(0));
        }
        let out = std::mem::take(&mut slot.open);
        self.decisions.extend(out.decisions);
        self.alerts.extend(out.alerts);
        self.shadow.extend(out.shadow);
        self.traces.extend(out.trace.unwrap_or_default());
        for Forward { stage, key, envelope } in out.forwards {
            self.slot(stage).logs.entry(partition_for(&key, partitions)).or_default().push(envelope);
        }
    }

    /// Kills a stage mid-transaction: its uncommitted work is lost and it
    /// reads again from its last commit.
    pub fn crash(&mut self, kind: StageKind) {
        let slot = self.slot(kind);
        slot.store.abort();
        slot.position = slot.committed.clone();
        slot.open = StageOutput::default();
        slot.books.clear();
    }

    /// Stage partitions with records not yet read.
    pub fn unread(&self) -> Vec<(StageKind, i32)> {
        self.slots.iter().flat_map(|s| s.unread().into_iter().map(move |p| (s.kind, p))).collect()
    }

    /// Runs every stage until nothing is left to read, committing after each
    /// stage's turn (and so also any transaction left open): a deterministic
    /// schedule.
    pub fn run(&mut self) {
        loop {
            for kind in StageKind::ALL {
                for p in self.slot(kind).unread() {
                    while self.step(kind, p) {}
                }
                self.commit(kind);
            }
            if self.unread().is_empty() {
                return;
            }
        }
    }

    /// Writes a state entry into a stage partition as if an earlier release
    /// had left it there (upgrade tests).
    #[cfg(test)]
    pub fn put_state(&mut self, kind: StageKind, partition: i32, key: &[u8], value: StateValue) {
        let slot = self.slot(kind);
        slot.store.view(partition).put(key, value);
        slot.store.prepare_commit();
        slot.store.commit(&HashMap::new()).expect("memory store");
    }

    /// The records a stage has not read yet, in partition order.
    #[cfg(test)]
    pub fn unread_records(&mut self, kind: StageKind) -> Vec<StageEnvelope> {
        let slot = self.slot(kind);
        let mut parts: Vec<i32> = slot.logs.keys().copied().collect();
        parts.sort();
        parts
            .into_iter()
            .flat_map(|p| {
                let (log, from) = (&slot.logs[&p], slot.position.get(&p).copied().unwrap_or(0));
                (from..log.len()).filter_map(|pos| log.get(pos).cloned()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Appends a record to a stage partition's log as a stage would
    /// (records an earlier build wrote, in upgrade tests).
    #[cfg(test)]
    pub fn inject(&mut self, kind: StageKind, key: &str, envelope: StageEnvelope) {
        let partitions = self.partitions;
        self.slot(kind).logs.entry(partition_for(key, partitions)).or_default().push(envelope);
    }

    /// A state value of a stage partition.
    #[cfg(test)]
    pub fn state(&mut self, kind: StageKind, partition: i32, key: &[u8]) -> Option<StateValue> {
        self.slot(kind).store.view(partition).get(key).expect("memory store")
    }

    /// Every window counter a stage holds: (counter key, value).
    pub fn counters(&mut self, kind: StageKind) -> Vec<(String, WindowCounter)> {
        let partitions = self.partitions;
        let slot = self.slot(kind);
        let mut out = Vec::new();
        for p in 0..partitions {
            let view = slot.store.view(p);
            for key in view.scan(b"ctr/", usize::MAX).expect("memory store") {
                if let Ok(Some(StateValue::Counter(c))) = view.get(&key) {
                    out.push((String::from_utf8_lossy(&key).into_owned(), c));
                }
            }
        }
        out
    }

    /// How many keys a stage holds under a prefix, over its partitions.
    #[cfg(test)]
    pub fn keys_under(&mut self, kind: StageKind, prefix: &[u8]) -> Vec<String> {
        let partitions = self.partitions;
        let slot = self.slot(kind);
        (0..partitions).flat_map(|p| slot.store.view(p).scan(prefix, usize::MAX).expect("memory store")).map(|k| String::from_utf8_lossy(&k).into_owned()).collect()
    }
}
