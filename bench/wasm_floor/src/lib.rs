//! The wasm floor: an empty proxy-wasm filter that reads the request header map once.
//!
//! No SDK: the exports Envoy needs (ABI 0.2.1), a bump allocator over one static buffer
//! (reset after each read, so Envoy's allocation for the header map costs the same on
//! every request), and one `proxy_get_header_map_pairs` call per request. What Stagedoor
//! adds above this is the filter's own work and its header writes.
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
    // Safety: single-threaded VM; nothing outlives this call.
    unsafe { *HEAP.used.get() = 0 };
    core::hint::black_box(pairs);
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
