package dev.sendgate.peer;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.apache.kafka.streams.state.KeyValueStore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.sendgate.peer.AvroCodec.Intent;
import dev.sendgate.peer.SenderWindows.Limit;
import dev.sendgate.peer.StageOut.Dest;
import dev.sendgate.peer.Wire.Hop;
import dev.sendgate.peer.Wire.Outcome;
import dev.sendgate.peer.Wire.Undo;
import dev.sendgate.peer.Wire.UsageEntry;

/**
 * What the two sender stages of the full-logic peer share
 * ({@link FullSenderProcessor}, ordered parking, and
 * {@link SendgateSenderProcessor}, sendgate's parking): the stores and how
 * their values are laid out, the split of the input into intents and
 * outcomes, idempotency on intent_id, the settling of a reservation and the
 * decisions they emit. They differ only in how they park intents and decide
 * the parked ones again, which the subclasses implement.
 *
 * <p>The topology builds the same stores for either ({@code --parking}), so
 * the store names live here.
 */
abstract class FullSenderBase extends FullStageProcessor<String, byte[]> {
    static final String INTENTS_STORE = "sender-intents";
    static final String WINDOWS_STORE = "sender-windows";
    static final String PARKED_STORE = "sender-parked";

    /** A resubmitted intent whose first submission is parked or in flight is told to retry after this long. */
    static final long PENDING_RETRY_MS = 1_000;
    /** In {@value #INTENTS_STORE}: the intent is parked or in flight (a decision starts with 0xC3). */
    protected static final byte[] PENDING = {0};

    /** In {@value #PARKED_STORE}: how many intents are parked. */
    protected static final String PARKED_COUNT = "#count";
    /** Offsets and sequence numbers in store keys are zero-padded to this many digits, so keys sort in their order. */
    private static final int OFFSET_DIGITS = 19;

    /** Named after the concrete class, so that a log line says which parking the peer runs. */
    private final Logger log = LoggerFactory.getLogger(getClass());

    protected final int parkMax;
    protected KeyValueStore<String, byte[]> intents;
    protected KeyValueStore<String, byte[]> windows;
    protected KeyValueStore<String, byte[]> parked;

    FullSenderBase(int parkMax) {
        this.parkMax = parkMax;
    }

