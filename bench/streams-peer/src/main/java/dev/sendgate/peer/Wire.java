package dev.sendgate.peer;

import java.io.ByteArrayOutputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

import dev.sendgate.peer.AvroCodec.Intent;
import dev.sendgate.peer.AvroCodec.IntentClass;

/**
 * The records the stages of the full-logic peer send each other over their
 * repartition and loop topics, in a small binary format of their own: a tag
 * byte, then the fields (strings as a length and UTF-8 bytes). An original
 * intent on the sender stage's input keeps its Avro single-object encoding,
 * whose first byte (0xC3) is none of these tags.
 *
 * <p>Not thread-safe: create one {@link Writer} per stream task.
 */
final class Wire {
    /** An intent passed on to the next stage (sender to recipient, recipient to recipient domain). */
    static final byte HOP = 'H';
    /** The outcome of an intent the sender stage passed on, back to it. */
    static final byte OUTCOME = 'O';
    /** A release of the recipient stage's reservation, when the recipient-domain stage denies. */
    static final byte RELEASE = 'R';
    /** A suppression from a delivery event, for the recipient stage. */
    static final byte SUPPRESS = 'S';
    /** An intent the sender stage keeps waiting (in its own store, never on a topic). */
    static final byte PARKED = 'P';

    /** Suppression kinds: every class, or OUTBOUND only (unsubscribe). */
    static final byte SUPPRESS_ALL = 1;
    static final byte SUPPRESS_OUTBOUND = 2;

    private Wire() { }

    /** One usage entry of a decision, as it was when the stage checked it. */
    record UsageEntry(String scope, String window, long used, long limit) { }

    /** A counter the sender stage reserved; {@code limit} 0 when the window is never limited (replies). */
    record Undo(String key, long limit) { }

    /**
     * An intent on its way through the stages: what the later stages need of
     * it, its log time and origin (for the decision), the usage reported so
     * far and what each earlier stage reserved.
     */
    record Hop(Intent intent, long logTimeMs, String sourceTopic, int sourcePartition, long sourceOffset,
               List<UsageEntry> usage, List<Undo> senderUndo, List<String> recipientUndo) { }

    /** The decision on an intent the sender stage passed on, and its reservation to settle. */
    record Outcome(String intentId, boolean allowed, byte[] decision, List<Undo> senderUndo) { }

    /** The recipient stage's counters to give back. */
    record Release(String intentId, List<String> keys) { }

    /** A recipient suppressed for a tenant. */
    record Suppress(String tenant, String recipient, byte kind) { }

    /**
     * A parked intent: what it has reserved so far ({@code hop.senderUndo()})
     * and the windows it still waits for a place in.
     */
    record Parked(Hop hop, List<Undo> waiting) { }

    static byte tag(byte[] value) {
        return value == null || value.length == 0 ? 0 : value[0];
    }

    /** Encodes records into a reused buffer; each call returns a fresh array. */
    static final class Writer {
        private final ByteArrayOutputStream buffer = new ByteArrayOutputStream(512);
        private final DataOutputStream out = new DataOutputStream(buffer);

