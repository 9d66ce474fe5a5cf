//! A watchdog over the Kafka client's blocking transaction calls.
//!
//! Each of those calls takes a timeout, but the client does not always keep
//! it: `send_offsets_to_transaction` can wait for ever when the broker that
//! coordinated the consumer group is killed and leaves the cluster's
//! metadata (librdkafka issues 5456 and 5511; the fault harness meets it when
//! it kills a broker). The task's thread is then stuck inside the client,
//! holding its partitions while its consumer keeps heartbeating, so the
//! group never moves them: decisions stop without an error.
//!
//! A call in C cannot be cancelled, so the watchdog restarts the process:
//! a task marks each such call with its deadline ([`CallWatch::during`]);
//! when one is still running [`GRACE`] past its deadline (a deadline of at
//! most [`LONGEST_CALL`]: these calls take milliseconds when the cluster is
//! well and seconds while it elects; what is hung is hung), the watchdog logs
//! which call hung and re-executes the binary with the same arguments and
//! environment (the same pid, so a supervisor sees no exit). That is a crash
//! as far as the data goes, and is as safe: the open transaction is never
//! committed, the new producers fence the old ones, and the state is
//! restored from the changelog. If the re-execution itself fails, the
//! process exits with [`EXIT_STUCK`] for a supervisor to restart it.
//!
//! A stop is bounded too: once asked to stop, every task has [`STOP_LIMIT`]
//! to finish (a clean stop takes the drain deadline, seconds). A task still
//! running past it is named in the log and the process exits with
//! [`EXIT_STUCK`]: as safe as a crash, and a supervisor or an operator is
//! not left waiting on a process that said nothing (the long fault run had
//! one that ignored its SIGTERM for a minute, none of its tasks stopping).
//!
//! A process that was paused (SIGSTOP, a frozen container, a suspended
//! machine) is not hung: every thread stood still, the watchdog's too, while
//! the clock moved on. The watchdog notices the gap between its own ticks
//! and moves every open call's deadline on by the time it lost, so the call
//! gets the time it was promised once the process runs again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long past its deadline a call may run before the process restarts.
pub const GRACE: Duration = Duration::from_secs(10);
/// The longest deadline the watchdog grants a call, whatever its timeout.
pub const LONGEST_CALL: Duration = Duration::from_secs(30);
/// The exit status when a hung call could not be escaped by re-execution,
/// or hung while the process was stopping.
pub const EXIT_STUCK: i32 = 70;
/// Longest a stop may take, from the request to the last task's end.
pub const STOP_LIMIT: Duration = Duration::from_secs(40);
/// How often the watchdog looks.
const TICK: Duration = Duration::from_secs(1);
/// A tick this much later than due means the process was paused, not busy.
const PAUSE_SLACK: Duration = Duration::from_secs(2);

/// One task's current blocking call, if any.
#[derive(Default)]
pub struct CallWatch {
    /// Milliseconds on the process clock ([`now_ms`]) past which the call
    /// has hung; 0: none. (It watches the process, never a decision.)
    hung_after_ms: AtomicU64,
    what: Mutex<&'static str>,
    /// The task has ended (stopped, or failed for good).
    ended: AtomicBool,
}

/// Clears the mark when the call returns (or unwinds).
pub struct Marked<'a>(&'a CallWatch);

/// Marks the task ended when it drops (see [`CallWatch::until_ended`]).
pub struct Ended<'a>(&'a CallWatch);

impl Drop for Ended<'_> {
    fn drop(&mut self) {
        self.0.ended.store(true, Ordering::Relaxed);
    }
}

impl Drop for Marked<'_> {
    fn drop(&mut self) {
        self.0.hung_after_ms.store(0, Ordering::Relaxed);
    }
}

