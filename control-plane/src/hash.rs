//! Content hashes: every version the control plane hands out (registry, snapshot, types,
//! filter config) is one, so equal content gives an equal version and no push.

use sha2::{Digest, Sha256};

/// A short content hash used for versions: equal inputs give equal versions.
pub fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// [`short_hash`] of a value's canonical JSON form.
pub fn content_hash(canonical: &impl serde::Serialize) -> String {
    // serde_json of BTreeMaps and plain structs is deterministic and cannot fail.
    short_hash(&serde_json::to_vec(canonical).unwrap_or_default())
}

/// The whole SHA-256 in hex, for digests compared with a stored one (API tokens): the
/// filter's own function, which also keys revoked tokens that carry no jti.
pub fn sha256_hex(bytes: &[u8]) -> String {
    stagedoor_filter_core::token::hex_sha256(bytes)
}
