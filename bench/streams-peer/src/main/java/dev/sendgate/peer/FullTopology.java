package dev.sendgate.peer;

import java.util.List;
import java.util.Map;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Branched;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.StoreBuilder;
import org.apache.kafka.streams.state.Stores;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.sendgate.peer.AvroCodec.BadRecordException;
import dev.sendgate.peer.AvroCodec.Delivery;
import dev.sendgate.peer.StageOut.Dest;

/**
 * The full-logic peer: sendgate's sender, recipient and recipient-domain
 * stages, each a processor keyed as sendgate keys it, with reserve and
 * release between them.
 *
 * <pre>
 * intents -> decode -> repartition by-sender-domain (key: sender domain)
 * by-sender-domain + outcomes loop -> sender stage -> decisions | repartition by-recipient (key: recipient)
 * by-recipient + recipient-releases loop
 *   -> recipient stage -> decisions | outcomes loop | repartition by-recipient-domain (key: group)
 * by-recipient-domain -> recipient-domain stage -> decisions | outcomes loop | recipient-releases loop
 * delivery -> global store recipient-suppressions, read by the recipient stage
 * </pre>
 *
 * With {@code --suppressions repartition} the delivery events go through
 * the recipient stage's input instead: a router reads intents and delivery
 * (merged by timestamp within each task) and repartitions the bounces,
 * complaints and unsubscribes by recipient (deliveries-by-recipient). Tasks
 * run independently, so a bounce can reach the recipient stage after an
 * intent appended after it: the global store, loaded before any task
 * processes a record, avoids that.
 *
 * Every stage topic has {@value PeerTopology#REPARTITION_PARTITIONS}
 * partitions; the two loop topics are created at start with as many (a
 * Kafka Streams topology cannot loop back through its own internal topics).
 */
final class FullTopology {
    static final int PARTITIONS = PeerTopology.REPARTITION_PARTITIONS;

    private FullTopology() { }

    static List<String> storeNames() {
        return List.of(FullSenderProcessor.INTENTS_STORE, FullSenderProcessor.WINDOWS_STORE, FullSenderProcessor.PARKED_STORE,
                RecipientProcessor.SUPPRESSIONS_STORE, RecipientProcessor.WINDOWS_STORE, RecipientDomainProcessor.WINDOWS_STORE);
    }

    /** The loop topics the application writes to and reads from; they must exist before it starts. */
    static List<String> loopTopics(PeerOptions o) {
        return List.of(o.outcomesTopic(), o.recipientReleasesTopic());
    }

