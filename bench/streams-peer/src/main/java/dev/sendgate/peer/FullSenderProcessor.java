package dev.sendgate.peer;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;

import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueIterator;

import dev.sendgate.peer.AvroCodec.Intent;
import dev.sendgate.peer.AvroCodec.IntentClass;
import dev.sendgate.peer.SenderWindows.Limit;
import dev.sendgate.peer.StageOut.Dest;
import dev.sendgate.peer.Wire.Hop;
import dev.sendgate.peer.Wire.Outcome;
import dev.sendgate.peer.Wire.Parked;
import dev.sendgate.peer.Wire.Undo;
import dev.sendgate.peer.Wire.UsageEntry;

/**
 * The sender stage of the full-logic peer, keyed by sender domain, with
 * ordered parking (the default, {@code --parking ordered}). Its input is the
 * intents (original bytes) and the outcomes of the intents it passed on
 * (from the outcomes loop topic).
 *
 * <ol>
 *   <li>idempotency on intent_id (store {@value #INTENTS_STORE}: the decision,
 *       or a marker while the intent is parked or in flight);</li>
 *   <li>approval holds;</li>
 *   <li>mailbox and sender-domain windows (store {@value #WINDOWS_STORE}:
 *       count and in-flight count per window). An intent that fits
 *       <em>reserves</em> one place in every window of its class and is
 *       passed on to the recipient stage; the outcome settles it (kept when
 *       allowed, given back when denied).</li>
 * </ol>
 *
 * <p>Parking (store {@value #PARKED_STORE}), as sendgate parks, but keeping
 * each intent's place in the sequence (its offset on the partition), so that
 * every decision is the one the sequential model takes on the benchmark
 * workload: an intent that does not fit a window only because of
 * reservations still in flight waits in the queue of each such window,
 * ordered by offset. When a window's count changes (an outcome settles a
 * reservation), its queue is served from the front: while the window has
 * room, or once it is full of confirmed sends, the first waiting intent is
 * judged again; it goes on, waits for another window (keeping its place), or
 * is deferred. A later intent of the tenant to the recipient of a parked
 * intent that fits reserves its places at once and then waits, holding them,
 * until every earlier parked intent to that recipient has left, so that the
 * recipient stage meets each recipient's intents in their order. (An intent
 * waiting for one window takes no place in its others meanwhile: a later
 * intent could take the last place of one of those, which the benchmark
 * workload never comes near.)
 *
 * <p>sendgate instead parks on the first such window only, in arrival order,
 * decides one waiting intent per released place, and lets an intent that
 * waits behind a parked one to its recipient take no place meanwhile: a
 * later intent of the same mailbox can then take the place the earlier one
 * would have had ({@link SendgateSenderProcessor}, {@code --parking sendgate}).
 */
final class FullSenderProcessor extends FullSenderBase {
    FullSenderProcessor(int parkMax) {
        super(parkMax);
    }

    /** A new intent: decide it, park it, or reserve and pass it on. Its windows are those of its own log time. */
    @Override
    protected void onIntent(Hop h, long now) {
        if (answeredAgain(h, now)) {
            return;
        }
        Intent intent = h.intent();
        long t = h.logTimeMs();
        if (intent.requiresApproval()) {
            decide(h, "HELD", "pending_approval", null, List.of(), now, true);
            return;
        }
        if (intent.intentClass() == IntentClass.REPLY) {
            // Never limited, but counted (and settled by the outcome like any reservation).
            List<Undo> undo = new ArrayList<>(SenderWindows.REPLY_COUNTED.size());
            for (Limit l : SenderWindows.REPLY_COUNTED) {
                String key = counterKey(intent, l, t);
                long[] c = counter(key);
                putCounter(key, c[0] + 1, c[1] + 1);
                undo.add(new Undo(key, 0));
            }
            intents.put(intent.intentId(), PENDING);
            passOn(h, undo, List.of(), now);
            return;
        }

        intents.put(intent.intentId(), PENDING);
        judge(h, null, now);
    }