        byte[] hop(Hop h) {
            try {
                start(HOP);
                hopBody(h);
                return done();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        byte[] parked(Parked p) {
            try {
                start(PARKED);
                hopBody(p.hop());
                undo(p.waiting());
                return done();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        private void hopBody(Hop h) throws IOException {
            intent(h.intent());
            out.writeLong(h.logTimeMs());
            str(h.sourceTopic());
            out.writeInt(h.sourcePartition());
            out.writeLong(h.sourceOffset());
            out.writeShort(h.usage().size());
            for (UsageEntry u : h.usage()) {
                str(u.scope());
                str(u.window());
                out.writeLong(u.used());
                out.writeLong(u.limit());
            }
            undo(h.senderUndo());
            out.writeShort(h.recipientUndo().size());
            for (String k : h.recipientUndo()) {
                str(k);
            }
        }

        byte[] outcome(Outcome o) {
            try {
                start(OUTCOME);
                str(o.intentId());
                out.writeBoolean(o.allowed());
                out.writeInt(o.decision().length);
                out.write(o.decision());
                undo(o.senderUndo());
                return done();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        byte[] release(Release r) {
            try {
                start(RELEASE);
                str(r.intentId());
                out.writeShort(r.keys().size());
                for (String k : r.keys()) {
                    str(k);
                }
                return done();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        byte[] suppress(Suppress s) {
            try {
                start(SUPPRESS);
                str(s.tenant());
                str(s.recipient());
                out.writeByte(s.kind());
                return done();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        private void start(byte tag) throws IOException {
            buffer.reset();
            out.writeByte(tag);
        }

        private byte[] done() throws IOException {
            out.flush();
            return buffer.toByteArray();
        }

        private void intent(Intent i) throws IOException {
            str(i.intentId());
            str(i.tenant());
            str(i.sender());
            str(i.senderDomain());
            str(i.recipient());
            out.writeByte(i.intentClass().ordinal());
            out.writeBoolean(i.requiresApproval());
        }

        private void undo(List<Undo> undo) throws IOException {
            out.writeShort(undo.size());
            for (Undo u : undo) {
                str(u.key());
                out.writeLong(u.limit());
            }
        }

        private void str(String s) throws IOException {
            byte[] b = s.getBytes(StandardCharsets.UTF_8);
            out.writeInt(b.length);
            out.write(b);
        }
    }

    /** Decodes one record; throws IllegalArgumentException when the tag does not match. */
    static final class Reader {
        private final ByteBuffer in;

        Reader(byte[] value, byte expectedTag) {
            if (tag(value) != expectedTag) {
                throw new IllegalArgumentException("expected a record tagged '" + (char) expectedTag + "', got tag " + tag(value));
            }
            this.in = ByteBuffer.wrap(value, 1, value.length - 1);
        }

        static Hop hop(byte[] value) {
            return new Reader(value, HOP).hopBody();
        }

        static Parked parked(byte[] value) {
            Reader r = new Reader(value, PARKED);
            Hop h = r.hopBody();
            return new Parked(h, r.undo());
        }

        private Hop hopBody() {
            Reader r = this;
            Intent intent = r.intent();
            long t = r.in.getLong();
            String topic = r.str();
            int partition = r.in.getInt();
            long offset = r.in.getLong();
            int nu = r.in.getShort();
            List<UsageEntry> usage = new ArrayList<>(nu + 2);
            for (int i = 0; i < nu; i++) {
                usage.add(new UsageEntry(r.str(), r.str(), r.in.getLong(), r.in.getLong()));
            }
            List<Undo> senderUndo = r.undo();
            int nr = r.in.getShort();
            List<String> recipientUndo = new ArrayList<>(nr + 1);
            for (int i = 0; i < nr; i++) {
                recipientUndo.add(r.str());
            }
            return new Hop(intent, t, topic, partition, offset, usage, senderUndo, recipientUndo);
        }

        static Outcome outcome(byte[] value) {
            Reader r = new Reader(value, OUTCOME);
            String id = r.str();
            boolean allowed = r.in.get() != 0;
            byte[] decision = new byte[r.in.getInt()];
            r.in.get(decision);
            return new Outcome(id, allowed, decision, r.undo());
        }

        static Release release(byte[] value) {
            Reader r = new Reader(value, RELEASE);
            String id = r.str();
            int n = r.in.getShort();
            List<String> keys = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                keys.add(r.str());
            }
            return new Release(id, keys);
        }

        static Suppress suppress(byte[] value) {
            Reader r = new Reader(value, SUPPRESS);
            return new Suppress(r.str(), r.str(), r.in.get());
        }

        private Intent intent() {
            return new Intent(str(), str(), str(), str(), str(),
                    IntentClass.values()[in.get()], in.get() != 0);
        }

        private List<Undo> undo() {
            int n = in.getShort();
            List<Undo> undo = new ArrayList<>(n);
            for (int i = 0; i < n; i++) {
                undo.add(new Undo(str(), in.getLong()));
            }
            return undo;
        }

        private String str() {
            int n = in.getInt();
            String s = new String(in.array(), in.arrayOffset() + in.position(), n, StandardCharsets.UTF_8);
            in.position(in.position() + n);
            return s;
        }
    }
}
