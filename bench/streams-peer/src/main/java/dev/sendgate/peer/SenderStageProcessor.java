package dev.sendgate.peer;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.sendgate.peer.AvroCodec.Intent;
import dev.sendgate.peer.AvroCodec.IntentClass;
import dev.sendgate.peer.SenderWindows.Limit;

/**
 * The sender stage: input keyed by sender domain (so every intent of a domain
 * is decided by one task, in order), output keyed by sender mailbox.
 *
 * <ol>
 *   <li>idempotency on intent_id (store {@value #INTENTS_STORE});</li>
 *   <li>approval holds;</li>
 *   <li>mailbox and sender-domain windows (store {@value #WINDOWS_STORE}):
 *       allow and count in every window, or defer and count nothing.</li>
 * </ol>
 */
final class SenderStageProcessor implements Processor<String, byte[], byte[], byte[]> {
    static final String INTENTS_STORE = "intents";
    static final String WINDOWS_STORE = "windows";

    private static final Logger LOG = LoggerFactory.getLogger(SenderStageProcessor.class);

    private final AvroCodec codec = new AvroCodec();
    private ProcessorContext<byte[], byte[]> context;
    private KeyValueStore<String, byte[]> intents;
    private KeyValueStore<String, Long> windows;

    @Override
    public void init(ProcessorContext<byte[], byte[]> context) {
        this.context = context;
        this.intents = context.getStateStore(INTENTS_STORE);
        this.windows = context.getStateStore(WINDOWS_STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
        RecordMetadata meta = context.recordMetadata().orElseThrow();
        Intent intent = PeerCounters.intentOrSkip(codec, record.value(), meta, LOG);
        if (intent == null) {
            return;
        }
        byte[] key = intent.sender().getBytes(StandardCharsets.UTF_8);
        long t = record.timestamp();

        byte[] seen = intents.get(intent.intentId());
        if (seen != null) {
            forward(key, codec.replay(seen, INTENTS_STORE, meta.topic(), meta.partition(), meta.offset()), t);
            PeerCounters.decided(true);
            return;
        }

        GenericRecord decision = decide(intent, t, meta);
        byte[] bytes = codec.encodeDecision(decision);
        intents.put(intent.intentId(), bytes);
        forward(key, bytes, t);
        PeerCounters.decided(false);
    }

    private GenericRecord decide(Intent intent, long t, RecordMetadata meta) {
        if (intent.requiresApproval()) {
            return AvroCodec.decision(intent, "HELD", "pending_approval", null, List.of(), t,
                    meta.topic(), meta.partition(), meta.offset());
        }
        if (intent.intentClass() == IntentClass.REPLY) {
            // Never limited, but counted.
            for (Limit l : SenderWindows.REPLY_COUNTED) {
                String k = counterKey(intent, l, t);
                windows.put(k, count(k) + 1);
            }
            return AvroCodec.decision(intent, "ALLOWED", "ok", null, List.of(), t,
                    meta.topic(), meta.partition(), meta.offset());
        }

        List<Limit> limits = SenderWindows.limits(intent.intentClass());
        int n = limits.size();
        String[] keys = new String[n];
        long[] used = new long[n];
        Limit binding = null;
        for (int i = 0; i < n; i++) {
            Limit l = limits.get(i);
            keys[i] = counterKey(intent, l, t);
            used[i] = count(keys[i]);
            // The binding breach is the one whose capacity returns last; on
            // a tie the later in the list (sender domain, then day) wins.
            if (used[i] >= l.max() && (binding == null || l.window().end(t) >= binding.window().end(t))) {
                binding = l;
            }
        }
        if (binding == null) {
            for (int i = 0; i < n; i++) {
                used[i] += 1;
                windows.put(keys[i], used[i]);
            }
        }
        List<GenericRecord> usage = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            Limit l = limits.get(i);
            usage.add(AvroCodec.usage(SenderWindows.scopeName(l.scope(), intent.sender(), intent.senderDomain()),
                    l.window().label, used[i], l.max()));
        }
        if (binding == null) {
            return AvroCodec.decision(intent, "ALLOWED", "ok", null, usage, t,
                    meta.topic(), meta.partition(), meta.offset());
        }
        return AvroCodec.decision(intent, "DEFERRED", binding.window().breachReason, binding.window().end(t), usage, t,
                meta.topic(), meta.partition(), meta.offset());
    }

    private static String counterKey(Intent intent, Limit l, long t) {
        String scope = SenderWindows.scopeName(l.scope(), intent.sender(), intent.senderDomain());
        return SenderWindows.counterKey(scope, intent.intentClass(), l.window(), t);
    }

    private long count(String key) {
        Long c = windows.get(key);
        return c == null ? 0L : c;
    }

    private void forward(byte[] key, byte[] value, long timestamp) {
        context.forward(new Record<>(key, value, timestamp));
    }
}
