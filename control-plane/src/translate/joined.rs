//! An ordered, persistent set of encoded pieces whose concatenation is one resource (the
//! route configuration's routes, the filter config's services), kept so that a change of
//! one piece costs that piece and one copy of the whole, not a walk of every piece.
//!
//! Besides the pieces, kept as pieces come and go: the length of the concatenation, a
//! digest of the (key, piece hash) entries that stands for its content (the keys fix the
//! order, so equal entries are equal bytes), and the pieces joined in runs of about
//! [`RUN_PIECES`] consecutive pieces. A run starts at each key whose hash says so, so runs
//! do not move when other pieces come and go: an insert or a removal changes one run (or
//! splits or joins two), and the whole is copied from some 150 runs, not read from 10,000
//! places in memory.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Bound;
use std::sync::Arc;

use imbl::OrdMap;
use sha2::{Digest, Sha256};

/// About how many consecutive pieces a run joins.
pub const RUN_PIECES: u64 = 64;

/// A piece of the concatenation: its bytes and their content hash.
pub trait Piece {
    /// Written between two pieces.
    const SEPARATOR: &'static [u8];
    fn bytes(&self) -> &[u8];
    fn hash(&self) -> &str;
}

/// Where a run starts: at a key [`starts_run`] picks, or (`None`) at the first piece.
type RunStart<K> = Option<K>;

#[derive(Debug)]
pub struct Joined<K: Ord + Clone + Hash, P> {
    pieces: OrdMap<K, Arc<P>>,
    bytes: usize,
    digest: EntriesDigest,
    /// Each run's bytes, by where it starts; `None` until joined (again). Empty until the
    /// pieces are first written: then every run is made in one pass.
    runs: OrdMap<RunStart<K>, Option<Arc<Vec<u8>>>>,
    /// The keys inserted or removed since the runs were last made or joined.
    touched: Vec<K>,
}

impl<K: Ord + Clone + Hash, P> Clone for Joined<K, P> {
    fn clone(&self) -> Self {
        Self { pieces: self.pieces.clone(), bytes: self.bytes, digest: self.digest, runs: self.runs.clone(), touched: self.touched.clone() }
    }
}

impl<K: Ord + Clone + Hash, P> Default for Joined<K, P> {
    fn default() -> Self {
        Self { pieces: OrdMap::new(), bytes: 0, digest: EntriesDigest::default(), runs: OrdMap::new(), touched: Vec::new() }
    }
}

/// The digest [`Joined::digest`] gives for these (key, piece hash) entries.
pub fn digest_of<'a, K: Hash + 'a>(entries: impl IntoIterator<Item = (&'a K, &'a str)>) -> [u8; 32] {
    let mut digest = EntriesDigest::default();
    for (key, hash) in entries {
        digest.add(&EntriesDigest::of(key, hash));
    }
    digest.bytes()
}

/// Whether a run starts at `key`: about one key in [`RUN_PIECES`], by the key alone.
fn starts_run<K: Hash>(key: &K) -> bool {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish().is_multiple_of(RUN_PIECES)
}

impl<K: Ord + Clone + Hash, P: Piece> Joined<K, P> {
    pub fn values(&self) -> impl Iterator<Item = &Arc<P>> {
        self.pieces.values()
    }

    pub fn insert(&mut self, key: K, piece: Arc<P>) {
        self.bytes += piece.bytes().len();
        self.digest.add(&EntriesDigest::of(&key, piece.hash()));
        self.touch(&key);
        if let Some(before) = self.pieces.insert(key.clone(), piece) {
            self.subtract(&key, &before);
        }
    }

    pub fn remove(&mut self, key: &K) {
        if let Some(before) = self.pieces.remove(key) {
            self.subtract(key, &before);
            self.touch(key);
        }
    }

    fn subtract(&mut self, key: &K, piece: &P) {
        self.bytes -= piece.bytes().len();
        self.digest.subtract(&EntriesDigest::of(key, piece.hash()));
    }

    /// The length of the pieces joined.
    pub fn len_joined(&self) -> usize {
        self.bytes + P::SEPARATOR.len() * self.pieces.len().saturating_sub(1)
    }

