package dev.sendgate.peer;

import java.util.List;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Named;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Repartitioned;
import org.apache.kafka.streams.processor.api.ContextualFixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.Stores;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.sendgate.peer.AvroCodec.BadRecordException;

/**
 * intents (keyed by mailbox)
 *   -> decode, drop what does not decode
 *   -> selectKey(sender domain) -> repartition (6 partitions)
 *   -> sender stage (RocksDB stores "intents" and "windows")
 *   -> decisions (keyed by mailbox)
 */
final class PeerTopology {
    static final int REPARTITION_PARTITIONS = 6;

    private PeerTopology() { }

    static Topology build(PeerOptions options) {
        StreamsBuilder builder = new StreamsBuilder();
        // Persistent RocksDB stores, changelogged (the default), no caching.
        builder.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(SenderStageProcessor.INTENTS_STORE), Serdes.String(), Serdes.ByteArray()));
        builder.addStateStore(Stores.keyValueStoreBuilder(
                Stores.persistentKeyValueStore(SenderStageProcessor.WINDOWS_STORE), Serdes.String(), Serdes.Long()));

        builder.stream(options.intentsTopic(), Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("intents"))
                .processValues(DecodeForRouting::new, Named.as("decode-intent"))
                .selectKey((mailbox, routed) -> routed.senderDomain(), Named.as("select-sender-domain"))
                .mapValues(Routed::bytes, Named.as("original-bytes"))
                .repartition(Repartitioned.with(Serdes.String(), Serdes.ByteArray())
                        .withName("by-sender-domain")
                        .withNumberOfPartitions(REPARTITION_PARTITIONS))
                .process(SenderStageProcessor::new, Named.as("sender-stage"),
                        SenderStageProcessor.INTENTS_STORE, SenderStageProcessor.WINDOWS_STORE)
                .to(options.decisionsTopic(), Produced.with(Serdes.ByteArray(), Serdes.ByteArray()).withName("decisions"));
        return builder.build();
    }

    /** An intent's original bytes and the domain it is routed by. */
    record Routed(String senderDomain, byte[] bytes) { }

    /**
     * Decodes an intent to find its sender domain; logs, counts and drops a
     * record that does not decode.
     */
    static final class DecodeForRouting extends ContextualFixedKeyProcessor<byte[], byte[], Routed> {
        private static final Logger LOG = LoggerFactory.getLogger(DecodeForRouting.class);
        private final AvroCodec codec = new AvroCodec();

        @Override
        public void process(FixedKeyRecord<byte[], byte[]> record) {
            String domain;
            try {
                domain = codec.decodeIntent(record.value()).senderDomain();
            } catch (BadRecordException e) {
                PeerCounters.SKIPPED.incrementAndGet();
                RecordMetadata m = context().recordMetadata().orElse(null);
                LOG.warn("skipping record {}: {}",
                        m == null ? "?" : m.topic() + " [" + m.partition() + "] @" + m.offset(), e.getMessage());
                return;
            }
            context().forward(record.withValue(new Routed(domain, record.value())));
        }
    }

    /** For the summary printed at start. */
    static List<String> internalTopics(PeerOptions options) {
        String app = options.applicationId();
        return List.of(
                app + "-by-sender-domain-repartition",
                app + "-" + SenderStageProcessor.INTENTS_STORE + "-changelog",
                app + "-" + SenderStageProcessor.WINDOWS_STORE + "-changelog");
    }
}
