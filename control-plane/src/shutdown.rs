//! Stopping `stagedoor serve`: one stop flag every long-lived loop watches (ADS streams, the
//! servers, the supervised background tasks), and the operating system's stop requests.

use tokio::sync::watch;

/// Raises the stop flag; dropping it raises it too, so no loop outlives `serve`.
pub struct StopSwitch(watch::Sender<bool>);

/// What a loop holds to learn that the process is stopping. Cheap to clone.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

pub fn channel() -> (StopSwitch, Stop) {
    let (tx, rx) = watch::channel(false);
    (StopSwitch(tx), Stop(rx))
}

impl StopSwitch {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Stop {
    /// Resolves once the stop flag is raised (or its switch is gone).
    pub async fn requested(mut self) {
        // An Err means the switch was dropped, which also means stop.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }

    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }
}

/// Which stop request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OsSignal {
    Interrupt,
    Terminate,
}

impl std::fmt::Display for OsSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OsSignal::Interrupt => "SIGINT",
            OsSignal::Terminate => "SIGTERM",
        })
    }
}

/// Listens for SIGINT and SIGTERM from the moment it is created (handlers are installed
/// here, not on first poll, so a signal during startup is not lost to the default action).
pub struct OsSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl OsSignals {
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self { terminate: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// The next SIGINT or SIGTERM; each call waits for a new one, so a second signal can
    /// cut a drain short.
    pub async fn next(&mut self) -> OsSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => OsSignal::Terminate,
                _ = self.interrupt.recv() => OsSignal::Interrupt,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            OsSignal::Interrupt
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    Done,
    LimitReached,
    SecondSignal(OsSignal),
}

/// Waits for `work` (servers and tasks finishing), but no longer than `limit` and not past
/// a second stop request: an operator who asks twice means now.
pub async fn drain(
    work: impl std::future::Future<Output = ()>,
    limit: std::time::Duration,
    second_signal: impl std::future::Future<Output = OsSignal>,
) -> Drained {
    tokio::select! {
        _ = work => Drained::Done,
        _ = tokio::time::sleep(limit) => Drained::LimitReached,
        signal = second_signal => Drained::SecondSignal(signal),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[tokio::test]
    async fn a_drain_ends_when_the_work_does_at_the_limit_or_on_a_second_signal() {
        let never_signalled = std::future::pending::<OsSignal>;
        let limit = Duration::from_secs(30);
        assert_eq!(drain(async {}, limit, never_signalled()).await, Drained::Done);

        let started = Instant::now();
        let stuck = std::future::pending::<()>();
        assert_eq!(drain(stuck, Duration::from_millis(50), never_signalled()).await, Drained::LimitReached);
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

        let started = Instant::now();
        let second = async { OsSignal::Interrupt };
        assert_eq!(drain(std::future::pending::<()>(), limit, second).await, Drained::SecondSignal(OsSignal::Interrupt));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn every_holder_sees_the_stop_and_a_dropped_switch_counts_as_one() {
        let (switch, stop) = channel();
        let (a, b) = (stop.clone(), stop.clone());
        assert!(!stop.is_requested());
        let waiting = tokio::spawn(a.requested());
        switch.stop();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
        assert!(b.is_requested());
        // A late holder returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), b.requested()).await.unwrap();

        let (switch, stop) = channel();
        drop(switch);
        tokio::time::timeout(std::time::Duration::from_secs(5), stop.requested()).await.unwrap();
    }
}
