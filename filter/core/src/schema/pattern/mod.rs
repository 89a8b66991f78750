//! `pattern`: a regular expression searched for anywhere in the string (anchor it with
//! `^...$`), matched by a small Thompson NFA simulation of our own.
//!
//! Why our own: the `regex` crate added 377 KB to the wasm module (its meta engine), and
//! regex-automata's parser and Pike VM alone 279 KB, for a keyword the shipped registry
//! uses for one UUID form. This engine is a few hundred lines: [`parse`] reads the pattern
//! into a tree, [`program`] turns it into NFA instructions, and [`Pattern::is_match`] runs
//! every thread in lockstep, so its time is linear in the string's length for any pattern
//! (no backtracking a hostile body could blow up). A property test checks it against
//! regex-automata on generated patterns and strings.
//!
//! The subset, with ASCII semantics (what ECMA-262 patterns in schemas use in practice):
//! literals and escapes (`\.` `\/` `\n` `\t` ...), `.` (any byte but `\n`), classes `[a-z_]`
//! `[^0-9]`, `\d \w \s` and their negations, groups `( )` and `(?: )`, alternation `|`,
//! `* + ?` and `{n}` `{n,}` `{n,m}` (at most [`MAX_REPEAT`]), anchors `^ $`. Refused at
//! compile time: lazy quantifiers, backreferences, lookaround, named groups, Unicode
//! classes (`\p{L}`), word boundaries, and non-ASCII characters in the pattern. `.` and
//! negated classes step over bytes, so a pattern that counts non-ASCII characters in the
//! string counts bytes.

mod parse;
mod program;
#[cfg(test)]
mod tests;

use program::{Inst, Program};

/// Largest count in `{n,m}`; and the largest program (counted repetition copies its body).
pub const MAX_REPEAT: u32 = 1000;
pub const MAX_INSTRUCTIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct Pattern {
    source: String,
    program: Program,
}

impl Pattern {
    pub fn compile(source: &str) -> Result<Self, String> {
        let tree = parse::parse(source).map_err(|e| format!("pattern {source:?} is not supported: {e}"))?;
        let program = program::compile(&tree).map_err(|e| format!("pattern {source:?} is not supported: {e}"))?;
        Ok(Self { source: source.to_owned(), program })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Is there a match anywhere in `s`? Every thread advances one byte at a time; a new
    /// thread starts at every position (an unanchored search).
    pub fn is_match(&self, s: &str) -> bool {
        let bytes = s.as_bytes();
        let size = self.program.insts.len();
        let mut current = Threads::new(size);
        let mut next = Threads::new(size);
        for at in 0..=bytes.len() {
            // A thread starts at every position; `^` lets only the first one through.
            self.add(&mut current, self.program.start, at, bytes.len());
            if current.matched {
                return true;
            }
            let Some(&byte) = bytes.get(at) else { break };
            next.clear();
            for &pc in &current.list {
                if let Some(Inst::Byte(class, goto)) = self.program.insts.get(pc) {
                    if class.contains(byte) {
                        self.add(&mut next, *goto, at + 1, bytes.len());
                    }
                }
            }
            std::mem::swap(&mut current, &mut next);
            if current.matched {
                return true;
            }
        }
        false
    }

    /// Adds `pc` and everything reachable from it without reading a byte (splits, jumps,
    /// anchors that hold at `at`) to `threads`, each once per position.
    fn add(&self, threads: &mut Threads, pc: usize, at: usize, len: usize) {
        let mut stack = vec![pc];
        while let Some(pc) = stack.pop() {
            if !threads.mark(pc) {
                continue;
            }
            match self.program.insts.get(pc) {
                Some(Inst::Byte(..)) => threads.list.push(pc),
                Some(Inst::Split(a, b)) => {
                    // `b` below `a`: `a` is explored first (the order matters only for
                    // captures, which this engine does not have).
                    stack.push(*b);
                    stack.push(*a);
                }
                Some(Inst::Jump(to)) => stack.push(*to),
                Some(Inst::Start(to)) if at == 0 => stack.push(*to),
                Some(Inst::End(to)) if at == len => stack.push(*to),
                Some(Inst::Match) => threads.matched = true,
                Some(Inst::Start(_) | Inst::End(_)) | None => {}
            }
        }
    }
}

/// The threads alive at one position: the byte-reading instructions, and whether one
/// reached `Match`.
struct Threads {
    list: Vec<usize>,
    seen: Vec<bool>,
    matched: bool,
}

impl Threads {
    fn new(size: usize) -> Self {
        Self { list: Vec::with_capacity(size), seen: vec![false; size], matched: false }
    }

    fn clear(&mut self) {
        self.list.clear();
        // Every mark goes, not only the listed ones: splits and jumps are marked too.
        self.seen.iter_mut().for_each(|s| *s = false);
        self.matched = false;
    }

    /// Marks `pc` as visited at this position; false if it was already.
    fn mark(&mut self, pc: usize) -> bool {
        match self.seen.get_mut(pc) {
            Some(seen) if !*seen => {
                *seen = true;
                true
            }
            _ => false,
        }
    }
}
