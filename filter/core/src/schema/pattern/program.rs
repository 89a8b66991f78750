//! [`Node`] tree -> NFA instructions, built back to front (each node is compiled knowing
//! where it continues), bounded in size.

use super::parse::{ByteClass, Node};
use super::MAX_INSTRUCTIONS;

#[derive(Debug, Clone)]
pub(super) enum Inst {
    /// Read one byte of the class, go on at the target.
    Byte(ByteClass, usize),
    /// Go on at both.
    Split(usize, usize),
    Jump(usize),
    /// Go on only at the string's start / end.
    Start(usize),
    End(usize),
    Match,
}

#[derive(Debug, Clone)]
pub(super) struct Program {
    pub(super) insts: Vec<Inst>,
    pub(super) start: usize,
}

pub(super) fn compile(tree: &Node) -> Result<Program, String> {
    let mut program = Program { insts: vec![Inst::Match], start: 0 };
    program.start = program.emit(tree, 0)?;
    Ok(program)
}

impl Program {
    fn push(&mut self, inst: Inst) -> Result<usize, String> {
        if self.insts.len() >= MAX_INSTRUCTIONS {
            return Err(format!("the pattern compiles to more than {MAX_INSTRUCTIONS} instructions"));
        }
        self.insts.push(inst);
        Ok(self.insts.len() - 1)
    }

    /// Compiles `node` to continue at `next`; returns its entry.
    fn emit(&mut self, node: &Node, next: usize) -> Result<usize, String> {
        match node {
            Node::Empty => Ok(next),
            Node::Class(class) => self.push(Inst::Byte(*class, next)),
            Node::Start => self.push(Inst::Start(next)),
            Node::End => self.push(Inst::End(next)),
            Node::Concat(nodes) => nodes.iter().rev().try_fold(next, |next, node| self.emit(node, next)),
            Node::Alt(branches) => {
                let mut entries = Vec::with_capacity(branches.len());
                for branch in branches {
                    entries.push(self.emit(branch, next)?);
                }
                let mut entry = entries.pop().unwrap_or(next);
                while let Some(branch) = entries.pop() {
                    entry = self.push(Inst::Split(branch, entry))?;
                }
                Ok(entry)
            }
            Node::Repeat { node, min, max } => {
                let mut entry = match max {
                    // A loop: the split is placed first so the body can return to it.
                    None => {
                        let split = self.push(Inst::Jump(next))?;
                        let body = self.emit(node, split)?;
                        if let Some(inst) = self.insts.get_mut(split) {
                            *inst = Inst::Split(body, next);
                        }
                        split
                    }
                    // max - min optional copies, each either skipped (to `next`) or read and
                    // followed by the next optional one.
                    Some(max) => {
                        let mut entry = next;
                        for _ in *min..*max {
                            let body = self.emit(node, entry)?;
                            entry = self.push(Inst::Split(body, next))?;
                        }
                        entry
                    }
                };
                for _ in 0..*min {
                    entry = self.emit(node, entry)?;
                }
                Ok(entry)
            }
        }
    }
}
