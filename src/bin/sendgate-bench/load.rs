//! `sendgate-bench load`: fills the input topics with a reproducible workload for
//! benchmarks and long runs: N intents and delivery events with skewed
//! (Zipf) sender domains, mailboxes, recipient domains and recipients,
//! realistic field sizes, and a fixed seed. Bounded in count and time.

use sendgate::cli::kafka_io;
use sendgate::codec::{self, RecordType};
use sendgate::config::Config;
use sendgate::model::*;
use std::time::{Duration, Instant};

/// SplitMix64: a small, fast, seedable generator; the same seed gives the
/// same workload on any machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Zipf over `n` items with exponent `s`: item 0 is the most frequent.
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for k in 1..=n.max(1) {
            total += 1.0 / (k as f64).powf(s);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf { cdf }
    }
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

/// The shape of a workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub seed: u64,
    pub intents: u64,
    /// Delivery events per intent (0.0 to 1.0).
    pub events_per_intent: f64,
    pub tenants: usize,
    pub sender_domains: usize,
    pub mailboxes: usize,
    pub recipient_domains: usize,
    pub recipients: usize,
    /// Intents keyed by sender domain instead of mailbox: every intent of a
    /// sender domain is then in one partition, so the order each sender
    /// domain's intents are decided in is fixed, and a recount can predict
    /// every decision (the benchmarks).
    pub key_by_sender_domain: bool,
    /// Only deliveries and opens: no bounce, complaint or deferral, whose
    /// effect would depend on how the two input topics interleave.
    pub deliveries_only: bool,
    /// Each recipient address written to by one sender domain only: the
    /// order of a recipient's intents is then its sender domain's partition
    /// order, and a recount can predict the per-recipient guards too.
    pub own_recipients: bool,
    /// Unsubscribes published before any intent (see [`suppression_prefix`]).
    pub suppressed: u64,
    /// Unsubscribes among the delivery events, and operator commands while
    /// intents flow (see [`OPERATOR_EVERY`]).
    pub operator_traffic: bool,
}

/// With `operator_traffic`, every this many intents an operator suppresses
/// the recipient just written to (so later intents to it must be blocked).
pub const OPERATOR_EVERY: u64 = 1_000;
/// With `operator_traffic`, a workload (one batch of a fault run, each
/// with the next seed) pauses one of this many busiest mailboxes halfway
/// through, and the batch [`PAUSE_BATCHES`] seeds later resumes it first
/// thing: a pause spans whole batches and the gaps between them, long
/// enough in log time for intents well inside it to be judged.
pub const PAUSED_MAILBOXES: u64 = 10;
pub const PAUSE_BATCHES: u64 = 4;

impl Default for Workload {
    fn default() -> Self {
        Workload { seed: 42, intents: 100_000, events_per_intent: 0.5, tenants: 50, sender_domains: 500, mailboxes: 5_000, recipient_domains: 20_000, recipients: 1_000_000, key_by_sender_domain: false, deliveries_only: false, own_recipients: false, suppressed: 0, operator_traffic: false }
    }
}

const PUBLIC: [&str; 4] = ["gmail.com", "outlook.com", "yahoo.com", "icloud.com"];

/// The skewed distributions of a workload's addresses.
struct Draw {
    mailbox: Zipf,
    recipient_domain: Zipf,
    recipient: Zipf,
}

/// One draw: a mailbox (of one sender domain and one tenant) and a recipient.
struct Pick {
    domain: usize,
    tenant: usize,
    sender: String,
    recipient: String,
}

impl Draw {
    fn new(w: &Workload) -> Self {
        // Own recipients: each sender domain writes to its share of them.
        let recipients = if w.own_recipients { (w.recipients / w.sender_domains.max(1)).max(1) } else { w.recipients };
        Draw { mailbox: Zipf::new(w.mailboxes, 1.1), recipient_domain: Zipf::new(w.recipient_domains, 1.05), recipient: Zipf::new(recipients, 1.01) }
    }

    fn pick(&self, w: &Workload, rng: &mut Rng) -> Pick {
        // A mailbox belongs to one sender domain and one tenant.
        let (domain, tenant, sender) = mailbox(w, self.mailbox.sample(rng));
        let rd = self.recipient_domain.sample(rng);
        let r = self.recipient.sample(rng);
        let recipient_domain = if rd % 5 == 0 { PUBLIC[rd / 5 % PUBLIC.len()].to_string() } else { format!("company{rd}.example") };
        let recipient = if w.own_recipients { format!("person{r}.s{domain}@{recipient_domain}") } else { format!("person{r}@{recipient_domain}") };
        Pick { domain, tenant, sender, recipient }
    }
}