    /**
     * Judges an intent against its windows (those of its own log time): it
     * is deferred when one is full of confirmed sends; it waits in the queue
     * of every window that is full only because of reservations in flight;
     * else it reserves a place in each and goes on, unless an earlier intent
     * of the tenant to the same recipient is still parked (then it waits for
     * that one, holding its places). {@code parkedAs}: the intent is parked
     * already (and out of the queue that is being served).
     */
    private void judge(Hop h, Parked parkedAs, long now) {
        Intent intent = h.intent();
        long offset = h.sourceOffset();
        List<Limit> limits = SenderWindows.limits(intent.intentClass());
        int n = limits.size();
        String[] keys = new String[n];
        long[] count = new long[n];
        boolean confirmedFull = false;
        List<Undo> waitFor = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            Limit l = limits.get(i);
            keys[i] = counterKey(intent, l, h.logTimeMs());
            long[] c = counter(keys[i]);
            count[i] = c[0];
            if (c[0] >= l.max()) {
                if (c[0] - c[1] >= l.max()) {
                    confirmedFull = true;
                } else {
                    // Full only because of reservations in flight: it fits if enough are released.
                    waitFor.add(new Undo(keys[i], l.max()));
                }
            }
        }
        if (!confirmedFull && !waitFor.isEmpty() && parkedAs == null && meta(PARKED_COUNT) >= parkMax) {
            // Past the parking bound an intent that would wait for a window is deferred (the safe side).
            confirmedFull = true;
        }
        if (confirmedFull) {
            if (parkedAs != null) {
                leaveQueues(parkedAs, List.of());
                unpark(offset, intent);
            }
            deferAtOnce(h, limits, keys, count, now);
            if (parkedAs != null) {
                releaseFollowers(intent, now);
            }
            return;
        }
        if (!waitFor.isEmpty()) {
            List<Undo> before = parkedAs == null ? List.of() : parkedAs.waiting();
            if (parkedAs != null) {
                leaveQueues(parkedAs, waitFor);
            }
            for (Undo w : waitFor) {
                if (!contains(before, w.key())) {
                    parked.put(queueKey(w.key(), offset), new byte[0]);
                    if (meta(headKey(w.key())) > offset) {
                        // Behind the head: an intent that waited for another window first keeps its place.
                        putMeta(headKey(w.key()), offset);
                    }
                }
            }
            Parked p = new Parked(withHeld(h, List.of()), waitFor);
            if (parkedAs == null) {
                park(offset, p);
            } else {
                putParked(offset, p);
            }
            return;
        }
        List<Undo> held = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            putCounter(keys[i], count[i] + 1, counter(keys[i])[1] + 1);
            held.add(new Undo(keys[i], limits.get(i).max()));
        }
        if (parkedAs != null) {
            leaveQueues(parkedAs, List.of());
        }
        if (earlierToRecipient(intent, offset)) {
            // Holds its places; goes on when the earlier intents to the recipient have left.
            Parked p = new Parked(withHeld(h, held), List.of());
            if (parkedAs == null) {
                park(offset, p);
            } else {
                putParked(offset, p);
            }
            return;
        }
        if (parkedAs != null) {
            unpark(offset, intent);
        }
        passOn(h, held, limits, now);
        if (parkedAs != null) {
            releaseFollowers(intent, now);
        }
    }

    /** The outcome of an intent passed on: settle its reservation, keep the decision, serve the queues it frees. */
    @Override
    protected void onOutcome(Outcome o, long timestamp) {
        Deque<Undo> work = new ArrayDeque<>();
        for (Undo u : o.senderUndo()) {
            // A window that is never limited (limit 0) has no queue to serve.
            if (settle(u, o.allowed()) && u.limit() > 0) {
                work.add(u);
            }
        }
        intents.put(o.intentId(), o.decision());
        if (meta(PARKED_COUNT) > 0) {
            serve(work, timestamp);
        }
    }

    /**
     * Serves the queues of the given windows, in offset order: while a window
     * has room, or once it is full of confirmed sends, its first waiting
     * intent is judged again (it goes on, waits for another window, or is
     * deferred). A window full only because of reservations in flight keeps
     * its queue waiting.
     */
    private void serve(Deque<Undo> work, long timestamp) {
        while (!work.isEmpty()) {
            Undo w = work.poll();
            while (true) {
                Long first = firstWaiting(w.key());
                if (first == null) {
                    break;
                }
                long[] c = counter(w.key());
                if (c[0] >= w.limit() && c[0] - c[1] < w.limit()) {
                    break;
                }
                dequeueFirst(w.key(), first);
                Parked p = getParked(first);
                List<Undo> rest = new ArrayList<>(p.waiting().size());
                for (Undo u : p.waiting()) {
                    if (!u.key().equals(w.key())) {
                        rest.add(u);
                    }
                }
                Parked out = new Parked(p.hop(), rest);
                judge(p.hop(), out, Math.max(p.hop().logTimeMs(), timestamp));
            }
        }
    }

    /** The first waiting intent leaves a window's queue. */
    private void dequeueFirst(String counterKey, long offset) {
        parked.delete(queueKey(counterKey, offset));
        putMeta(headKey(counterKey), offset + 1);
    }

    /** A parked intent leaves the queues it waits in, except those named in {@code keep}. */
    private void leaveQueues(Parked p, List<Undo> keep) {
        for (Undo u : p.waiting()) {
            if (!contains(keep, u.key())) {
                parked.delete(queueKey(u.key(), p.hop().sourceOffset()));
            }
        }
    }

    private static boolean contains(List<Undo> undo, String key) {
        for (Undo u : undo) {
            if (u.key().equals(key)) {
                return true;
            }
        }
        return false;
    }

    /**
     * An intent to a recipient left the sender stage: the intents to that
     * recipient that hold all their places and only waited for it go on, in
     * order, up to the first one still waiting for a window.
     */
    private void releaseFollowers(Intent intent, long timestamp) {
        String prefix = orderPrefix(intent.tenant(), intent.recipient());
        while (meta(parkedToKey(intent)) > 0) {
            Long first = null;
            try (KeyValueIterator<String, byte[]> it = parked.range(prefix + pad(0), prefix + pad(Long.MAX_VALUE))) {
                if (it.hasNext()) {
                    first = unpad(it.next().key);
                }
            }
            if (first == null) {
                return;
            }
            Parked p = getParked(first);
            if (!p.waiting().isEmpty()) {
                return;
            }
            unpark(first, p.hop().intent());
            Hop h = p.hop();
            passOn(h, h.senderUndo(), SenderWindows.limits(h.intent().intentClass()), Math.max(h.logTimeMs(), timestamp));
        }
    }

    /** Whether an earlier intent of the tenant to this intent's recipient is still parked. */
    private boolean earlierToRecipient(Intent intent, long offset) {
        if (offset == 0 || meta(PARKED_COUNT) == 0 || meta(parkedToKey(intent)) == 0) {
            return false;
        }
        String prefix = orderPrefix(intent.tenant(), intent.recipient());
        try (KeyValueIterator<String, byte[]> it = parked.range(prefix + pad(0), prefix + pad(offset - 1))) {
            return it.hasNext();
        }
    }

    /**
     * The first intent waiting in a window's queue. Entries are added in
     * offset order, so the queue keeps a head (no entry before it) and a scan
     * never walks over the entries already served.
     */
    private Long firstWaiting(String counterKey) {
        String prefix = "q\0" + counterKey + "\0";
        try (KeyValueIterator<String, byte[]> it = parked.range(prefix + pad(meta(headKey(counterKey))), prefix + pad(Long.MAX_VALUE))) {
            if (!it.hasNext()) {
                return null;
            }
            return unpad(it.next().key);
        }
    }

    /** Keeps a new intent waiting (its window queue entries are written by the caller). */
    private void park(long offset, Parked p) {
        Intent intent = p.hop().intent();
        putParked(offset, p);
        parked.put(orderKey(intent, offset), new byte[0]);
        addCount(parkedToKey(intent), 1);
        putMeta(PARKED_COUNT, meta(PARKED_COUNT) + 1);
        PeerCounters.PARKED.incrementAndGet();
    }

    /** Forgets a parked intent (not its window queue entries). */
    private void unpark(long offset, Intent intent) {
        parked.delete(parkedKey(offset));
        parked.delete(orderKey(intent, offset));
        addCount(parkedToKey(intent), -1);
        putMeta(PARKED_COUNT, Math.max(meta(PARKED_COUNT) - 1, 0));
    }

    /** How many intents of a tenant to a recipient are parked. */
    private static String parkedToKey(Intent intent) {
        return "n\0" + intent.tenant() + "\0" + intent.recipient();
    }

    /** Reserved in every window of its class: on to the recipient stage, keyed by recipient. */
    private void passOn(Hop h, List<Undo> undo, List<Limit> limits, long now) {
        Intent intent = h.intent();
        long t = h.logTimeMs();
        List<UsageEntry> usage = new ArrayList<>(limits.size());
        for (Limit l : limits) {
            usage.add(usage(l, intent, counter(counterKey(intent, l, t))[0]));
        }
        Hop next = new Hop(intent, t, h.sourceTopic(), h.sourcePartition(), h.sourceOffset(), usage, undo, List.of());
        context.forward(new Record<>(intent.recipient(), new StageOut(Dest.NEXT, wire.hop(next)), Math.max(t, now)));
    }

    /** Deferred by the sender windows: the binding breach is the one whose capacity returns last. */
    private void deferAtOnce(Hop h, List<Limit> limits, String[] keys, long[] count, long now) {
        Intent intent = h.intent();
        long t = h.logTimeMs();
        Limit binding = null;
        List<UsageEntry> usage = new ArrayList<>(limits.size());
        for (int i = 0; i < limits.size(); i++) {
            Limit l = limits.get(i);
            // On a tie the later in the list (sender domain, then day) wins.
            if (count[i] >= l.max() && (binding == null || l.window().end(t) >= binding.window().end(t))) {
                binding = l;
            }
            usage.add(usage(l, intent, count[i]));
        }
        if (binding == null) {
            // Cannot happen (deferred only when a window is full); the safe answer all the same.
            binding = limits.get(0);
        }
        decide(h, "DEFERRED", binding.window().breachReason, binding.window().end(t), usage, now, true);
    }

    private static Hop withHeld(Hop h, List<Undo> held) {
        return new Hop(h.intent(), h.logTimeMs(), h.sourceTopic(), h.sourcePartition(), h.sourceOffset(), List.of(), held, List.of());
    }

    /** A parked intent, by its offset on the partition. */
    private static String parkedKey(long offset) {
        return "p\0" + pad(offset);
    }

    /** The parked intents of a tenant to a recipient, in offset order. */
    private static String orderPrefix(String tenant, String recipient) {
        return "r\0" + tenant + "\0" + recipient + "\0";
    }

    private static String orderKey(Intent intent, long offset) {
        return orderPrefix(intent.tenant(), intent.recipient()) + pad(offset);
    }

    private Parked getParked(long offset) {
        byte[] raw = parked.get(parkedKey(offset));
        if (raw == null) {
            throw new IllegalStateException("parked intent at offset " + offset + " is missing from " + PARKED_STORE);
        }
        return Wire.Reader.parked(raw);
    }

    private void putParked(long offset, Parked p) {
        parked.put(parkedKey(offset), wire.parked(p));
    }
}