/// Milliseconds since the process first looked, on the monotonic clock (a
/// wall clock set back or forward would fake or hide a hang); never 0.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl CallWatch {
    /// Marks a blocking call named `what` that should return within
    /// `timeout` (at most [`LONGEST_CALL`]).
    pub fn during(&self, what: &'static str, timeout: Duration) -> Marked<'_> {
        *self.what.lock().unwrap_or_else(|e| e.into_inner()) = what;
        self.hung_after_ms.store(now_ms() + (timeout.min(LONGEST_CALL) + GRACE).as_millis() as u64, Ordering::Relaxed);
        Marked(self)
    }

    /// Marks the task ended when the returned guard drops: however its
    /// supervisor returns (or unwinds), the stop deadline no longer waits
    /// for it.
    pub fn until_ended(&self) -> Ended<'_> {
        Ended(self)
    }

    /// Moves the open call's deadline, if any, `by_ms` later: the process
    /// stood still that long, so the call could not run.
    fn postpone(&self, by_ms: u64) {
        let _ = self.hung_after_ms.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |after| (after != 0).then(|| after + by_ms));
    }

    /// The call that has run past its deadline and the grace, and for how long.
    fn hung(&self, now: u64) -> Option<(&'static str, Duration)> {
        let after = self.hung_after_ms.load(Ordering::Relaxed);
        (after != 0 && now > after).then(|| (*self.what.lock().unwrap_or_else(|e| e.into_inner()), Duration::from_millis(now - after) + GRACE))
    }
}

/// Starts the watchdog thread over the tasks' watches; it runs for the
/// life of the process. Once `shutdown` is set, a hung call ends the
/// process instead of restarting it: the stop was asked for, and a clean
/// one cannot happen while a task is stuck.
pub fn spawn(watches: Vec<(&'static str, Arc<CallWatch>)>, shutdown: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut last_tick = now_ms();
            // When the stop was asked for (process clock), once it was.
            let mut stop_asked: Option<u64> = None;
            loop {
                std::thread::sleep(TICK);
                let now = now_ms();
                let stood_still = paused_for(last_tick, now);
                last_tick = now;
                if stood_still > 0 {
                    tracing::warn!(paused_ms = stood_still, "the process stood still (paused or suspended); the Kafka client calls under watch get that time back");
                    watches.iter().for_each(|(_, watch)| watch.postpone(stood_still));
                    stop_asked = stop_asked.map(|t| t + stood_still);
                    continue;
                }
                if shutdown.load(Ordering::Relaxed) {
                    let asked = *stop_asked.get_or_insert(now);
                    if let Some(running) = overdue_stop(&watches, asked, now) {
                        tracing::error!(tasks = %running, limit_s = STOP_LIMIT.as_secs(), "the stop has run past its limit with tasks still running; exiting without a clean stop: nothing they had open is committed, the next start restores the state from the changelog");
                        eprintln!("sendgate: {running} did not stop within {} s of the stop request; exited without a clean stop (status {EXIT_STUCK})", STOP_LIMIT.as_secs());
                        std::process::exit(EXIT_STUCK);
                    }
                }
                look(&watches, now, &shutdown);
            }
        })
        .expect("the watchdog thread starts");
}