    @Override
    public void init(ProcessorContext<String, StageOut> context) {
        super.init(context);
        this.intents = context.getStateStore(INTENTS_STORE);
        this.windows = context.getStateStore(WINDOWS_STORE);
        this.parked = context.getStateStore(PARKED_STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
        if (Wire.tag(record.value()) == Wire.OUTCOME) {
            onOutcome(Wire.Reader.outcome(record.value()), record.timestamp());
            return;
        }
        RecordMetadata meta = context.recordMetadata().orElseThrow();
        Intent intent = PeerCounters.intentOrSkip(codec, record.value(), meta, log);
        if (intent == null) {
            return;
        }
        long t = record.timestamp();
        onIntent(new Hop(intent, t, meta.topic(), meta.partition(), meta.offset(), List.of(), List.of(), List.of()), t);
    }

    /** A new intent (original bytes, decoded), decided at {@code now}, its own log time. */
    protected abstract void onIntent(Hop h, long now);

    /** The outcome of an intent this stage passed on, from the outcomes loop topic. */
    protected abstract void onOutcome(Outcome o, long timestamp);

    /**
     * Idempotency on intent_id: answers an intent seen before and returns
     * true. One still parked or in flight is told to retry shortly (neither a
     * second decision nor a second reservation); a decided one gets its
     * stored decision again, as a replay.
     */
    protected boolean answeredAgain(Hop h, long now) {
        Intent intent = h.intent();
        byte[] seen = intents.get(intent.intentId());
        if (seen == null) {
            return false;
        }
        if (seen.length == 1 && seen[0] == PENDING[0]) {
            decide(h, "DEFERRED", "decision_pending", now + PENDING_RETRY_MS, List.of(), now, false);
            return true;
        }
        RecordMetadata meta = context.recordMetadata().orElseThrow();
        emitDecision(intent, codec.replay(seen, INTENTS_STORE, meta.topic(), meta.partition(), meta.offset()), now);
        PeerCounters.decided(true);
        return true;
    }

    /**
     * Settles one reservation named by an outcome: the place is kept when the
     * intent was allowed and given back when it was denied, and it is no
     * longer in flight either way. False when the window's counter is gone.
     */
    protected boolean settle(Undo u, boolean allowed) {
        byte[] raw = windows.get(u.key());
        if (raw == null) {
            return false;
        }
        long[] c = decodeCounter(raw);
        putCounter(u.key(), allowed ? c[0] : Math.max(c[0] - 1, 0), Math.max(c[1] - 1, 0));
        return true;
    }

    /** Emits a sender-stage decision; {@code keep}: also store it for replays. */
    protected void decide(Hop h, String status, String reason, Long retryAtMs, List<UsageEntry> usage, long now, boolean keep) {
        List<GenericRecord> u = new ArrayList<>(usage.size());
        for (UsageEntry e : usage) {
            u.add(AvroCodec.usage(e.scope(), e.window(), e.used(), e.limit()));
        }
        GenericRecord d = AvroCodec.decision(h.intent(), status, reason, retryAtMs, u, now,
                h.sourceTopic(), h.sourcePartition(), h.sourceOffset(), "sender");
        byte[] bytes = codec.encodeDecision(d);
        if (keep) {
            intents.put(h.intent().intentId(), bytes);
        }
        emitDecision(h.intent(), bytes, now);
        PeerCounters.decided(false);
    }

    private void emitDecision(Intent intent, byte[] bytes, long timestamp) {
        context.forward(new Record<>(intent.sender(), new StageOut(Dest.DECISION, bytes), timestamp));
    }

    protected static UsageEntry usage(Limit l, Intent intent, long used) {
        return new UsageEntry(SenderWindows.scopeName(l.scope(), intent.sender(), intent.senderDomain()),
                l.window().label, used, l.max());
    }

    /** The key of an intent's counter in a window of its class, at log time {@code t}. */
    protected static String counterKey(Intent intent, Limit l, long t) {
        return SenderWindows.counterKey(SenderWindows.scopeName(l.scope(), intent.sender(), intent.senderDomain()),
                intent.intentClass(), l.window(), t);
    }

    /** (count, in flight) of a window counter. */
    protected long[] counter(String key) {
        byte[] raw = windows.get(key);
        return raw == null ? new long[] {0, 0} : decodeCounter(raw);
    }

    private static long[] decodeCounter(byte[] raw) {
        ByteBuffer b = ByteBuffer.wrap(raw);
        return new long[] {b.getLong(), b.getLong()};
    }

    protected void putCounter(String key, long count, long pending) {
        windows.put(key, ByteBuffer.allocate(16).putLong(count).putLong(pending).array());
    }

    /** A number kept in {@value #PARKED_STORE} beside the parked intents (0 when absent). */
    protected long meta(String key) {
        byte[] raw = parked.get(key);
        return raw == null ? 0 : ByteBuffer.wrap(raw).getLong();
    }

    protected void putMeta(String key, long value) {
        parked.put(key, ByteBuffer.allocate(8).putLong(value).array());
    }

    /** Adds to a number in {@value #PARKED_STORE}, deleting it when it reaches 0 (so the store keeps no zeros). */
    protected void addCount(String key, long delta) {
        long n = meta(key) + delta;
        if (n > 0) {
            putMeta(key, n);
        } else {
            parked.delete(key);
        }
    }

    /** The queue of a window (or other wait), in the order of {@code position} (an offset or a sequence number). */
    protected static String queueKey(String counterKey, long position) {
        return "q\0" + counterKey + "\0" + pad(position);
    }

    /** Where the front of a queue is (the entries before it are served), so that a scan starts there. */
    protected static String headKey(String counterKey) {
        return "h\0" + counterKey;
    }

    protected static String pad(long position) {
        String s = Long.toString(position);
        return "0".repeat(OFFSET_DIGITS - s.length()) + s;
    }

    /** The position at the end of a key written with {@link #pad}. */
    protected static long unpad(String key) {
        return Long.parseLong(key.substring(key.length() - OFFSET_DIGITS));
    }
}
