package dev.sendgate.peer;

import java.util.ArrayList;
import java.util.List;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;

import dev.sendgate.peer.StageOut.Dest;
import dev.sendgate.peer.Wire.Hop;
import dev.sendgate.peer.Wire.UsageEntry;

/** What the recipient and recipient-domain stages of the full-logic peer share: ending an intent. */
final class FullStages {
    private FullStages() { }

    /**
     * Emits the decision on an intent that reached this stage, and the
     * outcome for the sender stage (which settles its reservation either
     * way). When denied, the earlier stages' usage is reported without this
     * intent's reservation, and the recipient stage, if it reserved, gets a
     * release.
     */
    static void finish(ProcessorContext<String, StageOut> context, AvroCodec codec, Wire.Writer wire, Hop h,
                       String status, String reason, Long retryAtMs, List<UsageEntry> ownUsage, long now, String stage) {
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
