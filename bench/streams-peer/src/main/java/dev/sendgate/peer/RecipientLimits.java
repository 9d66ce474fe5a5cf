package dev.sendgate.peer;

import java.util.Map;
import java.util.Set;

import dev.sendgate.peer.AvroCodec.IntentClass;
import dev.sendgate.peer.SenderWindows.Window;

/**
 * The recipient and recipient-domain limits of the benchmark policy
 * (bench/policy.toml): the per-recipient caps it sets (2 a day by default
 * here, {@code --recipient-day-limit}) and sendgate's built-in
 * recipient-domain limit, public consumer domains and provider groups, in UTC.
 */
final class RecipientLimits {
    /**
     * recipient.outbound.day and recipient.transactional.day, per (tenant,
     * recipient address), as bench/policy.toml sets them (sendgate's
     * built-in default is 10).
     */
    static final long BENCH_RECIPIENT_DAY = 2;
    /** recipient_domain.outbound.hour, per (sender domain, recipient-domain group). */
    static final long RECIPIENT_DOMAIN_OUTBOUND_HOUR = 50;

    /** Public consumer domains: exempt from the recipient-domain limit. */
    static final Set<String> PUBLIC_DOMAINS = Set.of(
            "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "msn.com",
            "yahoo.com", "ymail.com", "rocketmail.com", "aol.com", "icloud.com", "me.com", "mac.com",
            "proton.me", "protonmail.com", "gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com",
            "yandex.ru", "mail.ru", "zoho.com", "fastmail.com", "qq.com", "163.com");

    /** Domains of one provider share its group; any other domain is a group of its own. */
    private static final Map<String, String> PROVIDER_OF = Map.ofEntries(
            Map.entry("gmail.com", "google"), Map.entry("googlemail.com", "google"),
            Map.entry("outlook.com", "microsoft"), Map.entry("hotmail.com", "microsoft"),
            Map.entry("live.com", "microsoft"), Map.entry("msn.com", "microsoft"),
            Map.entry("yahoo.com", "yahoo"), Map.entry("ymail.com", "yahoo"),
            Map.entry("rocketmail.com", "yahoo"), Map.entry("aol.com", "yahoo"),
            Map.entry("icloud.com", "apple"), Map.entry("me.com", "apple"), Map.entry("mac.com", "apple"));

    private RecipientLimits() { }

    static String domainOf(String address) {
        int at = address.lastIndexOf('@');
        return at < 0 ? "" : address.substring(at + 1);
    }

    /** The key of the recipient-domain stage: {@code provider:NAME} or the domain itself. */
    static String group(String recipientDomain) {
        String provider = PROVIDER_OF.get(recipientDomain);
        return provider == null ? recipientDomain : "provider:" + provider;
    }

    /** The limit per recipient address and day of a class ({@code max} for OUTBOUND and TRANSACTIONAL); 0 when there is none (replies). */
    static long recipientDayLimit(IntentClass intentClass, long max) {
        return intentClass == IntentClass.REPLY ? 0 : max;
    }

    /** The hourly limit per (sender domain, group) of an intent; 0 when none applies. */
    static long recipientDomainHourLimit(IntentClass intentClass, String recipientDomain) {
        return intentClass == IntentClass.OUTBOUND && !PUBLIC_DOMAINS.contains(recipientDomain)
                ? RECIPIENT_DOMAIN_OUTBOUND_HOUR : 0;
    }

    static String recipientScope(String tenant, String recipient) {
        return "tenant:" + tenant + "/recipient:" + recipient;
    }

    static String recipientDomainScope(String senderDomain, String group) {
        return "sender_domain:" + senderDomain + "/" + (group.startsWith("provider:") ? group : "recipient_domain:" + group);
    }

    /** Counter key, e.g. {@code tenant:t1/recipient:bob@corp.example|OUTBOUND|day|1763942400000}. */
    static String counterKey(String scope, IntentClass intentClass, Window window, long timestampMs) {
        return SenderWindows.counterKey(scope, intentClass, window, timestampMs);
    }
}
