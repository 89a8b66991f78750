//! A verified signature's single use, counted by the control plane's RateLimitService
//! (envoy.service.ratelimit.v3), which Envoys already reach over mutual TLS: the filter
//! sends one descriptor, `signature_replay = <digest>, window_ms = <2 x tolerance>`; the
//! service admits the digest's first use in the window and answers OVER_LIMIT for any
//! other, on whichever Envoy it comes (the count is in the shared Redis).
//!
//! The messages are a few fields each, so they are written and read here by hand rather
//! than by pulling a protobuf runtime into the wasm; the control plane's tests decode them
//! with the generated types.

/// The domain the ratelimit filters send too; the service answers only this one.
pub const DOMAIN: &str = "stagedoor";
/// The descriptor entry that marks a replay check, and its window.
pub const DIGEST_KEY: &str = "signature_replay";
pub const WINDOW_KEY: &str = "window_ms";
pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";

/// What the service answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayVerdict {
    /// The first use: the request goes on.
    FirstUse,
    /// Seen within the window: 401 SIGNATURE_REPLAYED.
    Replayed,
    /// Any other answer (UNKNOWN, or a reply that does not read): fail closed.
    Unreadable,
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn length_delimited(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `RateLimitRequest { domain, descriptors: [{ entries: [digest, window] }], hits_addend: 1 }`.
pub fn rate_limit_request(digest: &str, window_ms: u64) -> Vec<u8> {
    let entry = |key: &str, value: &str| {
        let mut entry = Vec::new();
        length_delimited(&mut entry, 1, key.as_bytes());
        length_delimited(&mut entry, 2, value.as_bytes());
        entry
    };
    let mut descriptor = Vec::new();
    length_delimited(&mut descriptor, 1, &entry(DIGEST_KEY, digest));
    length_delimited(&mut descriptor, 1, &entry(WINDOW_KEY, &window_ms.to_string()));
    let mut request = Vec::new();
    length_delimited(&mut request, 1, DOMAIN.as_bytes());
    length_delimited(&mut request, 2, &descriptor);
    varint(&mut request, 3 << 3);
    varint(&mut request, 1);
    request
}

/// `GrpcService { envoy_grpc: { cluster_name } }`: how proxy-wasm names the upstream of a
/// gRPC call (a bare cluster name is a guess Envoy makes only when this does not parse).
pub fn grpc_service(cluster: &str) -> Vec<u8> {
    let mut envoy_grpc = Vec::new();
    length_delimited(&mut envoy_grpc, 1, cluster.as_bytes());
    let mut service = Vec::new();
    length_delimited(&mut service, 1, &envoy_grpc);
    service
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// `RateLimitResponse.overall_code` (field 1): OK = 1, OVER_LIMIT = 2; every other field
/// is skipped.
pub fn read_verdict(bytes: &[u8]) -> ReplayVerdict {
    let mut at = 0;
    let mut code = 0;
    while at < bytes.len() {
        let Some(tag) = read_varint(bytes, &mut at) else { return ReplayVerdict::Unreadable };
        // Where the field ends; `None` for a wire type this message never carries.
        let end = match (tag >> 3, tag & 7) {
            (1, 0) => read_varint(bytes, &mut at).map(|value| {
                code = value;
                at
            }),
            (_, 0) => read_varint(bytes, &mut at).map(|_| at),
            (_, 1) => Some(at + 8),
            (_, 5) => Some(at + 4),
            (_, 2) => read_varint(bytes, &mut at).and_then(|len| usize::try_from(len).ok()).map(|len| at.saturating_add(len)),
            _ => None,
        };
        match end {
            Some(end) if end <= bytes.len() => at = end,
            _ => return ReplayVerdict::Unreadable,
        }
    }
    match code {
        1 => ReplayVerdict::FirstUse,
        2 => ReplayVerdict::Replayed,
        _ => ReplayVerdict::Unreadable,
    }
}