/// The unsubscribes that come before a workload's intents (`suppressed` of
/// them, drawn like the intents' addresses with a seed of their own, so the
/// most written-to recipients are among them): published first, so that
/// every stage meets them before any intent, whatever the interleaving.
/// Unsubscribes, not hard bounces: they suppress a recipient's OUTBOUND
/// mail and move no bounce rate, so the sender's limits stay the policy's
/// and a recount needs no model of the signal budgets.
pub fn suppression_prefix(w: &Workload, mut emit: impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), String>) -> Result<u64, String> {
    let mut rng = Rng::new(w.seed ^ 0xb0_0ce5);
    let draw = Draw::new(w);
    for i in 0..w.suppressed {
        let Pick { tenant, sender, recipient, .. } = draw.pick(w, &mut rng);
        let ev = DeliveryEvent {
            event_id: format!("load-{}-unsubscribe-{i:010}", w.seed),
            intent_id: None,
            tenant: format!("tenant{tenant}"),
            sender,
            recipient,
            kind: DeliveryKind::Unsubscribe,
            smtp_code: None,
            enhanced_code: None,
            response: None,
            occurred_at_ms: 0,
            retry_after_seconds: None,
        };
        emit("delivery", ev.sender.clone().into_bytes(), codec::encode(RecordType::DeliveryEvent, &ev).map_err(|e| e.to_string())?)?;
    }
    Ok(w.suppressed)
}

/// Generates the workload's records in order, calling `emit(topic suffix,
/// key, value)` for each; returns (intents, events).
pub fn generate(w: &Workload, mut emit: impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), String>) -> Result<(u64, u64), String> {
    let mut rng = Rng::new(w.seed);
    let draw = Draw::new(w);
    let mut events = 0u64;
    if w.operator_traffic {
        // The pause of an earlier batch ends (a resume of a mailbox no one
        // paused, in the first batches, changes nothing).
        let (tenant, mailbox) = paused_mailbox(w, w.seed.wrapping_sub(PAUSE_BATCHES));
        emit_command(&mut emit, w, 0, CommandKind::Resume, &tenant, &format!("mailbox:{mailbox}"), None)?;
    }
    for i in 0..w.intents {
        if w.operator_traffic && i == w.intents / 2 {
            let (tenant, mailbox) = paused_mailbox(w, w.seed);
            emit_command(&mut emit, w, i, CommandKind::Pause, &tenant, &format!("mailbox:{mailbox}"), None)?;
        }
        let Pick { domain, tenant, sender, recipient } = draw.pick(w, &mut rng);
        let roll = rng.unit();
        let class = if roll < 0.8 { IntentClass::Outbound } else if roll < 0.9 { IntentClass::Reply } else { IntentClass::Transactional };
        let intent = SendIntent {
            intent_id: format!("load-{}-{i:010}", w.seed),
            tenant: format!("tenant{tenant}"),
            sender: sender.clone(),
            recipient: recipient.clone(),
            class,
            template_id: Some(format!("template-{}", rng.next() % 40)),
            content_hash: Some(format!("{:016x}{:016x}", rng.next(), rng.next())),
            thread_id: (class == IntentClass::Reply).then(|| format!("thread-{}", rng.next() % 100_000)),
            requires_approval: rng.unit() < 0.001,
            requested_at_ms: 0,
        };
        let key = if w.key_by_sender_domain { format!("sender{domain}.example") } else { sender.clone() };
        emit("intents", key.into_bytes(), codec::encode(RecordType::SendIntent, &intent).map_err(|e| e.to_string())?)?;
        if rng.unit() < w.events_per_intent {
            let roll = rng.unit();
            let (kind, code) = if w.deliveries_only {
                if roll < 0.9 {
                    (DeliveryKind::Delivered, Some(250))
                } else {
                    (DeliveryKind::Opened, None)
                }
            } else if w.operator_traffic && (0.92..0.93).contains(&roll) {
                (DeliveryKind::Unsubscribe, None)
            } else if roll < 0.93 {
                (DeliveryKind::Delivered, Some(250))
            } else if roll < 0.96 {
                (DeliveryKind::Opened, None)
            } else if roll < 0.975 {
                (DeliveryKind::BounceHard, Some(550))
            } else if roll < 0.99 {
                (DeliveryKind::Deferred, Some(421))
            } else if roll < 0.999 {
                (DeliveryKind::BounceSoft, Some(452))
            } else {
                (DeliveryKind::Complaint, None)
            };
            let ev = DeliveryEvent {
                event_id: format!("load-{}-ev-{i:010}", w.seed),
                intent_id: Some(intent.intent_id.clone()),
                tenant: intent.tenant.clone(),
                sender,
                recipient,
                kind,
                smtp_code: code,
                enhanced_code: code.map(|c| if c >= 500 { "5.1.1".into() } else { "4.7.28".into() }),
                response: None,
                occurred_at_ms: 0,
                retry_after_seconds: None,
            };
            emit("delivery", ev.sender.clone().into_bytes(), codec::encode(RecordType::DeliveryEvent, &ev).map_err(|e| e.to_string())?)?;
            events += 1;
        }
        if w.operator_traffic && i % OPERATOR_EVERY == OPERATOR_EVERY / 2 {
            emit_command(&mut emit, w, i, CommandKind::AddListEntry, &intent.tenant, &intent.recipient, Some("suppression"))?;
        }
    }
    Ok((w.intents, events))
}