    static Topology build(PeerOptions options) {
        StreamsBuilder builder = new StreamsBuilder();
        // Persistent RocksDB stores, changelogged (the default), no caching.
        builder.addStateStore(bytesStore(FullSenderProcessor.INTENTS_STORE));
        builder.addStateStore(bytesStore(FullSenderProcessor.WINDOWS_STORE));
        builder.addStateStore(bytesStore(FullSenderProcessor.PARKED_STORE));
        builder.addStateStore(countStore(RecipientProcessor.WINDOWS_STORE));
        builder.addStateStore(countStore(RecipientDomainProcessor.WINDOWS_STORE));

        KStream<String, byte[]> intents;
        KStream<String, byte[]> suppressions = null;
        if (options.globalSuppressions()) {
            // Suppressions: a global store fed from the delivery topic, loaded
            // to the end before any task processes a record, then kept up to date.
            builder.addGlobalStore(bytesStore(RecipientProcessor.SUPPRESSIONS_STORE).withLoggingDisabled(), options.deliveryTopic(),
                    Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("delivery"), SuppressionUpdater::new);
            intents = builder.stream(options.intentsTopic(), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("intents"))
                    .processValues(PeerTopology.DecodeForRouting::new, Named.as("decode-intent"))
                    .selectKey((key, routed) -> routed.senderDomain(), Named.as("select-sender-domain"))
                    .mapValues(PeerTopology.Routed::bytes, Named.as("original-bytes"))
                    .repartition(repartitioned("by-sender-domain"));
        } else {
            // Router: intents and delivery events, in log-time order per task (as
            // sendgate's router merges them), to the sender and recipient stages.
            builder.addStateStore(bytesStore(RecipientProcessor.SUPPRESSIONS_STORE));
            Map<String, KStream<String, StageOut>> routed = builder.stream(List.of(options.intentsTopic(), options.deliveryTopic()),
                            Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("inputs"))
                    .process(() -> new Router(options.intentsTopic()), Named.as("router"))
                    .split(Named.as("router-"))
                    .branch((k, v) -> v.dest() == Dest.NEXT, Branched.as("intents"))
                    .defaultBranch(Branched.as("suppressions"));
            intents = routed.get("router-intents").mapValues(StageOut::value, Named.as("intent-bytes"))
                    .repartition(repartitioned("by-sender-domain"));
            suppressions = routed.get("router-suppressions").mapValues(StageOut::value, Named.as("suppression-bytes"))
                    .repartition(repartitioned("deliveries-by-recipient"));
        }

        // Sender stage: intents and outcomes, by sender domain.
        KStream<String, byte[]> outcomes = builder.stream(options.outcomesTopic(), loop("outcomes"));
        Map<String, KStream<String, StageOut>> sender = intents
                .merge(outcomes, Named.as("sender-input"))
                .process(() -> options.sendgateParking
                                ? new SendgateSenderProcessor(options.parkMax) : new FullSenderProcessor(options.parkMax),
                        Named.as("sender-stage"),
                        FullSenderProcessor.INTENTS_STORE, FullSenderProcessor.WINDOWS_STORE, FullSenderProcessor.PARKED_STORE)
                .split(Named.as("sender-"))
                .branch((k, v) -> v.dest() == Dest.DECISION, Branched.as("decisions"))
                .defaultBranch(Branched.as("next"));
        sender.get("sender-decisions").mapValues(StageOut::value, Named.as("sender-decision-bytes"))
                .to(options.decisionsTopic(), produced("sender-decisions-sink"));

        // Recipient stage: passed-on intents, suppressions and releases, by recipient address.
        KStream<String, byte[]> toRecipient = sender.get("sender-next").mapValues(StageOut::value, Named.as("sender-next-bytes"))
                .repartition(repartitioned("by-recipient"));
        KStream<String, byte[]> releases = builder.stream(options.recipientReleasesTopic(), loop("recipient-releases"));
        if (suppressions != null) {
            toRecipient = toRecipient.merge(suppressions, Named.as("recipient-input-suppressions"));
        }
        String[] recipientStores = options.globalSuppressions()
                ? new String[] {RecipientProcessor.WINDOWS_STORE}
                : new String[] {RecipientProcessor.SUPPRESSIONS_STORE, RecipientProcessor.WINDOWS_STORE};
        Map<String, KStream<String, StageOut>> recipient = toRecipient
                .merge(releases, Named.as("recipient-input"))
                .process(() -> new RecipientProcessor(options.recipientDayLimit), Named.as("recipient-stage"), recipientStores)
                .split(Named.as("recipient-"))
                .branch((k, v) -> v.dest() == Dest.DECISION, Branched.as("decisions"))
                .branch((k, v) -> v.dest() == Dest.OUTCOME, Branched.as("outcomes"))
                .defaultBranch(Branched.as("next"));
        recipient.get("recipient-decisions").mapValues(StageOut::value, Named.as("recipient-decision-bytes"))
                .to(options.decisionsTopic(), produced("recipient-decisions-sink"));
        recipient.get("recipient-outcomes").mapValues(StageOut::value, Named.as("recipient-outcome-bytes"))
                .to(options.outcomesTopic(), produced("recipient-outcomes-sink"));

        // Recipient-domain stage, by recipient-domain group.
        Map<String, KStream<String, StageOut>> domain = recipient.get("recipient-next")
                .mapValues(StageOut::value, Named.as("recipient-next-bytes"))
                .repartition(repartitioned("by-recipient-domain"))
                .process(RecipientDomainProcessor::new, Named.as("recipient-domain-stage"), RecipientDomainProcessor.WINDOWS_STORE)
                .split(Named.as("recipient-domain-"))
                .branch((k, v) -> v.dest() == Dest.DECISION, Branched.as("decisions"))
                .branch((k, v) -> v.dest() == Dest.OUTCOME, Branched.as("outcomes"))
                .defaultBranch(Branched.as("releases"));
        domain.get("recipient-domain-decisions").mapValues(StageOut::value, Named.as("recipient-domain-decision-bytes"))
                .to(options.decisionsTopic(), produced("recipient-domain-decisions-sink"));
        domain.get("recipient-domain-outcomes").mapValues(StageOut::value, Named.as("recipient-domain-outcome-bytes"))
                .to(options.outcomesTopic(), produced("recipient-domain-outcomes-sink"));
        domain.get("recipient-domain-releases").mapValues(StageOut::value, Named.as("recipient-domain-release-bytes"))
                .to(options.recipientReleasesTopic(), produced("recipient-domain-releases-sink"));
        return builder.build();
    }

    private static Consumed<String, byte[]> loop(String name) {
        return Consumed.with(Serdes.String(), Serdes.ByteArray()).withName(name);
    }

    private static Produced<String, byte[]> produced(String name) {
        return Produced.with(Serdes.String(), Serdes.ByteArray()).withName(name);
    }

    private static Repartitioned<String, byte[]> repartitioned(String name) {
        return Repartitioned.with(Serdes.String(), Serdes.ByteArray()).withName(name).withNumberOfPartitions(PARTITIONS);
    }