    /// The digest of every (key, piece hash), as 32 bytes.
    pub fn digest(&self) -> [u8; 32] {
        self.digest.bytes()
    }

    fn touch(&mut self, key: &K) {
        if !self.runs.is_empty() {
            self.touched.push(key.clone());
        }
    }

    /// The runs the touched keys are (or were) in, and those before them, to be joined
    /// again; a run starts or ends at a touched key that starts one.
    fn mark_touched(&mut self) {
        for key in std::mem::take(&mut self.touched) {
            let start = Some(key.clone());
            if starts_run(&key) {
                if self.pieces.contains_key(&key) {
                    self.runs.insert(start.clone(), None);
                } else {
                    self.runs.remove(&start);
                }
            }
            let at_or_before = self.runs.range((Bound::Unbounded, Bound::Included(start.clone()))).next_back().map(|(s, _)| s.clone());
            let before = self.runs.range((Bound::Unbounded, Bound::Excluded(start))).next_back().map(|(s, _)| s.clone());
            for run in [at_or_before, before].into_iter().flatten() {
                self.runs.insert(run, None);
            }
        }
    }

    /// Every run made from the pieces, in one pass.
    fn make_runs(&mut self) {
        let mut runs = Vec::new();
        let mut current: (RunStart<K>, Vec<u8>) = (None, Vec::new());
        let mut in_run = 0usize;
        for (key, piece) in &self.pieces {
            if starts_run(key) {
                let done = std::mem::replace(&mut current, (Some(key.clone()), Vec::new()));
                runs.push((done.0, Some(Arc::new(done.1))));
                in_run = 0;
            }
            if in_run > 0 {
                current.1.extend_from_slice(P::SEPARATOR);
            }
            current.1.extend_from_slice(piece.bytes());
            in_run += 1;
        }
        runs.push((current.0, Some(Arc::new(current.1))));
        self.runs = runs.into_iter().collect();
        self.touched.clear();
    }

    /// Appends every piece, in order, with the separator between two, to `out`; joins the
    /// runs not joined yet first.
    pub fn write_to(&mut self, out: &mut Vec<u8>) {
        if self.runs.is_empty() {
            self.make_runs();
        }
        self.mark_touched();
        let unjoined: Vec<RunStart<K>> = self.runs.iter().filter(|(_, bytes)| bytes.is_none()).map(|(s, _)| s.clone()).collect();
        for start in unjoined {
            let next = self.runs.range((Bound::Excluded(start.clone()), Bound::Unbounded)).next().map(|(s, _)| s.clone());
            let from = start.clone().map_or(Bound::Unbounded, Bound::Included);
            let to = next.flatten().map_or(Bound::Unbounded, Bound::Excluded);
            let mut bytes = Vec::new();
            for (i, (_, piece)) in self.pieces.range((from, to)).enumerate() {
                if i > 0 {
                    bytes.extend_from_slice(P::SEPARATOR);
                }
                bytes.extend_from_slice(piece.bytes());
            }
            self.runs.insert(start, Some(Arc::new(bytes)));
        }
        let mut first = true;
        for run in self.runs.values().flatten().filter(|run| !run.is_empty()) {
            if !first {
                out.extend_from_slice(P::SEPARATOR);
            }
            out.extend_from_slice(run);
            first = false;
        }
    }
}

/// A digest of a set of (key, piece hash) entries that is patched per entry: the
/// lane-wise wrapping sum of each entry's SHA-256. Versions are compared for equality only
/// (and cut to 64 bits of a hash of this).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EntriesDigest([u64; 4]);

/// A `Hasher` that feeds SHA-256: a key's `Hash` written as bytes.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

