package dev.sendgate.peer;

import java.util.ArrayList;
import java.util.List;

/** Command-line options of the peer. */
final class PeerOptions {
    static final String USAGE = String.join("\n",
            "Usage: SenderStagePeer --bootstrap HOST:PORT --namespace NS --state-dir DIR",
            "                       [--threads N] [--guarantee exactly_once_v2|at_least_once]",
            "                       [--commit-interval-ms MS]",
            "",
            "  --bootstrap           Kafka bootstrap servers",
            "  --namespace           topic namespace: reads NS.intents, writes NS.decisions",
            "  --state-dir           Kafka Streams state directory (RocksDB stores)",
            "  --threads             stream threads (default 2)",
            "  --guarantee           processing guarantee (default exactly_once_v2)",
            "  --commit-interval-ms  commit interval (default 100)");

    String bootstrap;
    String namespace;
    String stateDir;
    int threads = 2;
    String guarantee = "exactly_once_v2";
    long commitIntervalMs = 100;

    String intentsTopic() {
        return namespace + ".intents";
    }

    String decisionsTopic() {
        return namespace + ".decisions";
    }

    String applicationId() {
        return namespace + "-streams-peer";
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
