package dev.sendgate.peer;

import java.util.concurrent.atomic.AtomicLong;

/** Process-wide progress counters, read by the periodic progress line. */
final class PeerCounters {
    /** Intents that got a decision (replays included). */
    static final AtomicLong PROCESSED = new AtomicLong();
    /** Replays among them. */
    static final AtomicLong REPLAYED = new AtomicLong();
    /** Records skipped because they could not be decoded. */
    static final AtomicLong SKIPPED = new AtomicLong();
    /** Times an intent was parked to wait for reservations in flight (full logic only). */
    static final AtomicLong PARKED = new AtomicLong();
    /** System.nanoTime() of the first and the latest decision (0 before the first). */
    static final AtomicLong FIRST_NANOS = new AtomicLong();
    static final AtomicLong LAST_NANOS = new AtomicLong();

    /** Counts one decision. */
    static void decided(boolean replay) {
        long now = System.nanoTime();
        FIRST_NANOS.compareAndSet(0, now);
        LAST_NANOS.set(now);
        PROCESSED.incrementAndGet();
        if (replay) {
            REPLAYED.incrementAndGet();
        }
    }

    private PeerCounters() { }
}