impl EntriesDigest {
    fn of<K: Hash + ?Sized>(key: &K, piece_hash: &str) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        key.hash(&mut hasher);
        piece_hash.hash(&mut hasher);
        let sum = hasher.0.finalize();
        let mut lanes = [0u64; 4];
        for (lane, chunk) in lanes.iter_mut().zip(sum.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            *lane = u64::from_le_bytes(word);
        }
        Self(lanes)
    }

    fn bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (chunk, lane) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&lane.to_le_bytes());
        }
        out
    }

    fn add(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.wrapping_add(b);
        }
    }

    fn subtract(&mut self, other: &Self) {
        for (a, b) in self.0.iter_mut().zip(other.0) {
            *a = a.wrapping_sub(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Bytes(Vec<u8>, String);

    impl Piece for Bytes {
        const SEPARATOR: &'static [u8] = b",";
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn hash(&self) -> &str {
            &self.1
        }
    }

    fn piece(bytes: &[u8]) -> Arc<Bytes> {
        Arc::new(Bytes(bytes.to_vec(), crate::hash::short_hash(bytes)))
    }

    fn joined(j: &mut Joined<String, Bytes>) -> Vec<u8> {
        let mut out = Vec::new();
        j.write_to(&mut out);
        out
    }

    #[derive(Debug)]
    struct Unseparated(Vec<u8>, String);

    impl Piece for Unseparated {
        const SEPARATOR: &'static [u8] = b"";
        fn bytes(&self) -> &[u8] {
            &self.0
        }
        fn hash(&self) -> &str {
            &self.1
        }
    }

    #[test]
    fn the_length_and_digest_are_those_of_the_pieces_whatever_the_path_to_them() {
        let mut direct: Joined<String, Bytes> = Joined::default();
        direct.insert(String::from("a"), piece(b"aaa"));
        direct.insert(String::from("b"), piece(b"bb"));
        let mut patched: Joined<String, Bytes> = Joined::default();
        patched.insert(String::from("b"), piece(b"old b"));
        patched.insert(String::from("c"), piece(b"c"));
        patched.insert(String::from("a"), piece(b"aaa"));
        patched.remove(&String::from("c"));
        patched.remove(&String::from("never"));
        patched.insert(String::from("b"), piece(b"bb"));
        assert_eq!((patched.len_joined(), patched.digest()), (direct.len_joined(), direct.digest()));
        assert_eq!(joined(&mut direct), b"aaa,bb");
        assert_eq!(direct.len_joined(), 6);
        // Other content, or the same content under another key, is another digest.
        let mut other = direct.clone();
        other.insert(String::from("b"), piece(b"bB"));
        assert_ne!(other.digest(), direct.digest());
        let mut moved: Joined<String, Bytes> = Joined::default();
        moved.insert(String::from("a"), piece(b"aaa"));
        moved.insert(String::from("z"), piece(b"bb"));
        assert_ne!(moved.digest(), direct.digest());
        let entries = [(String::from("a"), piece(b"aaa")), (String::from("b"), piece(b"bb"))];
        assert_eq!(digest_of(entries.iter().map(|(k, p)| (k, p.hash()))), direct.digest());
    }

    fn runs_follow_the_pieces<P: Piece + std::fmt::Debug>(make: impl Fn(&[u8]) -> Arc<P>) {
        let separator = P::SEPARATOR;
        let mut pieces: Joined<String, P> = Joined::default();
        let mut model: std::collections::BTreeMap<String, Vec<u8>> = std::collections::BTreeMap::new();
        let mut state = 7u64;
        for step in 0..3_000u64 {
            // A small deterministic generator: keys collide often, so pieces are
            // replaced and removed as well as added.
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let n = (state >> 33) % 700;
            let key = format!("k{n:03}");
            if (state >> 20).is_multiple_of(3) {
                pieces.remove(&key);
                model.remove(&key);
            } else {
                let bytes = format!("<{n}:{step}>").into_bytes();
                pieces.insert(key.clone(), make(&bytes));
                model.insert(key, bytes);
            }
            if step % 97 == 0 || step == 2_999 {
                let expected = model.values().cloned().collect::<Vec<_>>().join(separator);
                let mut out = Vec::new();
                pieces.write_to(&mut out);
                assert_eq!(out, expected, "at step {step}");
                assert_eq!(pieces.len_joined(), expected.len());
            }
        }
        assert!(pieces.runs.len() > 3, "several runs: {}", pieces.runs.len());
    }

    #[test]
    fn the_runs_written_are_the_pieces_joined_in_order_after_any_inserts_and_removals() {
        runs_follow_the_pieces(piece);
        runs_follow_the_pieces(|b: &[u8]| Arc::new(Unseparated(b.to_vec(), crate::hash::short_hash(b))));
    }
}
