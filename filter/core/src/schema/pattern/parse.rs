//! Pattern text -> [`Node`] tree (the subset in the module's doc; anything else refused).

use super::MAX_REPEAT;

/// Group nesting bound: the compiler recurses on the tree.
const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    Empty,
    Class(ByteClass),
    Start,
    End,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat { node: Box<Node>, min: u32, max: Option<u32> },
}

/// A set of bytes, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct ByteClass([u64; 4]);

impl ByteClass {
    fn add_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[usize::from(b / 64)] |= 1 << (b % 64);
        }
    }

    fn add_class(&mut self, other: ByteClass) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine |= theirs;
        }
    }

    fn negated(self) -> Self {
        Self(self.0.map(|word| !word))
    }

    fn single(b: u8) -> Self {
        let mut class = Self::default();
        class.add_range(b, b);
        class
    }

    pub(super) fn contains(&self, b: u8) -> bool {
        self.0[usize::from(b / 64)] & (1 << (b % 64)) != 0
    }
}

pub(super) fn parse(source: &str) -> Result<Node, String> {
    if !source.is_ascii() {
        return Err(String::from("only ASCII patterns are supported"));
    }
    let mut parser = Parser { bytes: source.as_bytes(), at: 0, depth: 0 };
    let node = parser.alternation()?;
    match parser.peek() {
        None => Ok(node),
        Some(_) => Err(format!("unmatched ')' at {}", parser.at)),
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek();
        self.at += usize::from(b.is_some());
        b
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn alternation(&mut self) -> Result<Node, String> {
        let mut branches = vec![self.concatenation()?];
        while self.eat(b'|') {
            branches.push(self.concatenation()?);
        }
        Ok(if branches.len() == 1 { branches.remove(0) } else { Node::Alt(branches) })
    }

    fn concatenation(&mut self) -> Result<Node, String> {
        let mut pieces = Vec::new();
        while let Some(b) = self.peek() {
            if b == b'|' || b == b')' {
                break;
            }
            pieces.push(self.piece()?);
        }
        Ok(match pieces.len() {
            0 => Node::Empty,
            1 => pieces.remove(0),
            _ => Node::Concat(pieces),
        })
    }

    fn piece(&mut self) -> Result<Node, String> {
        let atom = self.atom()?;
        let Some((min, max)) = self.quantifier()? else { return Ok(atom) };
        if matches!(atom, Node::Start | Node::End) {
            return Err(String::from("an anchor cannot be repeated"));
        }
        if matches!(self.peek(), Some(b'*' | b'+' | b'?' | b'{')) {
            return Err(format!("lazy or repeated quantifiers are not supported (at {})", self.at));
        }
        Ok(Node::Repeat { node: Box::new(atom), min, max })
    }

    fn quantifier(&mut self) -> Result<Option<(u32, Option<u32>)>, String> {
        let counts = match self.peek() {
            Some(b'*') => (0, None),
            Some(b'+') => (1, None),
            Some(b'?') => (0, Some(1)),
            Some(b'{') => {
                self.at += 1;
                let min = self.number()?;
                let max = if self.eat(b',') { if self.peek() == Some(b'}') { None } else { Some(self.number()?) } } else { Some(min) };
                if !self.eat(b'}') {
                    return Err(format!("bad counted repetition at {}", self.at));
                }
                if max.is_some_and(|max| max < min) {
                    return Err(String::from("a counted repetition's maximum is below its minimum"));
                }
                return Ok(Some((min, max)));
            }
            _ => return Ok(None),
        };
        self.at += 1;
        Ok(Some(counts))
    }

    fn number(&mut self) -> Result<u32, String> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let digits = std::str::from_utf8(&self.bytes[start..self.at]).unwrap_or("");
        match digits.parse::<u32>() {
            Ok(n) if n <= MAX_REPEAT => Ok(n),
            Ok(_) | Err(_) if digits.len() > 3 => Err(format!("counts above {MAX_REPEAT} are not supported")),
            _ => Err(format!("bad counted repetition at {start}")),
        }
    }

    fn atom(&mut self) -> Result<Node, String> {
        let at = self.at;
        match self.next() {
            Some(b'(') => self.group(),
            Some(b'[') => self.class().map(Node::Class),
            Some(b'.') => Ok(Node::Class(ByteClass::single(b'\n').negated())),
            Some(b'^') => Ok(Node::Start),
            Some(b'$') => Ok(Node::End),
            Some(b'\\') => self.escape().map(Node::Class),
            Some(b'*' | b'+' | b'?' | b'{') => Err(format!("nothing to repeat at {at}")),
            Some(b) => Ok(Node::Class(ByteClass::single(b))),
            None => Err(String::from("unexpected end")),
        }
    }

    fn group(&mut self) -> Result<Node, String> {
        if self.eat(b'?') && !self.eat(b':') {
            return Err(String::from("lookaround and named groups are not supported"));
        }
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(format!("groups nested deeper than {MAX_NESTING}"));
        }
        let node = self.alternation()?;
        self.depth -= 1;
        if !self.eat(b')') {
            return Err(String::from("unclosed group"));
        }
        Ok(node)
    }

    /// After `\`: a class escape or an escaped byte.
    fn escape(&mut self) -> Result<ByteClass, String> {
        let digit = || {
            let mut c = ByteClass::default();
            c.add_range(b'0', b'9');
            c
        };
        let word = || {
            let mut c = digit();
            c.add_range(b'a', b'z');
            c.add_range(b'A', b'Z');
            c.add_range(b'_', b'_');
            c
        };
        let space = || {
            let mut c = ByteClass::default();
            c.add_range(b'\t', b'\r'); // \t \n \v \f \r
            c.add_range(b' ', b' ');
            c
        };
        let single = |b| Ok(ByteClass::single(b));
        match self.next() {
            Some(b'd') => Ok(digit()),
            Some(b'D') => Ok(digit().negated()),
            Some(b'w') => Ok(word()),
            Some(b'W') => Ok(word().negated()),
            Some(b's') => Ok(space()),
            Some(b'S') => Ok(space().negated()),
            Some(b'n') => single(b'\n'),
            Some(b't') => single(b'\t'),
            Some(b'r') => single(b'\r'),
            Some(b'f') => single(0x0c),
            Some(b'v') => single(0x0b),
            Some(b'x') => {
                let hex = |p: &mut Self| p.next().and_then(|b| char::from(b).to_digit(16));
                match (hex(self), hex(self)) {
                    (Some(h), Some(l)) => single(u8::try_from(h * 16 + l).unwrap_or(0)),
                    _ => Err(String::from("\\x needs two hex digits")),
                }
            }
            Some(b) if b.is_ascii_punctuation() || b == b' ' => single(b),
            Some(b) => Err(format!("escape \\{} is not supported", char::from(b))),
            None => Err(String::from("a pattern cannot end with \\")),
        }
    }

    /// After `[`: items up to `]`, `^` first for a negated class.
    fn class(&mut self) -> Result<ByteClass, String> {
        let negated = self.eat(b'^');
        let mut class = ByteClass::default();
        let mut empty = true;
        loop {
            let item = match self.next() {
                None => return Err(String::from("unclosed class")),
                Some(b']') if !empty => break,
                Some(b']') => return Err(String::from("an empty class is not supported")),
                Some(b'[') => return Err(String::from("'[' inside a class must be escaped")),
                Some(b'\\') => self.escape()?,
                Some(b) => ByteClass::single(b),
            };
            empty = false;
            let lo = single_byte(&item);
            if let (Some(lo), true) = (lo, self.peek() == Some(b'-') && self.bytes.get(self.at + 1) != Some(&b']')) {
                self.at += 1;
                let hi = match self.next() {
                    Some(b'\\') => single_byte(&self.escape()?),
                    Some(b'[') | None => None,
                    Some(b) => Some(b),
                };
                match hi {
                    Some(hi) if lo <= hi => class.add_range(lo, hi),
                    Some(_) => return Err(String::from("a class range runs backwards")),
                    None => return Err(String::from("a class range needs a single character at its end")),
                }
            } else {
                class.add_class(item);
            }
        }
        Ok(if negated { class.negated() } else { class })
    }
}

/// The byte a one-byte class holds (`None` for `\d` and the like).
fn single_byte(class: &ByteClass) -> Option<u8> {
    let mut bytes = (0..=255u8).filter(|b| class.contains(*b));
    match (bytes.next(), bytes.next()) {
        (Some(b), None) => Some(b),
        _ => None,
    }
}
