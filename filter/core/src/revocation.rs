//! The revocation list as the filter holds it: keys (a token's jti, else its SHA-256) fed
//! by the control plane's change feed.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// One answer of the control plane's revocation feed (`GET <path>?since=<cursor>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationUpdate {
    /// Pass back as `since` next time.
    pub cursor: u64,
    /// When true, `revoked` is the whole list (the feed could not give a diff since the
    /// cursor, e.g. after a control-plane restart) and replaces what is held.
    pub full: bool,
    pub revoked: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RevocationList {
    keys: HashSet<String>,
    cursor: u64,
    synced: bool,
}

/// The revocation key of a whole refresh-token family: every access token minted from it
/// carries the `fid` claim, so one entry refuses them all.
pub fn family_key(fid: &str) -> String {
    format!("{FAMILY_PREFIX}{fid}")
}

pub const FAMILY_PREFIX: &str = "family:";

impl RevocationList {
    pub fn is_revoked(&self, key: &str) -> bool {
        !self.keys.is_empty() && self.keys.contains(key)
    }

    /// A token is refused when its own key or its family's is on the list.
    pub fn revokes(&self, key: &str, family_key: Option<&str>) -> bool {
        self.is_revoked(key) || family_key.is_some_and(|family| self.is_revoked(family))
    }

    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    pub fn has_synced(&self) -> bool {
        self.synced
    }

    pub fn apply(&mut self, update: RevocationUpdate) {
        if update.full {
            self.keys = update.revoked.into_iter().collect();
        } else {
            self.keys.extend(update.revoked);
        }
        self.cursor = update.cursor;
        self.synced = true;
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diffs_add_and_a_full_list_replaces() {
        let mut list = RevocationList::default();
        assert!(!list.has_synced());
        list.apply(RevocationUpdate { cursor: 2, full: false, revoked: vec!["a".into(), "b".into()] });
        assert!(list.is_revoked("a") && list.is_revoked("b") && !list.is_revoked("c"));
        list.apply(RevocationUpdate { cursor: 3, full: false, revoked: vec!["c".into()] });
        assert!(list.is_revoked("a") && list.is_revoked("c"));
        list.apply(RevocationUpdate { cursor: 1, full: true, revoked: vec!["c".into()] });
        assert!(!list.is_revoked("a") && list.is_revoked("c"));
        assert_eq!(list.cursor(), 1);
    }

    #[test]
    fn a_revoked_family_revokes_every_token_that_names_it() {
        let mut list = RevocationList::default();
        list.apply(RevocationUpdate { cursor: 1, full: false, revoked: vec![family_key("f1")] });
        assert!(list.revokes("jti-a", Some("family:f1")));
        assert!(!list.revokes("jti-a", Some("family:f2")));
        assert!(!list.revokes("jti-a", None));
        assert!(!list.revokes("f1", None), "a jti equal to the family id is not the family");
    }
}
