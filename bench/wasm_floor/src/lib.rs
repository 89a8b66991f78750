//! The wasm floor: an empty proxy-wasm filter that reads the request header map once.
//!
//! No SDK: the exports Envoy needs (ABI 0.2.1), a bump allocator over one static buffer
//! (reset after each read, so Envoy's allocation for the header map costs the same on
//! every request), and one `proxy_get_header_map_pairs` call per request. What Stagedoor
//! adds above this is the filter's own work and its header writes.
//!
//! The plugin configuration picks what else it does per request, to price the two ways of
//! handing the identity to the upstream (issue 18's moonshot) apart from the filter's logic:
//! - `""`: nothing (the floor);
//! - `"headers"`: Stagedoor's seven identity writes, one replace (the client sent a copy)
//!   and six adds, values as long as the bench token's;
//! - `"short"`: as `"headers"`, with a 57-byte statement (`v2.<ts>.<MAC>`, the MAC over the
//!   six header values and `ts` instead of a copy of them: what a shorter encoding of the
//!   same guarantee would weigh) in place of the 317-byte `STATEMENT`;
//! - `"pairs"`: the same identity in one `proxy_set_header_map_pairs` call: the map read is
//!   written back without the client's copies of the seven names and with the seven added
//!   (Envoy 1.40 clears the map and adds every pair back);
//! - `"state"`: the same seven values as filter state (`proxy_set_property`, one call each:
//!   Envoy's wasm filter state has no fields, so one formatter reads one key), which the
//!   route's `request_headers_to_add` expands (`%FILTER_STATE(wasm.<key>:PLAIN)%`).
//!
//! And what one header write is made of (each mode's cost over the floor's, same run):
//! - `"clock"`: one `proxy_get_current_time_nanoseconds`: a host call with no header work
//!   (the crossing into Envoy and back, and the clock read the statement's `ts` would take);
//! - `"remove1"`, `"remove2"`: one or two `proxy_remove_header_map_value` of a header the
//!   request does not carry: the crossing, a lookup, and Envoy clearing the route cache
//!   (it does on every request-header change from a 0.2.1 module), so the router matches
//!   the route again; the second remove pays no second match;
//! - `"add1"`: one `proxy_add_header_map_value` (`x-tenant-source: jwt`): a real write,
//!   sent upstream.
#![no_std]
#![allow(unsafe_code)]

use core::cell::UnsafeCell;

const HEAP_BYTES: usize = 64 * 1024;

struct Heap {
    bytes: UnsafeCell<[u8; HEAP_BYTES]>,
    used: UnsafeCell<usize>,
}

// Why: a proxy-wasm VM runs one thread; the heap is never shared.
unsafe impl Sync for Heap {}

