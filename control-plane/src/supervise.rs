//! Background tasks under supervision (registry watcher, Redis followers, the periodic
//! sweeps). Each runs forever by design, so one that returns or panics has died: that is
//! logged, counted in /metrics, and the task is started afresh after a pause. All of them
//! end when the stop flag is raised.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::shutdown::Stop;

/// The pause before a dead task is started again: long enough that a task failing at once
/// does not spin, short enough that the control plane is not blind for long.
pub const RESTART_AFTER: Duration = Duration::from_secs(1);

pub struct Supervisor {
    stop: Stop,
    restart_after: Duration,
    supervisors: Vec<JoinHandle<()>>,
}

impl Supervisor {
    pub fn new(stop: Stop, restart_after: Duration) -> Self {
        Self { stop, restart_after, supervisors: Vec::new() }
    }

    /// Runs `start()` as its own task until the stop flag, starting it again each time it
    /// ends. `start` builds the task from what it captured, so a restart begins clean.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, start: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let supervisor = supervise(name, start, self.stop.clone(), self.restart_after);
        self.supervisors.push(tokio::spawn(supervisor));
    }

    /// Waits until every supervised task has stopped (after the stop flag is raised).
    pub async fn join(self) {
        for supervisor in self.supervisors {
            let _ = supervisor.await;
        }
    }
}

async fn supervise<F, Fut>(name: &'static str, start: F, stop: Stop, restart_after: Duration)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut restarts: u64 = 0;
    loop {
        let mut task = tokio::spawn(start());
        let outcome = tokio::select! {
            outcome = &mut task => outcome,
            _ = stop.clone().requested() => {
                task.abort();
                return;
            }
        };
        if stop.is_requested() {
            return;
        }
        restarts += 1;
        crate::metrics::bump(&crate::metrics::TASK_RESTARTS);
        match outcome {
            Ok(()) => tracing::error!(task = name, restarts, "background task ended; starting it again"),
            Err(e) if e.is_panic() => {
                let panic = panic_message(e.into_panic());
                tracing::error!(task = name, restarts, %panic, "background task panicked; starting it again");
            }
            Err(e) => tracing::error!(task = name, restarts, error = %e, "background task cancelled; starting it again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(restart_after) => {}
            _ = stop.clone().requested() => return,
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| String::from("(no message)"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_or_returns_is_started_again_and_all_stop_on_the_flag() {
        let (switch, stop) = crate::shutdown::channel();
        let mut supervisor = Supervisor::new(stop, Duration::from_millis(10));
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        supervisor.spawn("flaky", move || {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match run {
                    0 => panic!("first run dies"),
                    1 => {} // the second returns, which for a forever-task is death too
                    _ => std::future::pending::<()>().await,
                }
            }
        });
        let third_run = async {
            while runs.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), third_run).await.expect("restarted after a panic and a return");

        switch.stop();
        tokio::time::timeout(Duration::from_secs(5), supervisor.join()).await.expect("supervisors end on stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3, "nothing is started after the stop");
    }
}
