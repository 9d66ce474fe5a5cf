package dev.sendgate.peer;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;

import sun.misc.Signal;

/**
 * A Kafka Streams implementation of the windows of sendgate's sender stage
 * ({@code --logic sender}, the default), or of its sender, recipient and
 * recipient-domain stages with reserve and release between them
 * ({@code --logic full}), for benchmarking sendgate against Kafka Streams
 * with exactly_once_v2.
 *
 * <p>Runs until SIGTERM or SIGINT, then closes the Streams instance and exits 0.
 */
public final class SenderStagePeer {
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(60);
    private static final long PROGRESS_EVERY_S = 10;

    private SenderStagePeer() { }

    public static void main(String[] args) throws InterruptedException {
        PeerOptions options;
        try {
            options = PeerOptions.parse(args);
        } catch (PeerOptions.HelpRequested e) {
            System.out.println(PeerOptions.USAGE);
            return;
        } catch (IllegalArgumentException e) {
            System.err.println("error: " + e.getMessage());
            System.err.println(PeerOptions.USAGE);
            System.exit(2);
            return;
        }

        Properties props = streamsProperties(options);
        Topology topology = options.full() ? FullTopology.build(options) : PeerTopology.build(options);
        printSummary(options, props, topology);
        if (options.full()) {
            try {
                createLoopTopics(options);
            } catch (RuntimeException e) {
                System.err.println("error: " + e.getMessage());
                System.exit(1);
                return;
            }
        }

        KafkaStreams streams = new KafkaStreams(topology, props);
        CountDownLatch stop = new CountDownLatch(1);
        AtomicInteger exitCode = new AtomicInteger(0);
        long startedAt = System.nanoTime();

        streams.setStateListener((next, previous) -> {
            if (next == KafkaStreams.State.RUNNING) {
                System.out.printf("streams-peer: RUNNING (from %s, %.1f s after start)%n",
                        previous, (System.nanoTime() - startedAt) / 1e9);
                System.out.flush();
            } else if (next == KafkaStreams.State.ERROR) {
                System.err.println("streams-peer: Kafka Streams entered ERROR state; stopping");
                exitCode.set(1);
                stop.countDown();
            }
        });

        AtomicBoolean closed = new AtomicBoolean(false);
        ScheduledExecutorService progress = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "streams-peer-progress");
            t.setDaemon(true);
            return t;
        });
        Runnable close = () -> {
            if (closed.compareAndSet(false, true)) {
                progress.shutdownNow();
                System.out.println("streams-peer: closing");
                boolean clean = streams.close(CLOSE_TIMEOUT);
                System.out.println("streams-peer: " + (clean ? "closed" : "close timed out after " + CLOSE_TIMEOUT.toSeconds() + " s")
                        + "; " + progressLine(startedAt));
                System.out.flush();
            }
        };
        // Closes the instance on any JVM exit; SIGTERM and SIGINT are
        // handled below so that a requested stop exits with status 0.
        Runtime.getRuntime().addShutdownHook(new Thread(close, "streams-peer-shutdown"));
        for (String name : List.of("TERM", "INT")) {
            try {
                Signal.handle(new Signal(name), sig -> stop.countDown());
            } catch (IllegalArgumentException e) {
                System.err.println("streams-peer: cannot handle SIG" + name + " (" + e.getMessage() + "); the shutdown hook still closes the instance");
            }
        }

        progress.scheduleAtFixedRate(() -> {
            System.out.println("streams-peer: " + progressLine(startedAt) + ", state " + streams.state());
            System.out.flush();
        }, PROGRESS_EVERY_S, PROGRESS_EVERY_S, TimeUnit.SECONDS);

        streams.start();
        stop.await();
        close.run();
        System.exit(exitCode.get());
    }

    /**
     * Creates the full-logic peer's loop topics (outcomes to the sender stage,
     * releases to the recipient stage) unless they exist, with as many
     * partitions as its repartition topics, which they must be co-partitioned with.
     */
    static void createLoopTopics(PeerOptions o) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, o.bootstrap);
        try (Admin admin = Admin.create(p)) {
            List<NewTopic> topics = new ArrayList<>();
            for (String name : FullTopology.loopTopics(o)) {
                topics.add(new NewTopic(name, Optional.of(FullTopology.PARTITIONS), Optional.empty())
                        .configs(Map.of("cleanup.policy", "delete", "message.timestamp.type", "CreateTime")));
            }
            for (Map.Entry<String, KafkaFuture<Void>> e : admin.createTopics(topics).values().entrySet()) {
                try {
                    e.getValue().get(60, TimeUnit.SECONDS);
                    System.out.println("streams-peer: created loop topic " + e.getKey());
                } catch (ExecutionException ex) {
                    if (!(ex.getCause() instanceof TopicExistsException)) {
                        throw new IllegalStateException("cannot create topic " + e.getKey() + ": " + ex.getCause(), ex);
                    }
                }
            }
            Map<String, TopicDescription> described = admin.describeTopics(FullTopology.loopTopics(o)).allTopicNames().get(60, TimeUnit.SECONDS);
            for (TopicDescription d : described.values()) {
                if (d.partitions().size() != FullTopology.PARTITIONS) {
                    throw new IllegalStateException("topic " + d.name() + " has " + d.partitions().size() + " partitions, not "
                            + FullTopology.PARTITIONS + "; delete it or use another namespace");
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while creating the loop topics", e);
        } catch (ExecutionException | TimeoutException e) {
            throw new IllegalStateException("cannot create or describe the loop topics: " + e, e);
        }
    }

    static Properties streamsProperties(PeerOptions o) {
        Properties p = new Properties();
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, o.applicationId());
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, o.bootstrap);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, o.guarantee);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, o.commitIntervalMs);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, o.threads);
        p.put(StreamsConfig.STATE_DIR_CONFIG, o.stateDir);
        p.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        p.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.ByteArraySerde.class);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        return p;
    }

    private static String progressLine(long startedAt) {
        long processed = PeerCounters.PROCESSED.get();
        long first = PeerCounters.FIRST_NANOS.get();
        long last = PeerCounters.LAST_NANOS.get();
        String span = processed == 0 ? "" : String.format(", %.2f s from the first to the latest", (last - first) / 1e9);
        return String.format("%d intents processed (%d replayed, %d records skipped%s)%s, up %.0f s",
                processed, PeerCounters.REPLAYED.get(), PeerCounters.SKIPPED.get(),
                PeerCounters.PARKED.get() == 0 ? "" : ", " + PeerCounters.PARKED.get() + " times parked", span,
                (System.nanoTime() - startedAt) / 1e9);
    }

    private static void printSummary(PeerOptions o, Properties props, Topology topology) {
        StreamsConfig cfg = new StreamsConfig(props);
        StringBuilder s = new StringBuilder("streams-peer: effective configuration\n");
        for (String key : List.of(
                StreamsConfig.APPLICATION_ID_CONFIG,
                StreamsConfig.BOOTSTRAP_SERVERS_CONFIG,
                StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
                StreamsConfig.COMMIT_INTERVAL_MS_CONFIG,
                StreamsConfig.NUM_STREAM_THREADS_CONFIG,
                StreamsConfig.STATE_DIR_CONFIG,
                StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG,
                StreamsConfig.REPLICATION_FACTOR_CONFIG,
                StreamsConfig.NUM_STANDBY_REPLICAS_CONFIG,
                StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG)) {
            s.append(String.format("  %-40s %s%n", key, cfg.originals().containsKey(key) ? cfg.originals().get(key) : cfg.values().get(key)));
        }
        Map<String, Object> producerOverrides = new HashMap<>(cfg.getProducerConfigs("streams-peer-producer"));
        producerOverrides.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        producerOverrides.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class);
        Map<String, ?> producer = new ProducerConfig(producerOverrides).values();
        for (String key : List.of(ProducerConfig.ACKS_CONFIG, ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG,
                ProducerConfig.LINGER_MS_CONFIG, ProducerConfig.BATCH_SIZE_CONFIG, ProducerConfig.COMPRESSION_TYPE_CONFIG,
                ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG)) {
            s.append(String.format("  producer.%-31s %s%n", key, producer.get(key)));
        }
        Map<String, Object> consumerOverrides = new HashMap<>(cfg.getMainConsumerConfigs(o.applicationId(), "streams-peer-consumer", 0));
        consumerOverrides.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        consumerOverrides.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class);
        Map<String, ?> consumer = new ConsumerConfig(consumerOverrides).values();
        for (String key : List.of(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, ConsumerConfig.ISOLATION_LEVEL_CONFIG,
                ConsumerConfig.MAX_POLL_RECORDS_CONFIG, ConsumerConfig.FETCH_MAX_WAIT_MS_CONFIG,
                ConsumerConfig.FETCH_MIN_BYTES_CONFIG, ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG)) {
            s.append(String.format("  consumer.%-31s %s%n", key, consumer.get(key)));
        }
        s.append(String.format("  %-40s %s%n", "logic", o.full() ? "full (sender, recipient, recipient_domain stages; recipient day limit " + o.recipientDayLimit + "; parking " + (o.sendgateParking ? "sendgate" : "ordered") + ", at most " + o.parkMax
                + "; suppressions " + (o.globalSuppressions() ? "global store" : "repartitioned by recipient") + ")" : "sender (sender stage windows only)"));
        s.append(String.format("  %-40s %s -> %s%n", "topics", o.full() ? o.intentsTopic() + ", " + o.deliveryTopic() : o.intentsTopic(), o.decisionsTopic()));
        s.append(String.format("  %-40s %s%n", "internal topics", String.join(", ", o.full() ? FullTopology.internalTopics(o) : PeerTopology.internalTopics(o))));
        s.append(topology.describe());
        System.out.print(s);
        System.out.flush();
    }
}