static HEAP: Heap = Heap { bytes: UnsafeCell::new([0; HEAP_BYTES]), used: UnsafeCell::new(0) };

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_buffer_bytes(buffer_type: u32, start: usize, max: usize, data: *mut *mut u8, size: *mut usize) -> u32;
    fn proxy_replace_header_map_value(map_type: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_add_header_map_value(map_type: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_set_header_map_pairs(map_type: u32, data: *const u8, size: usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key: *const u8, key_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
}

/// proxy-wasm's `BufferType::PluginConfiguration`.
const PLUGIN_CONFIGURATION: u32 = 7;

const NOTHING: u32 = 0;
const HEADERS: u32 = 1;
const STATE: u32 = 2;
const SHORT: u32 = 3;
const PAIRS: u32 = 4;
const CLOCK: u32 = 5;
const REMOVE1: u32 = 6;
const REMOVE2: u32 = 7;
const ADD1: u32 = 8;

/// A header no request of the bench carries.
const ABSENT: &str = "x-stagedoor-absent";

struct Mode(UnsafeCell<u32>);

// Why: as for the heap, one thread.
unsafe impl Sync for Mode {}

static MODE: Mode = Mode(UnsafeCell::new(NOTHING));

/// (header name, filter-state key, value): the bench token's identity, as Stagedoor writes it.
const IDENTITY: [(&str, &str, &str); 7] = [
    ("x-tenant-id", "stagedoor_tenant_id", "tenant-a"),
    ("x-tenant-source", "stagedoor_tenant_source", "jwt"),
    ("x-user-id", "stagedoor_user_id", "user-bench"),
    ("x-user-role", "stagedoor_user_role", "venue-manager"),
    ("x-user-permissions", "stagedoor_user_permissions", "events:manage,reports:view,venues:manage,venues:view"),
    ("x-venue-ids", "stagedoor_venue_ids", "v1,v2"),
    ("x-stagedoor-identity", "stagedoor_identity", STATEMENT),
];

/// A statement that carries only `ts` and the MAC.
const SHORT_STATEMENT: &str = "v2.1764600000.q3Jm0cVbH8w6tYpQmS2dXk9LrA4nE7zUoGfWi1aBcDe";

/// As long as the bench's signed statement (v1.<base64url JSON>.<base64url MAC>).
const STATEMENT: &str = "v1.eyJ0ZW5hbnRfaWQiOiJ0ZW5hbnQtYSIsInVzZXJfaWQiOiJ1c2VyLWJlbmNoIiwicm9sZSI6InZlbnVlLW1hbmFnZXIiLCJwZXJtaXNzaW9ucyI6WyJldmVudHM6bWFuYWdlIiwicmVwb3J0czp2aWV3IiwidmVudWVzOm1hbmFnZSIsInZlbnVlczp2aWV3Il0sInZlbnVlcyI6WyJ2MSIsInYyIl0sImlhdCI6MTc2NDYwMDAwMCwiZXhwIjoxNzY0NjAwMDEwfQ.q3Jm0cVbH8w6tYpQmS2dXk9LrA4nE7zUoGfWi1aBcDe";

const OUT_BYTES: usize = 16 * 1024;
const MAX_PAIRS: usize = 128;

struct Out(UnsafeCell<[u8; OUT_BYTES]>);

// Why: as for the heap, one thread.
unsafe impl Sync for Out {}

static OUT: Out = Out(UnsafeCell::new([0; OUT_BYTES]));

fn u32_at(bytes: &[u8], at: usize) -> Option<usize> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// The map in proxy-wasm's serialization (count, then each pair's two sizes, then each
/// name and value NUL-terminated), less the identity names, plus the identity.
fn map_with_identity(map: &[u8], out: &mut [u8]) -> Option<usize> {
    let count = u32_at(map, 0)?;
    let mut kept = [(0usize, 0usize, 0usize, 0usize); MAX_PAIRS];
    let mut n = 0;
    let mut at = 4 + 8 * count;
    for i in 0..count {
        let (name_len, value_len) = (u32_at(map, 4 + 8 * i)?, u32_at(map, 8 + 8 * i)?);
        let name = map.get(at..at + name_len)?;
        if !IDENTITY.iter().any(|(h, _, _)| h.as_bytes() == name) && n < MAX_PAIRS {
            kept[n] = (at, name_len, at + name_len + 1, value_len);
            n += 1;
        }
        at += name_len + value_len + 2;
    }
    let total = n + IDENTITY.len();
    let mut w = 4 + 8 * total;
    out.get_mut(0..4)?.copy_from_slice(&(total as u32).to_le_bytes());
    let mut put = |i: usize, name: &[u8], value: &[u8], w: &mut usize| -> Option<()> {
        out.get_mut(4 + 8 * i..8 + 8 * i)?.copy_from_slice(&(name.len() as u32).to_le_bytes());
        out.get_mut(8 + 8 * i..12 + 8 * i)?.copy_from_slice(&(value.len() as u32).to_le_bytes());
        for part in [name, value] {
            out.get_mut(*w..*w + part.len())?.copy_from_slice(part);
            *out.get_mut(*w + part.len())? = 0;
            *w += part.len() + 1;
        }
        Some(())
    };
    for (i, (name_at, name_len, value_at, value_len)) in kept.iter().take(n).enumerate() {
        put(i, map.get(*name_at..name_at + name_len)?, map.get(*value_at..value_at + value_len)?, &mut w)?;
    }
    for (i, (header, _, value)) in IDENTITY.iter().enumerate() {
        put(n + i, header.as_bytes(), value.as_bytes(), &mut w)?;
    }
    Some(w)
}

fn write_pairs(map: &[u8]) {
    // Safety: single-threaded VM; OUT is only used here, within this call.
    let out = unsafe { &mut *OUT.0.get() };
    if let Some(size) = map_with_identity(map, out) {
        // Safety: the pointer and length describe the bytes just written.
        let _ = unsafe { proxy_set_header_map_pairs(0, out.as_ptr(), size) };
    }
}

fn write_identity(mode: u32) {
    for (i, (header, key, value)) in IDENTITY.iter().enumerate() {
        let value = if mode == SHORT && i == IDENTITY.len() - 1 { SHORT_STATEMENT } else { value };
        // Safety: the pointers and lengths describe static strings.
        let _ = unsafe {
            match mode {
                HEADERS | SHORT if i == 0 => proxy_replace_header_map_value(0, header.as_ptr(), header.len(), value.as_ptr(), value.len()),
                HEADERS | SHORT => proxy_add_header_map_value(0, header.as_ptr(), header.len(), value.as_ptr(), value.len()),
                _ => proxy_set_property(key.as_ptr(), key.len(), value.as_ptr(), value.len()),
            }
        };
    }
}

/// The parts of one header write (see the module's doc).
fn one_write(mode: u32) {
    let mut nanos: u64 = 0;
    let (name, value) = (IDENTITY[1].0, IDENTITY[1].2);
    // Safety: the pointers and lengths describe static strings and a local.
    unsafe {
        match mode {
            CLOCK => {
                let _ = proxy_get_current_time_nanoseconds(&mut nanos);
            }
            REMOVE1 | REMOVE2 => {
                let _ = proxy_remove_header_map_value(0, ABSENT.as_ptr(), ABSENT.len());
                if mode == REMOVE2 {
                    let _ = proxy_remove_header_map_value(0, ABSENT.as_ptr(), ABSENT.len());
                }
            }
            _ => {
                let _ = proxy_add_header_map_value(0, name.as_ptr(), name.len(), value.as_ptr(), value.len());
            }
        }
    }
    core::hint::black_box(nanos);
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    // Safety: single-threaded VM; the pointer stays inside HEAP (null when it would not).
    unsafe {
        let used = *HEAP.used.get();
        if used + size > HEAP_BYTES {
            return core::ptr::null_mut();
        }
        *HEAP.used.get() = used + size;
        (HEAP.bytes.get() as *mut u8).add(used)
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _root_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _configuration_size: usize) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, _configuration_size: usize) -> u32 {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size: usize = 0;
    // Safety: as for the header map; the bytes are read before the heap is reset.
    let mode = unsafe {
        let status = proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, 64, &mut data, &mut size);
        let config = if status == 0 && !data.is_null() { core::slice::from_raw_parts(data, size) } else { &[] };
        let mode = match config {
            b"headers" => HEADERS,
            b"state" => STATE,
            b"short" => SHORT,
            b"pairs" => PAIRS,
            b"clock" => CLOCK,
            b"remove1" => REMOVE1,
            b"remove2" => REMOVE2,
            b"add1" => ADD1,
            _ => NOTHING,
        };
        *HEAP.used.get() = 0;
        mode
    };
    // Safety: single-threaded VM.
    unsafe { *MODE.0.get() = mode };
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: usize, _end_of_stream: u32) -> u32 {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size: usize = 0;
    // Safety: the host writes a pointer it got from proxy_on_memory_allocate, and a size.
    let status = unsafe { proxy_get_header_map_pairs(0, &mut data, &mut size) };
    // Read the pair count (the first four bytes), as any filter parsing the map would.
    let pairs = if status == 0 && size >= 4 && !data.is_null() {
        // Safety: the host wrote `size` bytes at `data`.
        unsafe { core::ptr::read_unaligned(data as *const u32) }
    } else {
        0
    };
    core::hint::black_box(pairs);
    // Safety: single-threaded VM.
    let mode = unsafe { *MODE.0.get() };
    if mode == PAIRS && pairs > 0 {
        // Safety: the host wrote `size` bytes at `data`; the heap is reset only below.
        write_pairs(unsafe { core::slice::from_raw_parts(data, size) });
    } else if mode >= CLOCK {
        one_write(mode);
    } else if mode != NOTHING {
        write_identity(mode);
    }
    // Safety: single-threaded VM; nothing outlives this call.
    unsafe { *HEAP.used.get() = 0 };
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
