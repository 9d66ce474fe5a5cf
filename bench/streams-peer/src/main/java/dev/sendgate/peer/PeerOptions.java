package dev.sendgate.peer;

import java.util.ArrayList;
import java.util.List;

/** Command-line options of the peer. */
final class PeerOptions {
    static final String USAGE = String.join("\n",
            "Usage: SenderStagePeer --bootstrap HOST:PORT --namespace NS --state-dir DIR",
            "                       [--logic sender|full] [--threads N] [--guarantee exactly_once_v2|at_least_once]",
            "                       [--commit-interval-ms MS] [--park-max N] [--recipient-day-limit N]",
            "                       [--suppressions global|repartition] [--parking ordered|sendgate]",
            "",
            "  --bootstrap           Kafka bootstrap servers",
            "  --namespace           topic namespace: reads NS.intents (and NS.delivery with --logic full),",
            "                        writes NS.decisions",
            "  --state-dir           Kafka Streams state directory (RocksDB stores)",
            "  --logic               sender: the sender stage's windows alone (default);",
            "                        full: the sender, recipient and recipient-domain stages",
            "  --threads             stream threads (default 2)",
            "  --guarantee           processing guarantee (default exactly_once_v2)",
            "  --commit-interval-ms  commit interval (default 100)",
            "  --parking             --logic full: ordered (default): parked intents keep their place",
            "                        in each window's queue and per recipient, so that every decision is",
            "                        the sequential model's; sendgate: sendgate's parking (see README.md)",
            "  --park-max            --logic full: most intents a sender partition keeps waiting",
            "                        for reservations in flight (default 1000000; sendgate's is 64)",
            "  --recipient-day-limit --logic full: recipient.outbound.day and recipient.transactional.day",
            "                        (default 2, as bench/policy.toml)",
            "  --suppressions        --logic full: global (default): a global store of the delivery",
            "                        topic, loaded before processing starts; repartition: the delivery",
            "                        events repartitioned by recipient into the recipient stage",
            "                        (a bounce can reach it after a later intent; see README.md)");

    /** Which of sendgate's stages the peer implements. */
    enum Logic { SENDER, FULL }

    String bootstrap;
    String namespace;
    String stateDir;
    int threads = 2;
    String guarantee = "exactly_once_v2";
    long commitIntervalMs = 100;
    Logic logic = Logic.SENDER;
    int parkMax = 1_000_000;
    long recipientDayLimit = RecipientLimits.BENCH_RECIPIENT_DAY;
    boolean repartitionSuppressions = false;
    boolean sendgateParking = false;

    boolean globalSuppressions() {
        return !repartitionSuppressions;
    }

    boolean full() {
        return logic == Logic.FULL;
    }

    String intentsTopic() {
        return namespace + ".intents";
    }

    String decisionsTopic() {
        return namespace + ".decisions";
    }

    String deliveryTopic() {
        return namespace + ".delivery";
    }

    /** Unchanged for the sender-only peer; the full-logic peer has an id of its own. */
    String applicationId() {
        return namespace + (full() ? "-streams-peer-full" : "-streams-peer");
    }

    /** Full logic: outcomes back to the sender stage (key: sender domain). */
    String outcomesTopic() {
        return applicationId() + "-outcomes-loop";
    }

    /** Full logic: releases back to the recipient stage (key: recipient address). */
    String recipientReleasesTopic() {
        return applicationId() + "-recipient-releases-loop";
    }

    /** Parses the arguments; throws IllegalArgumentException with a message on bad input. */
    static PeerOptions parse(String[] args) {
        PeerOptions o = new PeerOptions();
        List<String> missing = new ArrayList<>();
        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            String name = arg;
            String value = null;
            int eq = arg.indexOf('=');
            if (arg.startsWith("--") && eq > 0) {
                name = arg.substring(0, eq);
                value = arg.substring(eq + 1);
            }
            if (name.equals("-h") || name.equals("--help")) {
                throw new HelpRequested();
            }
            if (value == null) {
                if (i + 1 >= args.length) {
                    throw new IllegalArgumentException("option " + name + " needs a value");
                }
                value = args[++i];
            }
            switch (name) {
                case "--bootstrap" -> o.bootstrap = value;
                case "--namespace" -> o.namespace = value;
                case "--state-dir" -> o.stateDir = value;
                case "--threads" -> o.threads = positiveInt(name, value);
                case "--guarantee" -> {
                    if (!value.equals("exactly_once_v2") && !value.equals("at_least_once")) {
                        throw new IllegalArgumentException("--guarantee must be exactly_once_v2 or at_least_once, not " + value);
                    }
                    o.guarantee = value;
                }
                case "--commit-interval-ms" -> o.commitIntervalMs = positiveInt(name, value);
                case "--logic" -> {
                    switch (value) {
                        case "sender" -> o.logic = Logic.SENDER;
                        case "full" -> o.logic = Logic.FULL;
                        default -> throw new IllegalArgumentException("--logic must be sender or full, not " + value);
                    }
                }
                case "--park-max" -> o.parkMax = positiveInt(name, value);
                case "--recipient-day-limit" -> o.recipientDayLimit = positiveInt(name, value);
                case "--parking" -> {
                    switch (value) {
                        case "ordered" -> o.sendgateParking = false;
                        case "sendgate" -> o.sendgateParking = true;
                        default -> throw new IllegalArgumentException("--parking must be ordered or sendgate, not " + value);
                    }
                }
                case "--suppressions" -> {
                    switch (value) {
                        case "global" -> o.repartitionSuppressions = false;
                        case "repartition" -> o.repartitionSuppressions = true;
                        default -> throw new IllegalArgumentException("--suppressions must be global or repartition, not " + value);
                    }
                }
                default -> throw new IllegalArgumentException("unknown option " + name);
            }
        }
        if (o.bootstrap == null) {
            missing.add("--bootstrap");
        }
        if (o.namespace == null) {
            missing.add("--namespace");
        }
        if (o.stateDir == null) {
            missing.add("--state-dir");
        }
        if (!missing.isEmpty()) {
            throw new IllegalArgumentException("missing " + String.join(", ", missing));
        }
        return o;
    }

    private static int positiveInt(String name, String value) {
        try {
            int n = Integer.parseInt(value);
            if (n < 1) {
                throw new NumberFormatException();
            }
            return n;
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(name + " must be a positive integer, not " + value);
        }
    }

    /** Thrown for -h / --help. */
    static final class HelpRequested extends RuntimeException {
        private static final long serialVersionUID = 1L;

        HelpRequested() {
            super(null, null, false, false);
        }
    }
}
