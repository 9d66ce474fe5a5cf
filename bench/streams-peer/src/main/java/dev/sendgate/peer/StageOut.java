package dev.sendgate.peer;

/**
 * One output of a stage processor of the full-logic peer and where it goes;
 * the topology splits a processor's output on {@link #dest()}.
 */
record StageOut(Dest dest, byte[] value) {
    enum Dest {
        /** An encoded Decision, for the decisions topic (key: sender mailbox). */
        DECISION,
        /** An intent passed on to the next stage (key: that stage's key). */
        NEXT,
        /** An outcome for the sender stage (key: sender domain). */
        OUTCOME,
        /** A release for the recipient stage (key: recipient address). */
        RELEASE,
        /** A suppression from a delivery event, for the recipient stage (key: recipient address). */
        SUPPRESSION
    }
}
