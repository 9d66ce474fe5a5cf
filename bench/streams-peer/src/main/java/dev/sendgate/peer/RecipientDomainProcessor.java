package dev.sendgate.peer;

import java.util.ArrayList;
import java.util.List;

import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;

import dev.sendgate.peer.AvroCodec.Intent;
import dev.sendgate.peer.SenderWindows.Window;
import dev.sendgate.peer.Wire.Hop;
import dev.sendgate.peer.Wire.UsageEntry;

/**
 * The recipient-domain stage of the full-logic peer, keyed by the recipient
 * domain's group (a provider group or the domain itself): the hourly window
 * per (sender domain, group) for OUTBOUND intents to domains that are not
 * public consumer domains (store {@value #WINDOWS_STORE}). It is the last
 * stage: it allows (and tells the sender stage), or defers (and tells the
 * sender stage and, if it reserved, the recipient stage).
 */
final class RecipientDomainProcessor extends FullStageProcessor<String, byte[]> {
    static final String WINDOWS_STORE = "recipient-domain-windows";
    private static final String STAGE = "recipient_domain";

    private KeyValueStore<String, Long> windows;

    @Override
    public void init(ProcessorContext<String, StageOut> context) {
        super.init(context);
        this.windows = context.getStateStore(WINDOWS_STORE);
    }

    @Override
    public void process(Record<String, byte[]> record) {
        Hop h = Wire.Reader.hop(record.value());
        Intent i = h.intent();
        long t = h.logTimeMs();
        long now = Math.max(t, record.timestamp());
        String domain = RecipientLimits.domainOf(i.recipient());
        long limit = RecipientLimits.recipientDomainHourLimit(i.intentClass(), domain);
        List<UsageEntry> own = new ArrayList<>(1);
        if (limit > 0) {
            String scope = RecipientLimits.recipientDomainScope(i.senderDomain(), record.key());
            String key = RecipientLimits.counterKey(scope, i.intentClass(), Window.HOUR, t);
            UsageEntry u = reserveOrDefer(windows, h, scope, key, Window.HOUR, limit, now, STAGE);
            if (u == null) {
                return; // deferred
            }
            own.add(u);
        }
        finish(h, "ALLOWED", "ok", null, own, now, STAGE);
    }
}
