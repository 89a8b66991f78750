//! Quarantine of the resources one Envoy refused: the rule both protocol state machines
//! (sotw.rs, delta.rs) keep per stream and type.
//!
//! A NACK refuses the resources Envoy's error_detail names (as whole words), or, when it
//! names none, every candidate the rejected response carried. A refused resource is
//! quarantined at the content hash Envoy refused: it is not sent again at that hash, the
//! Envoy keeps its last good version of it (SotW sends that one; delta sends nothing), and
//! every other resource of the type goes on as if the NACK had not happened. The quarantine
//! of a resource ends when a response carrying other content of it (or its removal) is
//! ACKed: only the registry changing it gives it other content.
//!
//! Envoy 1.40 applies a CDS or LDS response resource by resource and NACKs the whole
//! response with one message naming the resources it could not apply (cds_api_helper.cc
//! collects one message per refused cluster), so the names in the detail are the refused
//! ones and the others of the response are held by Envoy.

use std::collections::BTreeMap;

use super::ledger::names_resource;

/// The resources a NACK with `detail` refused, name -> hash: those of `carried` that the
/// detail names, or all of `carried` when it names none.
pub(super) fn refused<'a>(detail: &str, carried: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    let carried: Vec<(&str, &str)> = carried.into_iter().collect();
    let named: Vec<(String, String)> = carried
        .iter()
        .filter(|(name, _)| names_resource(detail, name))
        .map(|(name, hash)| ((*name).to_owned(), (*hash).to_owned()))
        .collect();
    if !named.is_empty() {
        return named;
    }
    carried.into_iter().map(|(name, hash)| (name.to_owned(), hash.to_owned())).collect()
}

/// One type's quarantined resources on one stream: name -> the hash Envoy refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Quarantine {
    refused: BTreeMap<String, String>,
}

impl Quarantine {
    /// Whether `name` is quarantined at exactly this content (so must not go at `hash`).
    pub(super) fn holds(&self, name: &str, hash: &str) -> bool {
        self.refused.get(name).is_some_and(|refused| refused == hash)
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.refused.contains_key(name)
    }

    /// Quarantines `refused`; whether that added a resource or a new hash of one (a NACK
    /// that refuses nothing new must not be answered: that would loop).
    pub(super) fn add(&mut self, refused: Vec<(String, String)>) -> bool {
        let mut grew = false;
        for (name, hash) in refused {
            grew |= self.refused.get(&name) != Some(&hash);
            self.refused.insert(name, hash);
        }
        grew
    }

    /// Envoy ACKed `name` at `hash`: its quarantine is over unless `hash` is the refused one.
    pub(super) fn acked(&mut self, name: &str, hash: &str) {
        if !self.holds(name, hash) {
            self.refused.remove(name);
        }
    }

    /// Ends the quarantine of `name` (gone from the snapshot, unsubscribed).
    pub(super) fn lift(&mut self, name: &str) {
        self.refused.remove(name);
    }

    /// Keeps only the names `keep` says to.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.refused.retain(|name, _| keep(name));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.refused.is_empty()
    }

    pub(super) fn names(&self) -> Vec<String> {
        self.refused.keys().cloned().collect()
    }
}

#[cfg(test)]
#[path = "quarantine_tests.rs"]
mod tests;