/// One look at every task's call: a hung one restarts the process, or ends
/// it while it is stopping.
fn look(watches: &[(&'static str, Arc<CallWatch>)], now: u64, shutdown: &AtomicBool) {
    for (task, watch) in watches {
        if let Some((what, late)) = watch.hung(now) {
            if shutdown.load(Ordering::Relaxed) {
                tracing::error!(task, call = what, late_s = late.as_secs(), "a Kafka client call has hung past its deadline while stopping; exiting without a clean stop: nothing is committed, the next start restores the state from the changelog");
                eprintln!("sendgate: {task}: {what} hung while stopping; exited without a clean stop (status {EXIT_STUCK})");
                std::process::exit(EXIT_STUCK);
            }
            tracing::error!(task, call = what, late_s = late.as_secs(), "a Kafka client call has hung past its deadline (a known client library fault after a broker leaves the cluster); restarting the process: nothing is committed, the state is restored from the changelog");
            restart();
        }
    }
}

/// The tasks still running (named, comma-separated) when a stop asked for
/// at `asked` has run past [`STOP_LIMIT`] by `now`; None while in time or
/// once every task has ended.
fn overdue_stop(watches: &[(&'static str, Arc<CallWatch>)], asked: u64, now: u64) -> Option<String> {
    if now.saturating_sub(asked) <= STOP_LIMIT.as_millis() as u64 {
        return None;
    }
    let running: Vec<&str> = watches.iter().filter(|(_, w)| !w.ended.load(Ordering::Relaxed)).map(|(task, _)| *task).collect();
    (!running.is_empty()).then(|| running.join(", "))
}

/// How long the process stood still between two ticks of the watchdog (0 if
/// the tick came about on time): a sleep of [`TICK`] that took far longer
/// means no thread ran.
fn paused_for(last_tick: u64, now: u64) -> u64 {
    let took = now.saturating_sub(last_tick);
    if took > (TICK + PAUSE_SLACK).as_millis() as u64 { took - TICK.as_millis() as u64 } else { 0 }
}

/// Replaces the process image with a fresh start of the same binary.
fn restart() -> ! {
    use std::os::unix::process::CommandExt;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let err = match std::env::current_exe() {
        Ok(exe) => std::process::Command::new(exe).args(args).exec(),
        Err(e) => e,
    };
    eprintln!("sendgate: a Kafka client call hung and the process could not restart itself ({err}); exiting with status {EXIT_STUCK} for a supervisor to restart it");
    std::process::exit(EXIT_STUCK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_is_overdue_past_its_limit_while_a_task_runs_and_not_once_all_ended() {
        let (router, sender) = (Arc::new(CallWatch::default()), Arc::new(CallWatch::default()));
        let watches = vec![("router", router.clone()), ("sender", sender.clone())];
        let limit = STOP_LIMIT.as_millis() as u64;
        assert_eq!(overdue_stop(&watches, 1_000, 1_000 + limit), None, "within the limit");
        assert_eq!(overdue_stop(&watches, 1_000, 1_001 + limit).as_deref(), Some("router, sender"));
        drop(router.until_ended());
        assert_eq!(overdue_stop(&watches, 1_000, 1_001 + limit).as_deref(), Some("sender"), "an ended task is not named");
        drop(sender.until_ended());
        assert_eq!(overdue_stop(&watches, 1_000, 1_001 + limit), None, "every task ended");
    }

    #[test]
    fn a_call_is_hung_only_past_its_deadline_and_the_grace_and_not_after_it_returns() {
        let w = CallWatch::default();
        assert!(w.hung(now_ms() + 3_600_000).is_none(), "no call marked");
        let mark = w.during("commit_transaction", Duration::from_secs(20));
        let start = now_ms();
        assert!(w.hung(start + 20_000).is_none(), "within its own timeout");
        assert!(w.hung(start + 20_000 + GRACE.as_millis() as u64 - 1_000).is_none(), "within the grace");
        let (what, late) = w.hung(start + 20_000 + GRACE.as_millis() as u64 + 5_000).expect("hung");
        assert_eq!(what, "commit_transaction");
        assert!(late >= GRACE + Duration::from_secs(4), "{late:?}");
        drop(mark);
        assert!(w.hung(start + 3_600_000).is_none(), "returned");
        // A longer timeout is watched for LONGEST_CALL only.
        let _mark = w.during("init_transactions", Duration::from_secs(600));
        assert!(w.hung(now_ms() + (LONGEST_CALL + GRACE).as_millis() as u64 + 2_000).is_some());
    }

    #[test]
    fn a_pause_of_the_whole_process_gives_the_open_call_its_time_back() {
        // Ticks on time, or a little late under load, are no pause.
        assert_eq!(paused_for(10_000, 11_000), 0);
        assert_eq!(paused_for(10_000, 13_000), 0);
        // A SIGSTOP of 25 s between two ticks.
        let stood = paused_for(10_000, 36_000);
        assert_eq!(stood, 25_000);

        let w = CallWatch::default();
        let mark = w.during("send_offsets_to_transaction", Duration::from_secs(5));
        let woke = now_ms() + 26_000;
        assert!(w.hung(woke).is_some(), "without the pause accounted for, the call looks hung on waking");
        w.postpone(stood);
        assert!(w.hung(woke).is_none(), "the call gets its time back");
        assert!(w.hung(woke + 5_000 + GRACE.as_millis() as u64).is_some(), "and is hung if it still runs past it");
        drop(mark);
        w.postpone(stood);
        assert!(w.hung(woke + 3_600_000).is_none(), "postponing no call marks none");
    }
}
