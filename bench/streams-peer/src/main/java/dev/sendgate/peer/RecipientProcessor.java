package dev.sendgate.peer;

import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

import dev.sendgate.peer.AvroCodec.Intent;
import dev.sendgate.peer.AvroCodec.IntentClass;
import dev.sendgate.peer.SenderWindows.Window;
import dev.sendgate.peer.StageOut.Dest;
import dev.sendgate.peer.Wire.Hop;
import dev.sendgate.peer.Wire.UsageEntry;

/**
 * The recipient stage of the full-logic peer, keyed by recipient address.
 * Its input is the intents the sender stage passed on, the suppressions
 * from the delivery topic and the releases of the recipient-domain stage.
 *
 * <ol>
 *   <li>suppression per (tenant, recipient) (store {@value #SUPPRESSIONS_STORE}):
 *       a hard bounce or a complaint blocks every class, an unsubscribe
 *       OUTBOUND only: {@code BLOCKED recipient_suppressed};</li>
 *   <li>the per-recipient daily window of the class (store
 *       {@value #WINDOWS_STORE}): {@code DEFERRED daily_cap_reached}, or
 *       reserve one place and pass the intent on to the recipient-domain
 *       stage, keyed by the recipient domain's group.</li>
 * </ol>
 * A denial is emitted here, with an outcome for the sender stage so that it
 * gives back its reservation.
 */
final class RecipientProcessor extends FullStageProcessor<String, byte[]> {
    static final String SUPPRESSIONS_STORE = "recipient-suppressions";
    static final String WINDOWS_STORE = "recipient-windows";
    private static final String STAGE = "recipient";

    private final long recipientDayLimit;
    private KeyValueStore<String, byte[]> suppressions;
    private KeyValueStore<String, Long> windows;

    RecipientProcessor(long recipientDayLimit) {
        this.recipientDayLimit = recipientDayLimit;
    }

    @Override
    public void init(ProcessorContext<String, StageOut> context) {
        super.init(context);
        this.suppressions = context.getStateStore(SUPPRESSIONS_STORE);
        this.windows = context.getStateStore(WINDOWS_STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
        switch (Wire.tag(record.value())) {
            case Wire.HOP -> onHop(Wire.Reader.hop(record.value()), record.timestamp());
            case Wire.SUPPRESS -> {
                Wire.Suppress s = Wire.Reader.suppress(record.value());
                suppress(suppressions, s.tenant(), s.recipient(), s.kind());
            }
            case Wire.RELEASE -> {
                for (String key : Wire.Reader.release(record.value()).keys()) {
                    Long c = windows.get(key);
                    if (c != null && c > 0) {
                        windows.put(key, c - 1);
                    }
                }
            }
            default -> throw new IllegalStateException("unknown record tag " + Wire.tag(record.value()) + " on the recipient stage's input");
        }
    }

    /** Records a suppression; the stronger kind stays (every class over OUTBOUND only). */
    static void suppress(KeyValueStore<String, byte[]> store, String tenant, String recipient, byte kind) {
        String key = suppressionKey(tenant, recipient);
        byte[] old = store.get(key);
        if (old == null || (old[0] == Wire.SUPPRESS_OUTBOUND && kind == Wire.SUPPRESS_ALL)) {
            store.put(key, new byte[] {kind});
        }
    }

    private void onHop(Hop h, long timestamp) {
        Intent i = h.intent();
        long t = h.logTimeMs();
        long now = Math.max(t, timestamp);
        byte[] s = suppressions.get(suppressionKey(i.tenant(), i.recipient()));
        if (s != null && (s[0] == Wire.SUPPRESS_ALL || i.intentClass() == IntentClass.OUTBOUND)) {
            finish(h, "BLOCKED", "recipient_suppressed", null, List.of(), now, STAGE);
            return;
        }
        List<UsageEntry> usage = new ArrayList<>(h.usage().size() + 2);
        usage.addAll(h.usage());
        List<String> undo = List.of();
        long limit = RecipientLimits.recipientDayLimit(i.intentClass(), recipientDayLimit);
        if (limit > 0) {
            String scope = RecipientLimits.recipientScope(i.tenant(), i.recipient());
            String key = RecipientLimits.counterKey(scope, i.intentClass(), Window.DAY, t);
            UsageEntry u = reserveOrDefer(windows, h, scope, key, Window.DAY, limit, now, STAGE);
            if (u == null) {
                return; // deferred
            }
            usage.add(u);
            undo = List.of(key);
        }
        Hop next = new Hop(i, t, h.sourceTopic(), h.sourcePartition(), h.sourceOffset(), usage, h.senderUndo(), undo);
        String group = RecipientLimits.group(RecipientLimits.domainOf(i.recipient()));
        context.forward(new Record<>(group, new StageOut(Dest.NEXT, wire.hop(next)), now));
    }

    static String suppressionKey(String tenant, String recipient) {
        return tenant + '\0' + recipient;
    }
}
