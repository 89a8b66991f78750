//! The host's clock, and the coarse time the root context keeps so that a request does not
//! read it (see `stagedoor_filter_core::clock`).

use std::cell::Cell;
use std::time::Duration;

pub use crate::host::now_ms;

/// The time as of the root context's last tick, shared with every request context.
#[derive(Default)]
pub struct CoarseTime {
    ms: Cell<u64>,
    /// How many seconds the time in whole seconds may be behind: the truncation to
    /// seconds, plus twice the tick period for a tick that fires late.
    slack_secs: Cell<i64>,
}

impl CoarseTime {
    /// Records the time the root context just read.
    pub fn set(&self, now_ms: u64) {
        self.ms.set(now_ms);
    }

    /// Sizes the slack for a tick of `period`.
    pub fn set_tick(&self, period: Duration) {
        self.slack_secs.set(1 + (2 * period.as_millis() as i64 + 999) / 1000);
    }

    /// (coarse unix seconds, slack in seconds).
    pub fn get(&self) -> (i64, i64) {
        ((self.ms.get() / 1000) as i64, self.slack_secs.get())
    }
}
