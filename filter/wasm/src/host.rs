//! The one host call made without the SDK: reading the request's header map.
//!
//! The SDK's `get_http_request_headers` copies every name and value into a `String` and
//! panics when a value is not UTF-8 (HTTP/1 allows such bytes), which kills the VM: every
//! later request on that worker then fails. Here the host's buffer is kept as it is and
//! read in place by `stagedoor_filter_core::header_map`, which never panics.
#![allow(unsafe_code)]

use proxy_wasm::types::{MapType, Status};

#[cfg_attr(target_arch = "wasm32", link(wasm_import_module = "env"))]
extern "C" {
    // Declared with a plain u32 result: a status outside the SDK's enum must not be
    // turned into one.
    fn proxy_get_header_map_pairs(map_type: MapType, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
}

/// The request header map as the host serialized it; `None` if the host refused.
pub fn request_header_bytes() -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a length into the two locals. A non-null
    // buffer was allocated in this module's memory by the SDK's `proxy_on_memory_allocate`
    // (a boxed byte slice of exactly `size` bytes) and is now ours, so taking it back as a
    // `Vec` of that length and capacity is how the SDK frees it too.
    unsafe {
        let status = proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size);
        if status != Status::Ok as u32 {
            return None;
        }
        if data.is_null() {
            return Some(Vec::new());
        }
        Some(Vec::from_raw_parts(data, size, size))
    }
}
