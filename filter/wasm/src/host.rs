//! Every call the filter makes into Envoy, in one place, each returning a `Result`.
//!
//! The SDK's trait defaults `unwrap()` the host's status, and its `hostcalls` functions
//! `panic!` on a status they did not expect; its map readers also panic on header values
//! that are not UTF-8. A panic kills the VM and fails every later request on the worker.
//! So the host functions are declared here with a plain `u32` status (a status outside the
//! SDK's enum is never transmuted into it) and every failure is an [`HostError`] the
//! caller answers with the gateway's JSON 500/503.
//!
//! One exception: `dispatch_http_call` goes through the SDK, which must register the call's
//! token to route its answer back to the root context; it panics only on statuses Envoy
//! does not return for that call (Envoy returns Ok, BadArgument or InternalFailure).
#![allow(unsafe_code)]

use std::time::Duration;

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};
use stagedoor_filter_core::apply::{HostError, RequestHost};
use stagedoor_filter_core::header_map::serialize_map;

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
/// proxy-wasm's `StreamType::HttpRequest`.
const HTTP_REQUEST_STREAM: u32 = 0;

#[cfg_attr(target_arch = "wasm32", link(wasm_import_module = "env"))]
extern "C" {
    fn proxy_log(level: LogLevel, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_pairs(map_type: MapType, return_map_data: *mut *mut u8, return_map_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: MapType, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_property(path_data: *const u8, path_size: usize, return_value_data: *mut *mut u8, return_value_size: *mut usize) -> u32;
    fn proxy_set_property(path_data: *const u8, path_size: usize, value_data: *const u8, value_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(metric_type: MetricType, name_data: *const u8, name_size: usize, return_id: *mut u32) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

fn check(call: &'static str, status: u32) -> Result<(), HostError> {
    if status == OK { Ok(()) } else { Err(HostError { call, status }) }
}

/// Takes back a buffer the host allocated in this module's memory.
///
/// SAFETY (for callers): `data` is null, or was allocated by the SDK's
/// `proxy_on_memory_allocate` (a boxed byte slice of exactly `size` bytes) and handed to
/// us by the host: it is ours, and a `Vec` of that length and capacity is how the SDK
/// frees it too.
unsafe fn take_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() { Vec::new() } else { Vec::from_raw_parts(data, size, size) }
}

pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the pointer and length describe `message`, which outlives the call.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Unix milliseconds (0 if the host will not say: only the coarse clock would lag).
pub fn now_ms() -> u64 {
    let mut nanos: u64 = 0;
    // SAFETY: the host writes one u64 into the local.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    if status == OK { nanos / 1_000_000 } else { 0 }
}

pub fn set_tick_period(period: Duration) -> Result<(), HostError> {
    let ms = u32::try_from(period.as_millis()).unwrap_or(u32::MAX);
    // SAFETY: no pointers.
    check("set_tick_period", unsafe { proxy_set_tick_period_milliseconds(ms) })
}

fn buffer(call: &'static str, kind: BufferType, start: usize, max: usize) -> Result<Vec<u8>, HostError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a length into the two locals; see take_buffer.
    unsafe {
        match proxy_get_buffer_bytes(kind, start, max, &mut data, &mut size) {
            OK => Ok(take_buffer(data, size)),
            NOT_FOUND => Ok(Vec::new()),
            status => Err(HostError { call, status }),
        }
    }
}

pub fn plugin_configuration() -> Result<Vec<u8>, HostError> {
    buffer("plugin_configuration", BufferType::PluginConfiguration, 0, usize::MAX)
}

pub fn request_body(size: usize) -> Result<Vec<u8>, HostError> {
    buffer("request_body", BufferType::HttpRequestBody, 0, size)
}

/// The message of a gRPC call's answer.
pub fn grpc_response_body(size: usize) -> Result<Vec<u8>, HostError> {
    buffer("grpc_response_body", BufferType::GrpcReceiveBuffer, 0, size)
}

pub fn call_response_body(size: usize) -> Result<Vec<u8>, HostError> {
    buffer("call_response_body", BufferType::HttpCallResponseBody, 0, size)
}

fn map_bytes(call: &'static str, map: MapType) -> Result<Vec<u8>, HostError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `buffer`.
    unsafe {
        check(call, proxy_get_header_map_pairs(map, &mut data, &mut size))?;
        Ok(take_buffer(data, size))
    }
}

/// The request header map as the host serialized it (read in place by
/// `stagedoor_filter_core::header_map`).
pub fn request_header_bytes() -> Result<Vec<u8>, HostError> {
    map_bytes("request_headers", MapType::HttpRequestHeaders)
}

pub fn request_trailer_bytes() -> Result<Vec<u8>, HostError> {
    map_bytes("request_trailers", MapType::HttpRequestTrailers)
}

/// Every header of the answer to a callout, as the host serialized the map (read with
/// `stagedoor_filter_core::header_map::parse`).
pub fn call_response_header_bytes() -> Result<Vec<u8>, HostError> {
    map_bytes("call_response_headers", MapType::HttpCallResponseHeaders)
}

/// One header of the answer to a callout, as bytes (`None` if absent).
pub fn call_response_header(name: &str) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `buffer`; `name` outlives the call.
    unsafe {
        match proxy_get_header_map_value(MapType::HttpCallResponseHeaders, name.as_ptr(), name.len(), &mut data, &mut size) {
            OK => Ok(Some(take_buffer(data, size))),
            NOT_FOUND => Ok(None),
            status => Err(HostError { call: "call_response_header", status }),
        }
    }
}

/// The downstream peer's address without its port (Envoy's `source.address`), as the
/// route's `%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%` spells it.
pub fn downstream_ip() -> Result<String, HostError> {
    const PATH: &[u8] = b"source\0address";
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: as in `buffer`; `PATH` is static.
    let raw = unsafe {
        match proxy_get_property(PATH.as_ptr(), PATH.len(), &mut data, &mut size) {
            OK => take_buffer(data, size),
            status => return Err(HostError { call: "get_property", status }),
        }
    };
    let address = String::from_utf8(raw).map_err(|_| HostError { call: "get_property", status: u32::MAX })?;
    // "1.2.3.4:5678" or "[::1]:5678".
    let host = address.rsplit_once(':').map_or(address.as_str(), |(host, _)| host);
    Ok(host.trim_start_matches('[').trim_end_matches(']').to_owned())
}

fn set_header(map: MapType, name: &str, value: Option<&str>) -> Result<(), HostError> {
    // SAFETY: the pointers and lengths describe `name` and `value`, which outlive the call.
    let status = unsafe {
        match value {
            Some(v) => proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len()),
            None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
        }
    };
    check("set_header", status)
}

pub fn remove_request_trailer(name: &str) -> Result<(), HostError> {
    set_header(MapType::HttpRequestTrailers, name, None)
}

pub fn send_reply(status: u16, headers: &[(&str, &str)], body: &str) -> Result<(), HostError> {
    send_reply_bytes(status, headers, body.as_bytes())
}

/// As [`send_reply`], with a body that need not be UTF-8 (a cached answer's).
pub fn send_reply_bytes(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Result<(), HostError> {
    let headers = serialize_map(headers);
    // SAFETY: the pointers and lengths describe `body` and `headers`, which outlive the call.
    check("send_reply", unsafe {
        proxy_send_local_response(
            u32::from(status),
            std::ptr::null(),
            0,
            body.as_ptr(),
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

/// Sets a one-segment property of the current request: Envoy keeps it as the filter state
/// `wasm.<name>`, which a route's response header can read (`%FILTER_STATE(...:PLAIN)%`).
pub fn set_request_property(name: &str, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: the pointers and lengths describe `name` and `value`, which outlive the call.
    check("set_property", unsafe { proxy_set_property(name.as_ptr(), name.len(), value.as_ptr(), value.len()) })
}

/// Makes later host calls act on another context (a held request, from the root context).
pub fn set_effective_context(context_id: u32) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check("set_effective_context", unsafe { proxy_set_effective_context(context_id) })
}

/// Lets the effective context's paused request go on.
pub fn resume_request() -> Result<(), HostError> {
    // SAFETY: no pointers.
    check("resume_request", unsafe { proxy_continue_stream(HTTP_REQUEST_STREAM) })
}

pub fn dispatch_http_call(cluster: &str, headers: Vec<(&str, &str)>, body: Option<&[u8]>, timeout: Duration) -> Result<u32, HostError> {
    proxy_wasm::hostcalls::dispatch_http_call(cluster, headers, body, vec![], timeout)
        .map_err(|status| HostError { call: "dispatch_http_call", status: status as u32 })
}

/// A unary gRPC call; its answer comes to the calling context's `on_grpc_call_response`
/// (through the SDK, which must register the token, as for `dispatch_http_call`; Envoy
/// returns Ok, ParseFailure or InternalFailure for it, which the SDK maps without a panic).
pub fn dispatch_grpc_call(upstream: &[u8], service: &str, method: &str, message: &[u8], timeout: Duration) -> Result<u32, HostError> {
    // The SDK takes the upstream as text; Envoy reads it as bytes (a serialized GrpcService).
    let upstream = std::str::from_utf8(upstream).map_err(|_| HostError { call: "dispatch_grpc_call", status: u32::MAX })?;
    proxy_wasm::hostcalls::dispatch_grpc_call(upstream, service, method, vec![], Some(message), timeout)
        .map_err(|status| HostError { call: "dispatch_grpc_call", status: status as u32 })
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, HostError> {
    let mut id: u32 = 0;
    // SAFETY: `name` outlives the call; the host writes one u32 into the local.
    check("define_metric", unsafe { proxy_define_metric(kind, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, by: i64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check("increment_metric", unsafe { proxy_increment_metric(id, by) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), HostError> {
    // SAFETY: no pointers.
    check("record_metric", unsafe { proxy_record_metric(id, value) })
}

/// The current request, as the core's apply step sees the host.
pub struct CurrentRequest;

impl RequestHost for CurrentRequest {
    fn set_request_header(&mut self, name: &str, value: Option<&str>) -> Result<(), HostError> {
        set_header(MapType::HttpRequestHeaders, name, value)
    }

    fn add_request_header(&mut self, name: &str, value: &str) -> Result<(), HostError> {
        // SAFETY: the pointers and lengths describe `name` and `value`, which outlive the call.
        check("add_header", unsafe {
            proxy_add_header_map_value(MapType::HttpRequestHeaders, name.as_ptr(), name.len(), value.as_ptr(), value.len())
        })
    }

    fn send_reply(&mut self, status: u16, headers: &[(&str, &str)], body: &str) -> Result<(), HostError> {
        send_reply(status, headers, body)
    }
}