/// The (tenant, mailbox) the workload of `seed` pauses: one of the
/// [`PAUSED_MAILBOXES`] busiest, so that intents from it keep coming.
fn paused_mailbox(w: &Workload, seed: u64) -> (String, String) {
    let (_, tenant, sender) = mailbox(w, (seed % PAUSED_MAILBOXES) as usize);
    (format!("tenant{tenant}"), sender)
}

/// Mailbox number `m` (0 the busiest): its sender domain, tenant and address.
fn mailbox(w: &Workload, m: usize) -> (usize, usize, String) {
    let domain = (m * 7919) % w.sender_domains.max(1);
    (domain, domain % w.tenants.max(1), format!("agent{m}@sender{domain}.example"))
}

/// An operator's command, keyed by its target as the command line keys it.
fn emit_command(emit: &mut impl FnMut(&'static str, Vec<u8>, Vec<u8>) -> Result<(), String>, w: &Workload, i: u64, kind: CommandKind, tenant: &str, target: &str, list: Option<&str>) -> Result<(), String> {
    let cmd = Command {
        command_id: format!("load-{}-cmd-{kind:?}-{i:010}", w.seed).to_ascii_lowercase(),
        kind,
        tenant: tenant.to_string(),
        target: target.to_string(),
        sender: None,
        reason: Some("fault-run workload".into()),
        operator: Some("load".into()),
        list: list.map(str::to_string),
        mode: None,
        until_ms: None,
    };
    emit("commands", target.as_bytes().to_vec(), codec::encode(RecordType::Command, &cmd).map_err(|e| e.to_string())?)
}

/// Publishes a workload as it is generated, in slices of 20,000 records
/// (bounded memory); stops at `deadline` if it comes first.
pub fn load(cfg: &Config, w: &Workload, deadline: Duration) -> Result<(), String> {
    let topo = cfg.topology()?;
    let producer = kafka_io::producer(cfg)?;
    let started = Instant::now();
    let mut slice: Vec<(&'static str, Vec<u8>, Vec<u8>)> = Vec::with_capacity(20_000);
    let mut sent = 0u64;
    let mut flush = |slice: &mut Vec<(&'static str, Vec<u8>, Vec<u8>)>| -> Result<(), String> {
        if started.elapsed() > deadline {
            return Err(format!("stopped at the deadline of {deadline:?} after {sent} records"));
        }
        const TOPICS: [&str; 3] = ["intents", "delivery", "commands"];
        if let Some((t, _, _)) = slice.iter().find(|(t, _, _)| !TOPICS.contains(t)) {
            return Err(format!("the workload wrote to topic {t:?}, which the loader does not publish"));
        }
        for topic in TOPICS {
            let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = slice.iter().filter(|(t, _, _)| *t == topic).map(|(_, k, v)| (k.clone(), Some(v.clone()))).collect();
            // The producer's own thread completes these futures.
            let failures = futures::executor::block_on(kafka_io::send_all(&producer, &topo.full(topic), records));
            if let Some(f) = failures.first() {
                return Err(f.clone());
            }
        }
        sent += slice.len() as u64;
        slice.clear();
        Ok(())
    };
    let unsubscribes = suppression_prefix(w, |topic, k, v| {
        slice.push((topic, k, v));
        Ok(())
    })?;
    // Flushed apart, so that every unsubscribe is appended before any intent.
    flush(&mut slice)?;
    let mut commands = 0u64;
    let (intents, events) = generate(w, |topic, k, v| {
        commands += (topic == "commands") as u64;
        slice.push((topic, k, v));
        if slice.len() >= 20_000 {
            flush(&mut slice)?;
        }
        Ok(())
    })?;
    flush(&mut slice)?;
    println!("published {unsubscribes} unsubscribes first, then {intents} intents, {events} delivery events and {commands} commands in {:.1} s (seed {})", started.elapsed().as_secs_f64(), w.seed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_workload_and_the_skew_is_real() {
        let w = Workload { intents: 2_000, ..Workload::default() };
        let collect = || {
            let mut out = Vec::new();
            generate(&w, |t, k, v| {
                out.push((t, k, v));
                Ok(())
            })
            .unwrap();
            out
        };
        let (a, b) = (collect(), collect());
        assert_eq!(a, b);
        let mut per_sender: std::collections::HashMap<Vec<u8>, usize> = std::collections::HashMap::new();
        for (t, k, _) in a.iter().filter(|(t, _, _)| *t == "intents") {
            let _ = t;
            *per_sender.entry(k.clone()).or_default() += 1;
        }
        let top = per_sender.values().max().copied().unwrap_or(0);
        // Zipf(1.1) over 5,000 mailboxes gives the first about 12 % of the
        // intents; a uniform spread would give it 0.02 %.
        assert!(top >= 100, "Zipf: the top mailbox sends at least 5 % of 2,000 intents, got {top}");
    }

    #[test]
    fn operator_traffic_adds_unsubscribes_suppressions_and_pauses_resumed_batches_later() {
        let plain = Workload { intents: 10_000, ..Workload::default() };
        let run = |seed: u64| {
            let w = Workload { operator_traffic: true, seed, ..plain.clone() };
            let (mut commands, mut unsubscribes, mut intents, mut from_paused) = (Vec::new(), 0, 0, 0);
            let mut last_intent: Option<SendIntent> = None;
            generate(&w, |t, k, v| {
                match t {
                    "intents" => {
                        intents += 1;
                        let i: SendIntent = codec::decode(RecordType::SendIntent, &v).unwrap();
                        let paused = commands.iter().any(|c: &Command| c.kind == CommandKind::Pause && c.target == format!("mailbox:{}", i.sender) && c.tenant == i.tenant);
                        from_paused += paused as usize;
                        last_intent = Some(i);
                    }
                    "delivery" => unsubscribes += (codec::decode::<DeliveryEvent>(RecordType::DeliveryEvent, &v).unwrap().kind == DeliveryKind::Unsubscribe) as usize,
                    "commands" => {
                        let c: Command = codec::decode(RecordType::Command, &v).unwrap();
                        assert_eq!(k, c.target.as_bytes(), "keyed by target");
                        assert!(sendgate::stage::ingress::normalise_command(c.clone()).is_ok(), "{c:?} is a valid command");
                        if c.kind == CommandKind::AddListEntry {
                            let last = last_intent.as_ref().expect("a suppression follows an intent");
                            assert_eq!((c.target.as_str(), c.tenant.as_str(), c.list.as_deref()), (last.recipient.as_str(), last.tenant.as_str(), Some("suppression")));
                        }
                        commands.push(c);
                    }
                    other => panic!("topic {other}"),
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(intents, 10_000);
            assert!(unsubscribes >= 20, "about 1 % of 5,000 events, got {unsubscribes}");
            assert!(from_paused >= 20, "intents keep coming from the paused mailbox: {from_paused}");
            commands
        };
        let kinds = |cs: &[Command]| cs.iter().map(|c| c.kind).collect::<Vec<_>>();
        let first = run(7);
        let mut expected = vec![CommandKind::Resume];
        expected.extend([CommandKind::AddListEntry; 5]);
        expected.push(CommandKind::Pause);
        expected.extend([CommandKind::AddListEntry; 5]);
        assert_eq!(kinds(&first), expected, "a resume first, a pause halfway, a suppression every 1,000 intents");
        let pause = first.iter().find(|c| c.kind == CommandKind::Pause).unwrap();
        // The batch four seeds later resumes it, and pauses another mailbox.
        let later = run(7 + PAUSE_BATCHES);
        assert_eq!((later[0].kind, &later[0].target, &later[0].tenant), (CommandKind::Resume, &pause.target, &pause.tenant));
        assert_ne!(later.iter().find(|c| c.kind == CommandKind::Pause).unwrap().target, pause.target);
        // The plain workload has none of it: the benchmarks' figures stay comparable.
        let mut plain_topics = std::collections::BTreeSet::new();
        generate(&plain, |t, _, v| {
            plain_topics.insert(t);
            if t == "delivery" {
                assert_ne!(codec::decode::<DeliveryEvent>(RecordType::DeliveryEvent, &v).unwrap().kind, DeliveryKind::Unsubscribe);
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(plain_topics.into_iter().collect::<Vec<_>>(), ["delivery", "intents"]);
    }

}
