//! The module's largest function body, by its name in the module's name section.
//!
//! Why: Envoy compiles the whole module with V8's TurboFan when it loads it, and its
//! allocator keeps most of the memory that compile needed at its peak. That peak follows
//! the largest functions, not the module's size: 400 KB of code as ten 40 KB functions
//! costs Envoy 16 MB of RSS, as a hundred 4 KB functions 3 MB (bench/README.md, "Fifth
//! pass"). The build refuses a module whose largest function grew past a bound, so an
//! inlining that makes a new giant is seen when it happens.

use crate::{read_leb, slice};

const IMPORT_SECTION: u8 = 2;
const CODE_SECTION: u8 = 10;
const CUSTOM_SECTION: u8 = 0;
const FUNCTION_NAMES: u8 = 1;

/// The largest function body's size in bytes and its name (`function <index>` without a
/// name section); `None` for a module without code.
pub fn largest_function(module: &[u8]) -> Result<Option<(usize, String)>, String> {
    let mut pos = crate::MAGIC.len();
    let (mut imported, mut largest, mut names) = (0u32, None::<(usize, u32)>, None);
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let size = read_leb(module, &mut pos)? as usize;
        let payload = slice(module, &mut pos, size)?;
        match id {
            IMPORT_SECTION => imported = imported_functions(payload)?,
            CODE_SECTION => largest = largest_body(payload)?,
            CUSTOM_SECTION => names = names.or(function_names(payload)?),
            _ => {}
        }
    }
    Ok(largest.map(|(size, local)| {
        let index = imported + local;
        let name = names.and_then(|n: Vec<(u32, String)>| n.into_iter().find(|(i, _)| *i == index).map(|(_, name)| name));
        (size, name.unwrap_or_else(|| format!("function {index}")))
    }))
}

fn imported_functions(payload: &[u8]) -> Result<u32, String> {
    let mut pos = 0;
    let mut functions = 0;
    for _ in 0..read_leb(payload, &mut pos)? {
        for _ in 0..2 {
            let len = read_leb(payload, &mut pos)? as usize; // module, then field name
            slice(payload, &mut pos, len)?;
        }
        match slice(payload, &mut pos, 1)?[0] {
            0 => {
                read_leb(payload, &mut pos)?; // type index
                functions += 1;
            }
            1 => {
                slice(payload, &mut pos, 1)?; // element type
                limits(payload, &mut pos)?;
            }
            2 => limits(payload, &mut pos)?,
            3 => {
                slice(payload, &mut pos, 2)?; // value type, mutability
            }
            other => return Err(format!("import of unknown kind {other}")),
        }
    }
    Ok(functions)
}

fn limits(payload: &[u8], pos: &mut usize) -> Result<(), String> {
    let flags = read_leb(payload, pos)?;
    read_leb(payload, pos)?;
    if flags & 1 != 0 {
        read_leb(payload, pos)?;
    }
    Ok(())
}

/// (size, index among the module's own functions) of the largest body.
fn largest_body(payload: &[u8]) -> Result<Option<(usize, u32)>, String> {
    let mut pos = 0;
    let mut largest: Option<(usize, u32)> = None;
    for index in 0..read_leb(payload, &mut pos)? {
        let size = read_leb(payload, &mut pos)? as usize;
        slice(payload, &mut pos, size)?;
        if largest.is_none_or(|(most, _)| size > most) {
            largest = Some((size, index));
        }
    }
    Ok(largest)
}

/// The function names of a `name` custom section; `None` for any other custom section.
fn function_names(payload: &[u8]) -> Result<Option<Vec<(u32, String)>>, String> {
    let mut pos = 0;
    let len = read_leb(payload, &mut pos)? as usize;
    if slice(payload, &mut pos, len)? != b"name" {
        return Ok(None);
    }
    while pos < payload.len() {
        let kind = slice(payload, &mut pos, 1)?[0];
        let size = read_leb(payload, &mut pos)? as usize;
        let sub = slice(payload, &mut pos, size)?;
        if kind != FUNCTION_NAMES {
            continue;
        }
        let mut at = 0;
        let mut names = Vec::new();
        for _ in 0..read_leb(sub, &mut at)? {
            let index = read_leb(sub, &mut at)?;
            let len = read_leb(sub, &mut at)? as usize;
            names.push((index, String::from_utf8_lossy(slice(sub, &mut at, len)?).into_owned()));
        }
        return Ok(Some(names));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::largest_function;

    /// One imported function, then two of the module's own (bodies of 4 and 7 bytes), the
    /// second named "big".
    fn module() -> Vec<u8> {
        let mut m = crate::MAGIC.to_vec();
        m.extend([1, 4, 1, 0x60, 0, 0]); // type section: () -> ()
        m.extend([2, 7, 1, 1, b'e', 1, b'f', 0, 0]); // import section: e.f, a function
        m.extend([3, 3, 2, 0, 0]); // function section: two of type 0
        m.extend([10, 12, 2, 3, 0, 1, 0x0b, 6, 0, 1, 1, 1, 1, 0x0b]); // code: a 3-byte and a 6-byte body
        let names = [4, b'n', b'a', b'm', b'e', 1, 6, 1, 2, 3, b'b', b'i', b'g'];
        m.push(0);
        m.push(names.len() as u8);
        m.extend(names);
        m
    }

    #[test]
    fn names_the_largest_body_counting_imports_in_the_index() {
        assert_eq!(largest_function(&module()).unwrap(), Some((6, String::from("big"))));
    }

    #[test]
    fn a_module_without_names_gives_the_index() {
        let m = module();
        let without_names = &m[..m.len() - 15];
        assert_eq!(largest_function(without_names).unwrap(), Some((6, String::from("function 2"))));
    }
}
