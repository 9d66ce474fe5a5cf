package dev.sendgate.peer;

import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;

import dev.sendgate.peer.AvroCodec.Intent;
import dev.sendgate.peer.AvroCodec.IntentClass;
import dev.sendgate.peer.SenderWindows.Limit;
import dev.sendgate.peer.StageOut.Dest;
import dev.sendgate.peer.Wire.Hop;
import dev.sendgate.peer.Wire.Outcome;
import dev.sendgate.peer.Wire.Undo;
import dev.sendgate.peer.Wire.UsageEntry;

/**
 * The sender stage of the full-logic peer with sendgate's own parking
 * ({@code --parking sendgate}), keyed by sender domain. Not exact on a
 * backlog: see {@link FullSenderProcessor} and README.md. Its input
 * is the intents (original bytes) and the outcomes of the intents it passed
 * on (from the outcomes loop topic).
 *
 * <ol>
 *   <li>idempotency on intent_id (store {@value #INTENTS_STORE}: the decision,
 *       or a marker while the intent is parked or in flight);</li>
 *   <li>approval holds;</li>
 *   <li>mailbox and sender-domain windows (store {@value #WINDOWS_STORE}:
 *       count and in-flight count per window). An intent that fits
 *       <em>reserves</em> one place in every window of its class and is
 *       passed on to the recipient stage; the outcome settles it (kept when
 *       allowed, given back when denied). An intent that does not fit only
 *       because of reservations still in flight is <em>parked</em> (store
 *       {@value #PARKED_STORE}) on the first such window and decided again
 *       when outcomes settle it; a later intent to the recipient of a parked
 *       intent waits behind it, so that the recipient stage meets them in
 *       order. Both as sendgate's sender stage does.</li>
 * </ol>
 */
final class SendgateSenderProcessor extends FullSenderBase {
    /** In {@value #PARKED_STORE}: the sequence number of the next intent parked (the queues' order). */
    private static final String PARKED_SEQ = "#seq";
    /** Past the last key {@link #queueKey} can make: the end of a queue scan. */
    private static final String SEQ_MAX = "9999999999999999999";
    private static final String ORDER_PREFIX = "order\0";

    SendgateSenderProcessor(int parkMax) {
        super(parkMax);
    }

    @Override
    protected void onIntent(Hop h, long now) {
        evaluate(h, now, false);
    }

    /**
     * Decides an intent, parks it, or reserves and passes it on. {@code now}
     * is the log time it is decided at (its own, or the outcome's that
     * settled it when it was parked); its windows are always those of its
     * own log time.
     */
    private void evaluate(Hop h, long now, boolean fromPark) {
        Intent intent = h.intent();
        long t = h.logTimeMs();
        // Not for a parked intent: its entry in the intents store is the PENDING marker it wrote itself.
        if (!fromPark && answeredAgain(h, now)) {
            return;
        }
        if (intent.requiresApproval()) {
            decide(h, "HELD", "pending_approval", null, List.of(), now, true);
            return;
        }

        boolean reply = intent.intentClass() == IntentClass.REPLY;
        // Order: while an earlier intent of this tenant to this recipient
        // waits for reservations in flight, this one waits behind it, so that
        // the recipient stage meets one sender domain's intents to a
        // recipient in the order they came (its caps depend on that order).
        if (!reply && !fromPark && waitsBehind(intent.tenant(), intent.recipient())
                && park(h, orderQueue(intent.tenant(), intent.recipient()), false)) {
            return;
        }

        List<Limit> limits = reply ? SenderWindows.REPLY_COUNTED : SenderWindows.limits(intent.intentClass());
        int n = limits.size();
        String[] keys = new String[n];
        long[] count = new long[n];
        long[] pending = new long[n];
        Limit binding = null;
        int firstBreach = -1;
        boolean couldFit = true;
        for (int i = 0; i < n; i++) {
            Limit l = limits.get(i);
            keys[i] = counterKey(intent, l, t);
            long[] c = counter(keys[i]);
            count[i] = c[0];
            pending[i] = c[1];
            if (!reply && count[i] >= l.max()) {
                // The binding breach is the one whose capacity returns last; on
                // a tie the later in the list (sender domain, then day) wins.
                if (binding == null || l.window().end(t) >= binding.window().end(t)) {
                    binding = l;
                }
                if (firstBreach < 0) {
                    firstBreach = i;
                }
                // Full only because of reservations in flight: it fits if enough are released.
                couldFit &= count[i] - pending[i] < l.max();
            }
        }
        if (binding != null) {
            if (couldFit && park(h, keys[firstBreach], fromPark)) {
                return;
            }
            List<UsageEntry> usage = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                usage.add(usage(limits.get(i), intent, count[i]));
            }
            decide(h, "DEFERRED", binding.window().breachReason, binding.window().end(t), usage, now, true);
            return;
        }

