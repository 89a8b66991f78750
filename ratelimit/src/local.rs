//! The local fallback's state: the same GCRA as the shared count, held in this process,
//! bounded in size (a flood of distinct subjects cannot grow it without limit).

use std::collections::BTreeMap;

use crate::decide::{decide, Check, Decision, KeyedLimit};

#[derive(Debug)]
pub struct LocalTable {
    tats: BTreeMap<String, u64>,
    max_keys: usize,
}

impl LocalTable {
    pub fn new(max_keys: usize) -> LocalTable {
        LocalTable { tats: BTreeMap::new(), max_keys: max_keys.max(1) }
    }

    pub fn len(&self) -> usize {
        self.tats.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tats.is_empty()
    }

    pub fn decide(&mut self, checks: &[KeyedLimit], now_us: u64, cost: u32) -> Decision {
        let gcra_checks: Vec<Check> = checks
            .iter()
            .map(|c| c.with_state(self.tats.get(&c.key).copied().filter(|tat| *tat > now_us)))
            .collect();
        let decision = decide(&gcra_checks, now_us, cost);
        for (check, write) in checks.iter().zip(&decision.writes) {
            if let Some(write) = write {
                self.make_room(now_us);
                self.tats.insert(check.key.clone(), write.tat_us);
            }
        }
        decision
    }

    /// Expired entries go first (a rested bucket needs no state); if the table is still
    /// full, the entry closest to rested goes, which forgets the least.
    fn make_room(&mut self, now_us: u64) {
        if self.tats.len() < self.max_keys {
            return;
        }
        self.tats.retain(|_, tat| *tat > now_us);
        while self.tats.len() >= self.max_keys {
            let Some(oldest) = self.tats.iter().min_by_key(|(_, tat)| **tat).map(|(key, _)| key.clone()) else {
                return;
            };
            self.tats.remove(&oldest);
        }
    }
}
