use sha2::{Digest, Sha256};

/// A short content hash used for versions: equal inputs give equal versions.
pub fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}
