//! What the tool prints: one JSON object a line on stdout, each stamped with the Unix
//! time in milliseconds, for bench/reconnect.py to read as they come.

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub enum EventKind {
    /// Every subscribed type has had a response ACKed on this stream.
    Synced { retries: u32 },
    /// The stream had started and ended.
    Lost,
    /// The server refused the stream before it started.
    Refused { code: String },
    NotConnected,
}

#[derive(Debug, Clone)]
pub struct Event {
    pub stream: usize,
    pub unix_ms: u64,
    pub kind: EventKind,
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Event {
    pub fn now(stream: usize, kind: EventKind) -> Self {
        Self { stream, unix_ms: unix_ms(), kind }
    }

    pub fn to_json(&self) -> Value {
        let mut line = json!({"stream": self.stream, "unix_ms": self.unix_ms});
        match &self.kind {
            EventKind::Synced { retries } => {
                line["event"] = json!("synced");
                line["retries"] = json!(retries);
            }
            EventKind::Lost => line["event"] = json!("lost"),
            EventKind::Refused { code } => {
                line["event"] = json!("refused");
                line["code"] = json!(code);
            }
            EventKind::NotConnected => line["event"] = json!("not_connected"),
        }
        line
    }
}

/// Counts streams synced since the last loss of each, to say when all of them are.
#[derive(Debug)]
pub struct Tally {
    synced: Vec<bool>,
}

impl Tally {
    pub fn new(streams: usize) -> Self {
        Self { synced: vec![false; streams] }
    }

    /// Applies an event; true when it made every stream synced.
    pub fn apply(&mut self, event: &Event) -> bool {
        let Some(slot) = self.synced.get_mut(event.stream) else { return false };
        match event.kind {
            EventKind::Synced { .. } => {
                let was = *slot;
                *slot = true;
                !was && self.synced.iter().all(|s| *s)
            }
            EventKind::Lost => {
                *slot = false;
                false
            }
            EventKind::Refused { .. } | EventKind::NotConnected => false,
        }
    }

    pub fn synced(&self) -> usize {
        self.synced.iter().filter(|s| **s).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_synced_is_said_once_per_round_and_a_loss_undoes_it() {
        let mut tally = Tally::new(2);
        let event = |stream, kind| Event { stream, unix_ms: 0, kind };
        assert!(!tally.apply(&event(0, EventKind::Synced { retries: 0 })));
        assert!(!tally.apply(&event(1, EventKind::Refused { code: "Unavailable".into() })));
        assert!(tally.apply(&event(1, EventKind::Synced { retries: 1 })), "the last one makes all");
        assert!(!tally.apply(&event(1, EventKind::Synced { retries: 0 })), "said once");
        assert!(!tally.apply(&event(0, EventKind::Lost)));
        assert_eq!(tally.synced(), 1);
        assert!(tally.apply(&event(0, EventKind::Synced { retries: 0 })), "the next round");
        assert!(!tally.apply(&event(7, EventKind::Synced { retries: 0 })), "an unknown stream counts for nothing");
    }
}
