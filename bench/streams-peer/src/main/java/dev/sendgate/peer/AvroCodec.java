package dev.sendgate.peer;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.util.List;
import java.util.Locale;

import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;

/**
 * Avro single-object encoding (0xC3 0x01, the schema's CRC-64-AVRO
 * fingerprint, then the binary body) of the SendIntent, DeliveryEvent and
 * Decision records, with the schemas sendgate uses (copied unchanged into the
 * resources, so the fingerprints match).
 *
 * <p>Not thread-safe: create one per stream task (or per thread).
 */
final class AvroCodec {
    static final Schema INTENT_SCHEMA = load("/send_intent.avsc");
    static final Schema DECISION_SCHEMA = load("/decision.avsc");
    static final Schema DELIVERY_SCHEMA = load("/delivery_event.avsc");
    static final Schema USAGE_SCHEMA = DECISION_SCHEMA.getField("usage").schema().getElementType();
    static final Schema SOURCE_SCHEMA = DECISION_SCHEMA.getField("source").schema();
    static final Schema STATUS_SCHEMA = DECISION_SCHEMA.getField("status").schema();

    private final BinaryMessageDecoder<GenericRecord> intentDecoder =
            new BinaryMessageDecoder<>(GenericData.get(), INTENT_SCHEMA);
    private final BinaryMessageDecoder<GenericRecord> deliveryDecoder =
            new BinaryMessageDecoder<>(GenericData.get(), DELIVERY_SCHEMA);
    private final BinaryMessageDecoder<GenericRecord> decisionDecoder =
            new BinaryMessageDecoder<>(GenericData.get(), DECISION_SCHEMA);
    private final BinaryMessageEncoder<GenericRecord> decisionEncoder =
            new BinaryMessageEncoder<>(GenericData.get(), DECISION_SCHEMA);
    private final ByteArrayOutputStream buffer = new ByteArrayOutputStream(512);

    private static Schema load(String resource) {
        try (InputStream in = AvroCodec.class.getResourceAsStream(resource)) {
            if (in == null) {
                throw new IllegalStateException("schema resource " + resource + " is missing from the jar");
            }
            return new Schema.Parser().parse(in);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read schema " + resource, e);
        }
    }

    /** Decodes one intent; throws {@link BadRecordException} with the reason when it cannot. */
    Intent decodeIntent(byte[] bytes) {
        if (bytes == null) {
            throw new BadRecordException("null value (tombstone)");
        }
        GenericRecord r;
        try {
            r = intentDecoder.decode(bytes);
        } catch (IOException | RuntimeException e) {
            throw new BadRecordException("not a single-object encoded SendIntent: " + e);
        }
        String sender = r.get("sender").toString();
        int at = sender.lastIndexOf('@');
        if (at < 0 || at == sender.length() - 1) {
            throw new BadRecordException("sender " + quote(sender) + " has no domain");
        }
        return new Intent(
                r.get("intent_id").toString(),
                r.get("tenant").toString(),
                sender,
                sender.substring(at + 1).toLowerCase(Locale.ROOT),
                r.get("recipient").toString(),
                IntentClass.valueOf(r.get("class").toString()),
                (Boolean) r.get("requires_approval"));
    }

    /** Decodes one delivery event; throws {@link BadRecordException} with the reason when it cannot. */
    Delivery decodeDelivery(byte[] bytes) {
        if (bytes == null) {
            throw new BadRecordException("null value (tombstone)");
        }
        GenericRecord r;
        try {
            r = deliveryDecoder.decode(bytes);
        } catch (IOException | RuntimeException e) {
            throw new BadRecordException("not a single-object encoded DeliveryEvent: " + e);
        }
        return new Delivery(r.get("tenant").toString(), r.get("sender").toString(),
                r.get("recipient").toString(), r.get("kind").toString());
    }

    GenericRecord decodeDecision(byte[] bytes) throws IOException {
        return decisionDecoder.decode(bytes);
    }

    byte[] encodeDecision(GenericRecord decision) {
        buffer.reset();
        try {
            decisionEncoder.encode(decision, buffer);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot encode a decision", e);
        }
        return buffer.toByteArray();
    }

    /**
     * A stored decision again, for an intent submitted once more: marked as a
     * replay and pointing at the record being processed (topic, partition,
     * offset). {@code store} names the store it was read from, for the error
     * when it does not decode. Every sender stage answers a resubmission so.
     */
    byte[] replay(byte[] stored, String store, String topic, int partition, long offset) {
        GenericRecord d;
        try {
            d = decodeDecision(stored);
        } catch (Exception e) {
            throw new IllegalStateException("corrupt decision in store " + store, e);
        }
        d.put("replayed", true);
        d.put("source", source(topic, partition, offset));
        return encodeDecision(d);
    }

    /** A Decision record of the sender stage with every field set. */
    static GenericRecord decision(Intent intent, String status, String reason, Long retryAtMs,
                                  List<GenericRecord> usage, long decidedAtMs,
                                  String topic, int partition, long offset) {
        return decision(intent, status, reason, retryAtMs, usage, decidedAtMs, topic, partition, offset, "sender");
    }

    /** A Decision record with every field set, decided by {@code stage}. */
    static GenericRecord decision(Intent intent, String status, String reason, Long retryAtMs,
                                  List<GenericRecord> usage, long decidedAtMs,
                                  String topic, int partition, long offset, String stage) {
        GenericRecord d = new GenericData.Record(DECISION_SCHEMA);
        d.put("intent_id", intent.intentId());
        d.put("tenant", intent.tenant());
        d.put("sender", intent.sender());
        d.put("recipient", intent.recipient());
        d.put("status", new GenericData.EnumSymbol(STATUS_SCHEMA, status));
        d.put("reason", reason);
        d.put("retry_at_ms", retryAtMs);
        d.put("usage", usage);
        d.put("policy_version", 0L);
        d.put("decided_at_ms", decidedAtMs);
        d.put("source", source(topic, partition, offset));
        d.put("stage", stage);
        d.put("replayed", false);
        return d;
    }

    static GenericRecord source(String topic, int partition, long offset) {
        GenericRecord s = new GenericData.Record(SOURCE_SCHEMA);
        s.put("topic", topic);
        s.put("partition", partition);
        s.put("offset", offset);
        return s;
    }

    static GenericRecord usage(String scope, String window, long used, long limit) {
        GenericRecord u = new GenericData.Record(USAGE_SCHEMA);
        u.put("scope", scope);
        u.put("window", window);
        u.put("used", used);
        u.put("limit", limit);
        u.put("remaining", Math.max(limit - used, 0));
        return u;
    }

    static String quote(String s) {
        return s.length() > 80 ? '"' + s.substring(0, 80) + "\"..." : '"' + s + '"';
    }

    /** The classes of the IntentClass enum. */
    enum IntentClass { OUTBOUND, REPLY, TRANSACTIONAL }

    /** The fields of a SendIntent the sender stage reads. */
    record Intent(String intentId, String tenant, String sender, String senderDomain,
                  String recipient, IntentClass intentClass, boolean requiresApproval) { }

    /** The fields of a DeliveryEvent the recipient stage reads; {@code kind} is the DeliveryKind symbol. */
    record Delivery(String tenant, String sender, String recipient, String kind) { }

    /** A record that cannot be decoded. */
    static final class BadRecordException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        BadRecordException(String message) {
            super(message, null, false, false);
        }
    }
}
