//! `stagedoor-wasm-trim [--max-function-bytes N] IN OUT NAME...`: copies a wasm module,
//! leaving out the named exports; with `--max-function-bytes`, refuses a module whose
//! largest function body is longer than N bytes (largest.rs says why).
//!
//! Why: the proxy-wasm Rust SDK exports every callback, and Envoy enters the VM for each
//! export it finds (about 0.5 µs a time) even when the filter ignores the callback. The
//! filter uses request headers only; dropping the response and log callbacks saves those
//! entries on every request. Only the export section changes; the code stays.

use std::process::ExitCode;

mod largest;

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut max_function_bytes = None;
    if args.first().is_some_and(|a| a == "--max-function-bytes") {
        match args.get(1).and_then(|n| n.parse::<usize>().ok()) {
            Some(n) => max_function_bytes = Some(n),
            None => {
                eprintln!("stagedoor-wasm-trim: --max-function-bytes needs a number of bytes");
                return ExitCode::FAILURE;
            }
        }
        args.drain(..2);
    }
    let [input, output, names @ ..] = args.as_slice() else {
        eprintln!("usage: stagedoor-wasm-trim [--max-function-bytes N] IN OUT EXPORT...");
        return ExitCode::FAILURE;
    };
    let result = std::fs::read(input)
        .map_err(|e| format!("{input}: {e}"))
        .and_then(|module| check_largest(&module, max_function_bytes).map_err(|e| format!("{input}: {e}")).map(|()| module))
        .and_then(|module| trim_exports(&module, names).map_err(|e| format!("{input}: {e}")))
        .and_then(|(trimmed, removed)| {
            std::fs::write(output, trimmed).map_err(|e| format!("{output}: {e}"))?;
            Ok(removed)
        });
    match result {
        Ok(removed) => {
            eprintln!("stagedoor-wasm-trim: removed exports {}", removed.join(", "));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("stagedoor-wasm-trim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Refuses a module whose largest function is over `max` bytes, naming it.
fn check_largest(module: &[u8], max: Option<usize>) -> Result<(), String> {
    let Some(max) = max else { return Ok(()) };
    match largest::largest_function(module)? {
        Some((size, name)) if size > max => Err(format!(
            "function {name} is {size} bytes of code, over --max-function-bytes {max}: Envoy keeps the memory V8 needs \
             to compile the largest functions (bench/README.md, \"Fifth pass\"); keep its callees out of line \
             (#[inline(never)])"
        )),
        _ => Ok(()),
    }
}

const MAGIC: &[u8] = b"\0asm\x01\0\0\0";
const EXPORT_SECTION: u8 = 7;

fn read_leb(bytes: &[u8], pos: &mut usize) -> Result<u32, String> {
    let mut result: u64 = 0;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(*pos).ok_or("truncated LEB128")?;
        *pos += 1;
        result |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return u32::try_from(result).map_err(|_| "LEB128 out of range".to_owned());
        }
    }
    Err("LEB128 too long".into())
}

fn write_leb(mut value: u32, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn slice<'a>(bytes: &'a [u8], pos: &mut usize, len: usize) -> Result<&'a [u8], String> {
    let end = pos.checked_add(len).filter(|end| *end <= bytes.len()).ok_or("truncated section")?;
    let s = &bytes[*pos..end];
    *pos = end;
    Ok(s)
}

/// Returns the module without the named exports, and which of them were present. Asking
/// for an export that is absent is fine (an SDK version may not have it).
pub fn trim_exports(module: &[u8], names: &[String]) -> Result<(Vec<u8>, Vec<String>), String> {
    if !module.starts_with(MAGIC) {
        return Err("not a wasm module".into());
    }
    let mut out = MAGIC.to_vec();
    let mut removed = Vec::new();
    let mut pos = MAGIC.len();
    while pos < module.len() {
        let id = module[pos];
        pos += 1;
        let size = read_leb(module, &mut pos)? as usize;
        let payload = slice(module, &mut pos, size)?;
        let payload = if id == EXPORT_SECTION { trim_section(payload, names, &mut removed)? } else { payload.to_vec() };
        out.push(id);
        write_leb(u32::try_from(payload.len()).map_err(|_| "section too large")?, &mut out);
        out.extend_from_slice(&payload);
    }
    Ok((out, removed))
}

fn trim_section(payload: &[u8], names: &[String], removed: &mut Vec<String>) -> Result<Vec<u8>, String> {
    let mut pos = 0;
    let count = read_leb(payload, &mut pos)?;
    let mut kept: Vec<&[u8]> = Vec::new();
    for _ in 0..count {
        let start = pos;
        let name_len = read_leb(payload, &mut pos)? as usize;
        let name = std::str::from_utf8(slice(payload, &mut pos, name_len)?).map_err(|_| "export name is not UTF-8")?;
        slice(payload, &mut pos, 1)?; // kind
        read_leb(payload, &mut pos)?; // index
        if names.iter().any(|n| n == name) {
            removed.push(name.to_owned());
        } else {
            kept.push(&payload[start..pos]);
        }
    }
    let mut out = Vec::new();
    write_leb(u32::try_from(kept.len()).map_err(|_| "too many exports")?, &mut out);
    for entry in kept {
        out.extend_from_slice(entry);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module with one function exported under three names.
    fn module() -> Vec<u8> {
        let mut m = MAGIC.to_vec();
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]); // type section: () -> ()
        m.extend_from_slice(&[3, 2, 1, 0]); // function section: one function of type 0
        let mut exports = vec![3];
        for name in ["a", "bb", "ccc"] {
            exports.push(name.len() as u8);
            exports.extend_from_slice(name.as_bytes());
            exports.extend_from_slice(&[0, 0]);
        }
        m.push(EXPORT_SECTION);
        m.push(exports.len() as u8);
        m.extend_from_slice(&exports);
        m.extend_from_slice(&[10, 4, 1, 2, 0, 0x0b]); // code section: one empty body
        m
    }

    #[test]
    fn removes_only_the_named_exports_and_keeps_the_rest_intact() {
        let (trimmed, removed) = trim_exports(&module(), &["bb".into(), "zz".into()]).unwrap();
        assert_eq!(removed, ["bb"]);
        let (again, removed) = trim_exports(&trimmed, &[]).unwrap();
        assert!(removed.is_empty());
        assert_eq!(again, trimmed, "a trimmed module round-trips");
        assert!(trimmed.windows(3).any(|w| w == b"ccc"));
        assert!(!trimmed.windows(2).any(|w| w == b"bb"));
        assert!(trimmed.ends_with(&[10, 4, 1, 2, 0, 0x0b]), "other sections unchanged");
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        assert!(trim_exports(b"nope", &[]).is_err());
        let mut truncated = module();
        truncated.truncate(truncated.len() - 2);
        assert!(trim_exports(&truncated, &[]).is_err());
    }

    #[test]
    fn leb128_round_trips() {
        for v in [0u32, 1, 127, 128, 300, 16_384, u32::MAX] {
            let mut out = Vec::new();
            write_leb(v, &mut out);
            let mut pos = 0;
            assert_eq!(read_leb(&out, &mut pos).unwrap(), v);
            assert_eq!(pos, out.len());
        }
    }
}