    private static StoreBuilder<KeyValueStore<String, byte[]>> bytesStore(String name) {
        return Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(name), Serdes.String(), Serdes.ByteArray());
    }

    private static StoreBuilder<KeyValueStore<String, Long>> countStore(String name) {
        return Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(name), Serdes.String(), Serdes.Long());
    }

    /**
     * Routes the input records: an intent (its original bytes) to the sender
     * stage, keyed by sender domain; a delivery event that suppresses a
     * recipient (hard bounce and complaint: every class; unsubscribe:
     * OUTBOUND) to the recipient stage, keyed by recipient. Other delivery
     * events are dropped (this peer has no signal budgets or ISP backoff);
     * a record that does not decode is logged, counted and dropped.
     *
     * <p>A task reads the same partition of both topics and Kafka Streams
     * hands it their records in timestamp (log-time) order, so a bounce
     * appended before an intent is routed first within the task.
     */
    /**
     * Keeps the global suppressions store: a hard bounce or a complaint
     * suppresses (tenant, recipient) for every class, an unsubscribe for
     * OUTBOUND. Other delivery events are ignored (this peer has no signal
     * budgets or ISP backoff); a record that does not decode is logged,
     * counted and ignored. Also used when the store is loaded at start.
     */
    static final class SuppressionUpdater implements Processor<byte[], byte[], Void, Void> {
        private static final Logger LOG = LoggerFactory.getLogger(SuppressionUpdater.class);
        private final AvroCodec codec = new AvroCodec();
        private ProcessorContext<Void, Void> context;
        private KeyValueStore<String, byte[]> store;

        @Override
        public void init(ProcessorContext<Void, Void> context) {
            this.context = context;
            this.store = context.getStateStore(RecipientProcessor.SUPPRESSIONS_STORE);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            Delivery d;
            try {
                d = codec.decodeDelivery(record.value());
            } catch (BadRecordException e) {
                PeerCounters.SKIPPED.incrementAndGet();
                RecordMetadata m = context.recordMetadata().orElse(null);
                LOG.warn("skipping record {}: {}", m == null ? "?" : m.topic() + " [" + m.partition() + "] @" + m.offset(), e.getMessage());
                return;
            }
            byte kind = suppressionKind(d.kind());
            if (kind != 0) {
                RecipientProcessor.suppress(store, d.tenant(), d.recipient(), kind);
            }
        }
    }

    /** The suppression a delivery event kind sets, or 0. */
    static byte suppressionKind(String deliveryKind) {
        return switch (deliveryKind) {
            case "BOUNCE_HARD", "COMPLAINT" -> Wire.SUPPRESS_ALL;
            case "UNSUBSCRIBE" -> Wire.SUPPRESS_OUTBOUND;
            default -> 0;
        };
    }

    static final class Router extends FullStageProcessor<byte[], byte[]> {
        private static final Logger LOG = LoggerFactory.getLogger(Router.class);
        private final String intentsTopic;

        Router(String intentsTopic) {
            this.intentsTopic = intentsTopic;
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            RecordMetadata m = context.recordMetadata().orElseThrow();
            try {
                if (m.topic().equals(intentsTopic)) {
                    String domain = codec.decodeIntent(record.value()).senderDomain();
                    context.forward(new Record<>(domain, new StageOut(Dest.NEXT, record.value()), record.timestamp()));
                    return;
                }
                Delivery d = codec.decodeDelivery(record.value());
                byte kind = suppressionKind(d.kind());
                if (kind != 0) {
                    byte[] bytes = wire.suppress(new Wire.Suppress(d.tenant(), d.recipient(), kind));
                    context.forward(new Record<>(d.recipient(), new StageOut(Dest.SUPPRESSION, bytes), record.timestamp()));
                }
            } catch (BadRecordException e) {
                PeerCounters.SKIPPED.incrementAndGet();
                LOG.warn("skipping record {} [{}] @{}: {}", m.topic(), m.partition(), m.offset(), e.getMessage());
            }
        }
    }

    /** For the summary printed at start. */
    static List<String> internalTopics(PeerOptions options) {
        String app = options.applicationId();
        List<String> topics = new java.util.ArrayList<>(List.of(
                app + "-by-sender-domain-repartition",
                app + "-by-recipient-repartition",
                app + "-by-recipient-domain-repartition"));
        if (!options.globalSuppressions()) {
            topics.add(app + "-deliveries-by-recipient-repartition");
        }
        for (String store : storeNames()) {
            // A global store has no changelog: it is loaded from its source topic.
            if (!(store.equals(RecipientProcessor.SUPPRESSIONS_STORE) && options.globalSuppressions())) {
                topics.add(app + "-" + store + "-changelog");
            }
        }
        topics.addAll(loopTopics(options));
        return topics;
    }
}