        List<Undo> undo = new ArrayList<>(n);
        List<UsageEntry> usage = new ArrayList<>(reply ? 0 : n);
        for (int i = 0; i < n; i++) {
            Limit l = limits.get(i);
            putCounter(keys[i], count[i] + 1, pending[i] + 1);
            undo.add(new Undo(keys[i], reply ? 0 : l.max()));
            if (!reply) {
                usage.add(usage(l, intent, count[i] + 1));
            }
        }
        if (!fromPark) {
            intents.put(intent.intentId(), PENDING);
        }
        Hop next = new Hop(intent, t, h.sourceTopic(), h.sourcePartition(), h.sourceOffset(), usage, undo, List.of());
        context.forward(new Record<>(intent.recipient(), new StageOut(Dest.NEXT, wire.hop(next)), Math.max(t, now)));
    }

    /** The outcome of an intent passed on: settle its reservation, keep the decision, decide what waited on it. */
    @Override
    protected void onOutcome(Outcome o, long timestamp) {
        for (Undo u : o.senderUndo()) {
            settle(u, o.allowed());
        }
        intents.put(o.intentId(), o.decision());
        unpark(o, timestamp);
    }

    /**
     * A released reservation frees one place: the oldest intent waiting on
     * that window is decided again. When nothing is in flight any more, or
     * the confirmed sends alone fill the window, waiting cannot help any of
     * them: they are all decided again.
     */
    private void unpark(Outcome o, long timestamp) {
        if (meta(PARKED_COUNT) == 0) {
            return;
        }
        for (Undo u : o.senderUndo()) {
            if (u.limit() == 0) {
                continue; // never limited: nothing waits on it
            }
            long[] c = counter(u.key());
            long pending = c[1];
            long confirmed = c[0] - c[1];
            boolean all = pending == 0 || confirmed >= u.limit();
            if (!all && o.allowed()) {
                continue;
            }
            decideParked(u.key(), all ? parkMax : 1, timestamp);
        }
    }

    /** Decides again, oldest first, up to {@code n} intents parked on a counter. */
    private void decideParked(String counterKey, int n, long timestamp) {
        String headKey = headKey(counterKey);
        long head = meta(headKey);
        List<KeyValue<String, byte[]>> waiting = new ArrayList<>();
        try (KeyValueIterator<String, byte[]> it = parked.range(queueKey(counterKey, head), queueEnd(counterKey))) {
            while (it.hasNext() && waiting.size() < n) {
                waiting.add(it.next());
            }
        }
        if (waiting.isEmpty()) {
            return;
        }
        String last = waiting.get(waiting.size() - 1).key;
        putMeta(headKey, unpad(last) + 1);
        putMeta(PARKED_COUNT, Math.max(meta(PARKED_COUNT) - waiting.size(), 0));
        boolean following = counterKey.startsWith(ORDER_PREFIX);
        for (KeyValue<String, byte[]> kv : waiting) {
            parked.delete(kv.key);
            Hop h = Wire.Reader.hop(kv.value);
            Intent i = h.intent();
            if (following) {
                addBehind(i.tenant(), i.recipient(), -1);
            } else {
                addParkedTo(i.tenant(), i.recipient(), -1);
            }
            evaluate(h, Math.max(h.logTimeMs(), timestamp), true);
            if (!following) {
                releaseFollowers(i.tenant(), i.recipient(), timestamp);
            }
        }
    }

    /**
     * The intents that waited behind a recipient's parked intent, decided in
     * their order now that it is decided, until one of them parks on a
     * window in turn (the rest wait behind it).
     */
    private void releaseFollowers(String tenant, String recipient, long timestamp) {
        String queue = orderQueue(tenant, recipient);
        for (int i = 0; i < parkMax; i++) {
            if (meta(parkedToKey(tenant, recipient)) > 0 || !waitsBehind(tenant, recipient)) {
                break;
            }
            decideParked(queue, 1, timestamp);
        }
    }

    /** Whether a new intent to a recipient must wait: an earlier one is parked on a window, or waits behind one that is. */
    private boolean waitsBehind(String tenant, String recipient) {
        if (meta(PARKED_COUNT) == 0) {
            return false;
        }
        return meta(parkedToKey(tenant, recipient)) > 0 || meta(behindKey(tenant, recipient)) > 0;
    }

    /** Counts the intents to a recipient parked on a window (not behind another intent). */
    private void addParkedTo(String tenant, String recipient, long delta) {
        addCount(parkedToKey(tenant, recipient), delta);
    }

    /** Counts the intents to a recipient waiting behind a parked one (its order queue's length). */
    private void addBehind(String tenant, String recipient, long delta) {
        addCount(behindKey(tenant, recipient), delta);
    }

    private static String parkedToKey(String tenant, String recipient) {
        return "t\0" + tenant + "\0" + recipient;
    }

    private static String behindKey(String tenant, String recipient) {
        return "b\0" + tenant + "\0" + recipient;
    }

    /** The queue of the intents waiting behind a parked intent to a recipient (never a window counter key). */
    private static String orderQueue(String tenant, String recipient) {
        return ORDER_PREFIX + tenant + "\0" + recipient;
    }

    /**
     * Keeps an intent until the reservations in flight resolve (on a window's
     * queue), or until an earlier intent to its recipient is decided (on that
     * recipient's order queue); false when the partition keeps as many as it may.
     */
    private boolean park(Hop h, String counterKey, boolean fromPark) {
        long count = meta(PARKED_COUNT);
        if (count >= parkMax) {
            return false;
        }
        long seq = meta(PARKED_SEQ);
        parked.put(queueKey(counterKey, seq), wire.hop(h));
        putMeta(PARKED_SEQ, seq + 1);
        putMeta(PARKED_COUNT, count + 1);
        if (counterKey.startsWith(ORDER_PREFIX)) {
            addBehind(h.intent().tenant(), h.intent().recipient(), 1);
        } else {
            addParkedTo(h.intent().tenant(), h.intent().recipient(), 1);
        }
        if (!fromPark) {
            intents.put(h.intent().intentId(), PENDING);
        }
        PeerCounters.PARKED.incrementAndGet();
        return true;
    }

    private static String queueEnd(String counterKey) {
        return "q\0" + counterKey + "\0" + SEQ_MAX;
    }
}
