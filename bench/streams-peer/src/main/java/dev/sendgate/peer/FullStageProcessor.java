package dev.sendgate.peer;

import java.util.ArrayList;
import java.util.List;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

import dev.sendgate.peer.SenderWindows.Window;
import dev.sendgate.peer.StageOut.Dest;
import dev.sendgate.peer.Wire.Hop;
import dev.sendgate.peer.Wire.UsageEntry;

/**
 * What the processors of the full-logic peer share: each writes
 * {@link StageOut} records (the topology splits them on their destination)
 * through its own codec and wire writer (neither is thread-safe, and Kafka
 * Streams makes one processor per task).
 *
 * <p>The stages after the sender stage (recipient and recipient-domain) also
 * end an intent the same way ({@link #finish}) and count it in their windows
 * the same way ({@link #reserveOrDefer}).
 */
abstract class FullStageProcessor<KIn, VIn> implements Processor<KIn, VIn, String, StageOut> {
    protected final AvroCodec codec = new AvroCodec();
    protected final Wire.Writer wire = new Wire.Writer();
    protected ProcessorContext<String, StageOut> context;

    /** Subclasses that read state stores override this, calling it first. */
    @Override
    public void init(ProcessorContext<String, StageOut> context) {
        this.context = context;
    }

    /**
     * Counts an intent in one window of this stage (a count per key in
     * {@code windows}) or, when the window is full, ends it DEFERRED with the
     * window's breach reason and usage. Returns the usage with the intent
     * counted, or null when it was deferred: the caller then stops, since the
     * intent is decided.
     */
    protected UsageEntry reserveOrDefer(KeyValueStore<String, Long> windows, Hop h, String scope, String key,
                                        Window window, long limit, long now, String stage) {
        Long stored = windows.get(key);
        long c = stored == null ? 0 : stored;
        if (c >= limit) {
            finish(h, "DEFERRED", window.breachReason, window.end(h.logTimeMs()),
                    List.of(new UsageEntry(scope, window.label, c, limit)), now, stage);
            return null;
        }
        windows.put(key, c + 1);
        return new UsageEntry(scope, window.label, c + 1, limit);
    }

    /**
     * Emits the decision on an intent that reached this stage, and the
     * outcome for the sender stage (which settles its reservation either
     * way). When denied, the earlier stages' usage is reported without this
     * intent's reservation, and the recipient stage, if it reserved, gets a
     * release.
     */
    protected void finish(Hop h, String status, String reason, Long retryAtMs, List<UsageEntry> ownUsage, long now,
                          String stage) {
        boolean allowed = status.equals("ALLOWED");
        List<GenericRecord> usage = new ArrayList<>(h.usage().size() + ownUsage.size());
        for (UsageEntry u : h.usage()) {
            long used = allowed ? u.used() : Math.max(u.used() - 1, 0);
            usage.add(AvroCodec.usage(u.scope(), u.window(), used, u.limit()));
        }
        for (UsageEntry u : ownUsage) {
            usage.add(AvroCodec.usage(u.scope(), u.window(), u.used(), u.limit()));
        }
        GenericRecord d = AvroCodec.decision(h.intent(), status, reason, retryAtMs, usage, now,
                h.sourceTopic(), h.sourcePartition(), h.sourceOffset(), stage);
        byte[] bytes = codec.encodeDecision(d);
        context.forward(new Record<>(h.intent().sender(), new StageOut(Dest.DECISION, bytes), now));
        PeerCounters.decided(false);
        context.forward(new Record<>(h.intent().senderDomain(),
                new StageOut(Dest.OUTCOME, wire.outcome(new Wire.Outcome(h.intent().intentId(), allowed, bytes, h.senderUndo()))), now));
        if (!allowed && !h.recipientUndo().isEmpty()) {
            context.forward(new Record<>(h.intent().recipient(),
                    new StageOut(Dest.RELEASE, wire.release(new Wire.Release(h.intent().intentId(), h.recipientUndo()))), now));
        }
    }
}
