package dev.sendgate.peer;

import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.streams.processor.api.RecordMetadata;
import org.slf4j.Logger;

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

    /**
     * The intent a stage record carries, or null when it cannot be decoded:
     * the record is counted and logged as skipped (a bad record never stops a task).
     */
    static AvroCodec.Intent intentOrSkip(AvroCodec codec, byte[] value, RecordMetadata meta, Logger log) {
        try {
            return codec.decodeIntent(value);
        } catch (AvroCodec.BadRecordException e) {
            SKIPPED.incrementAndGet();
            log.warn("skipping record {} [{}] @{}: {}", meta.topic(), meta.partition(), meta.offset(), e.getMessage());
            return null;
        }
    }

    private PeerCounters() { }
}
