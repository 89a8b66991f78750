//! The time a decision is taken at, without asking the host on every request.
//!
//! Reading the host's clock is a host call, one of the crossings between Envoy and the VM
//! that make up most of the filter's cost. The filter keeps a coarse time instead (set on
//! its tick) that is at most `slack` seconds behind the true time, and asks the host only
//! when the answer could depend on where in that window the true time lies: a cached
//! token that expires or becomes valid inside it, or a token that must be verified.

/// A coarse time and, on demand, the exact one.
pub struct Clock<'a> {
    /// Unix seconds, at most `slack` seconds behind the true time.
    coarse: i64,
    slack: i64,
    exact: &'a mut dyn FnMut() -> i64,
    read: Option<i64>,
}

impl<'a> Clock<'a> {
    pub fn new(coarse: i64, slack: i64, exact: &'a mut dyn FnMut() -> i64) -> Self {
        Self { coarse, slack: slack.max(0), exact, read: None }
    }

    /// The true time (asks the host once per decision).
    pub fn exact(&mut self) -> i64 {
        match self.read {
            Some(now) => now,
            None => {
                let now = (self.exact)();
                self.read = Some(now);
                now
            }
        }
    }

    /// The best time known without asking: the exact one if it was read, else the coarse.
    pub fn known(&self) -> i64 {
        self.read.unwrap_or(self.coarse)
    }

    /// A time at which `check` answers as it would at the true time. `check` must change
    /// its answer at most once per boundary it has (true for validity windows: before
    /// `nbf`, valid, after `exp`); where both ends of the window agree, so does the middle
    /// unless the whole validity is shorter than the window, which shows as two different
    /// refusals at the ends and is settled by the exact time.
    pub fn settled<T: PartialEq>(&mut self, check: impl Fn(i64) -> T) -> T {
        if self.read.is_none() {
            let at_start = check(self.coarse);
            if check(self.coarse.saturating_add(self.slack)) == at_start {
                return at_start;
            }
        }
        check(self.exact())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_asked_only_when_the_window_holds_a_boundary() {
        let mut asked = 0;
        let mut host = || {
            asked += 1;
            1_005
        };
        let mut clock = Clock::new(1_000, 10, &mut host);
        let valid_until = |exp: i64| move |now: i64| now <= exp;
        assert!(clock.settled(valid_until(2_000)));
        assert!(!clock.settled(valid_until(900)));
        assert_eq!(clock.known(), 1_000);
        assert!(clock.settled(valid_until(1_007)), "expires inside the window: the exact time decides");
        assert!(!clock.settled(valid_until(1_003)));
        assert_eq!(clock.known(), 1_005);
        assert_eq!(asked, 1, "read once per decision");
    }

    #[test]
    fn a_validity_shorter_than_the_window_is_settled_exactly() {
        let mut host = || 1_005;
        let mut clock = Clock::new(1_000, 10, &mut host);
        let window = |now: i64| if now < 1_004 { Err("early") } else if now > 1_006 { Err("late") } else { Ok(()) };
        assert_eq!(clock.settled(window), Ok(()));
    }
}
