package dev.sendgate.peer;

import java.util.List;

import dev.sendgate.peer.AvroCodec.IntentClass;

/**
 * The built-in mailbox and sender-domain window limits of sendgate's sender
 * stage (policy version 0), in UTC.
 */
final class SenderWindows {
    static final long HOUR_MS = 3_600_000L;
    static final long DAY_MS = 86_400_000L;

    private SenderWindows() { }

    enum Scope {
        MAILBOX("mailbox:"),
        SENDER_DOMAIN("sender_domain:");

        final String prefix;

        Scope(String prefix) {
            this.prefix = prefix;
        }
    }

    enum Window {
        HOUR("hour", HOUR_MS, "hourly_limit_exceeded"),
        DAY("day", DAY_MS, "daily_cap_reached");

        final String label;
        final long lengthMs;
        /** The decision reason when this window binds. */
        final String breachReason;

        Window(String label, long lengthMs, String breachReason) {
            this.label = label;
            this.lengthMs = lengthMs;
            this.breachReason = breachReason;
        }

        long start(long timestampMs) {
            return Math.floorDiv(timestampMs, lengthMs) * lengthMs;
        }

        long end(long timestampMs) {
            return start(timestampMs) + lengthMs;
        }
    }

    /** One limited window of a class. */
    record Limit(Scope scope, Window window, long max) { }

    private static final List<Limit> OUTBOUND = List.of(
            new Limit(Scope.MAILBOX, Window.HOUR, 3),
            new Limit(Scope.MAILBOX, Window.DAY, 25),
            new Limit(Scope.SENDER_DOMAIN, Window.HOUR, 100),
            new Limit(Scope.SENDER_DOMAIN, Window.DAY, 1000));

    private static final List<Limit> TRANSACTIONAL = List.of(
            new Limit(Scope.MAILBOX, Window.DAY, 1000),
            new Limit(Scope.SENDER_DOMAIN, Window.HOUR, 1000),
            new Limit(Scope.SENDER_DOMAIN, Window.DAY, 10000));

    /** Replies are never limited, but counted in these windows. */
    static final List<Limit> REPLY_COUNTED = List.of(
            new Limit(Scope.MAILBOX, Window.HOUR, Long.MAX_VALUE),
            new Limit(Scope.MAILBOX, Window.DAY, Long.MAX_VALUE),
            new Limit(Scope.SENDER_DOMAIN, Window.HOUR, Long.MAX_VALUE),
            new Limit(Scope.SENDER_DOMAIN, Window.DAY, Long.MAX_VALUE));

    /**
     * The limited windows of a class, mailbox before sender domain and hour
     * before day (the order of the usage entries). Empty for replies.
     */
    static List<Limit> limits(IntentClass intentClass) {
        return switch (intentClass) {
            case OUTBOUND -> OUTBOUND;
            case TRANSACTIONAL -> TRANSACTIONAL;
            case REPLY -> List.of();
        };
    }

    static String scopeName(Scope scope, String mailbox, String senderDomain) {
        return scope.prefix + (scope == Scope.MAILBOX ? mailbox : senderDomain);
    }

    /**
     * Key of a counter in the "windows" store, e.g.
     * {@code mailbox:ana@acme.com|OUTBOUND|hour|1763971200000}.
     */
    static String counterKey(String scopeName, IntentClass intentClass, Window window, long timestampMs) {
        return scopeName + '|' + intentClass.name() + '|' + window.label + '|' + window.start(timestampMs);
    }
}
