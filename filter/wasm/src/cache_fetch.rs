//! The response cache's host side: one VM's [`ResponseCache`], the fetches of its misses in
//! flight, and the replies to a fetch's leader and the requests that waited for it.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::types::LogLevel;
use stagedoor_filter_core::config::service_cluster;
use stagedoor_filter_core::header_map;
use stagedoor_filter_core::response_cache::config::MAX_ENTRY_BYTES;
use stagedoor_filter_core::response_cache::{
    is_relayed_header, is_storable, CacheKey, CacheRequest, CacheRoute, Entry, Lookup, Purge, ResponseCache,
};

use crate::host;

struct Fetch {
    key: CacheKey,
    route: Rc<CacheRoute>,
    leader: u32,
    tenant: String,
}

#[derive(Default)]
pub struct EdgeCache {
    cache: ResponseCache,
    fetches: HashMap<u32, Fetch>,
}

/// What the request's context does now.
pub enum Served {
    /// Answered (a hit), or waiting for a fetch: paused.
    Paused,
    /// Not served from the cache: on to the upstream as usual.
    Proxied,
}

impl EdgeCache {
    /// A cacheable, authenticated request whose headers are already applied: answered from
    /// memory, joined to the fetch of its key, or fetched (this request leads).
    pub fn serve(
        &mut self,
        context_id: u32,
        route: &Rc<CacheRoute>,
        service: &str,
        request: &CacheRequest<'_>,
        identity: &[(&'static str, String)],
        request_id: &str,
    ) -> Served {
        let now = host::now_ms();
        let key = route.key(request);
        match self.cache.lookup(&key, context_id, now) {
            Lookup::Hit(entry) => {
                reply(&entry, "HIT", now);
                Served::Paused
            }
            Lookup::Joined => Served::Paused,
            Lookup::Bypass => Served::Proxied,
            Lookup::Miss => {
                let target = route.fetch_target(request);
                let vary = route.vary_values(request);
                let mut headers: Vec<(&str, &str)> =
                    vec![(":method", request.method), (":path", target.as_str()), (":authority", service)];
                if !request_id.is_empty() {
                    headers.push(("x-request-id", request_id));
                }
                headers.extend(identity.iter().map(|(n, v)| (*n, v.as_str())));
                headers.extend(vary.iter().map(|(n, v)| (*n, v.as_str())));
                match host::dispatch_http_call(&service_cluster(service), headers, None, Duration::from_millis(route.timeout_ms)) {
                    Ok(token) => {
                        let tenant = request.tenant.to_owned();
                        self.fetches.insert(token, Fetch { key, route: route.clone(), leader: context_id, tenant });
                        Served::Paused
                    }
                    Err(e) => {
                        host::log(LogLevel::Warn, &format!("stagedoor: cache fetch for {} not sent: {e}", route.name));
                        self.cache.finish(&key);
                        Served::Proxied
                    }
                }
            }
        }
    }

    /// The answer to fetch `token` (in its callback, in the leader's context): stored if
    /// storable, and sent to the leader and every waiter; `false` if not a fetch's token.
    pub fn on_response(&mut self, token: u32, num_headers: usize, body_size: usize) -> bool {
        let Some(Fetch { key, route, leader, tenant }) = self.fetches.remove(&token) else { return false };
        let waiters = self.cache.finish(&key);
        let now = host::now_ms();
        let answer = read_answer(num_headers, body_size);
        let Some(Fetched { status, headers, body }) = answer else {
            // No usable answer: every request goes upstream itself, as without a cache.
            for context in std::iter::once(leader).chain(waiters) {
                resume(context, leader);
            }
            return true;
        };
        let view: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let storable = is_storable(&route, status, &view);
        let relayed: Vec<(String, String)> = headers.iter().filter(|(n, _)| is_relayed_header(n)).cloned().collect();
        let surrogates = headers
            .iter()
            .filter(|(n, _)| n == "surrogate-key")
            .flat_map(|(_, v)| v.split_ascii_whitespace().map(str::to_owned))
            .collect();
        let entry = Entry {
            route: route.name.clone(),
            tenant,
            surrogates,
            stored_ms: now,
            expires_ms: now + route.ttl_ms,
            status,
            headers: relayed,
            body,
        };
        if storable {
            reply(&entry, "MISS", now);
            for waiter in waiters {
                on_context(waiter, leader, || reply(&entry, "HIT", now));
            }
            self.cache.insert(key, entry);
        } else {
            // Not for sharing: the leader gets it, the waiters ask for their own.
            reply(&entry, "BYPASS", now);
            for waiter in waiters {
                resume(waiter, leader);
            }
        }
        true
    }

    /// Applies the purges among a revocation feed update's keys; returns how many entries went.
    pub fn purge<'k>(&mut self, keys: impl Iterator<Item = &'k String>) -> usize {
        keys.filter_map(|key| Purge::from_key(key)).map(|purge| self.cache.purge(&purge)).sum()
    }

    /// A request that went away: a waiter leaves the queue; a leader's waiters go upstream
    /// themselves (its fetch's answer will not come back to a context that is gone).
    pub fn forget(&mut self, context_id: u32) {
        self.cache.forget_waiter(context_id);
        let led: Vec<u32> = self.fetches.iter().filter(|(_, f)| f.leader == context_id).map(|(t, _)| *t).collect();
        for token in led {
            if let Some(fetch) = self.fetches.remove(&token) {
                for waiter in self.cache.finish(&fetch.key) {
                    resume(waiter, context_id);
                }
            }
        }
    }
}

/// A fetch's answer, headers lower-cased.
struct Fetched {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A fetch's answer; `None` without one, or with a body too large to keep (that request is
/// then better served by the upstream directly).
fn read_answer(num_headers: usize, body_size: usize) -> Option<Fetched> {
    if num_headers == 0 || body_size > MAX_ENTRY_BYTES {
        return None;
    }
    let raw = host::call_response_header_bytes().ok()?;
    let pairs = header_map::parse(&raw).ok()?;
    let status = pairs.iter().find(|(n, _)| *n == ":status").and_then(|(_, v)| v.parse::<u16>().ok())?;
    let headers = pairs.iter().map(|(n, v)| (n.to_ascii_lowercase(), (*v).to_owned())).collect();
    let body = if body_size == 0 { Vec::new() } else { host::call_response_body(body_size).ok()? };
    Some(Fetched { status, headers, body })
}

fn reply(entry: &Entry, cache: &str, now_ms: u64) {
    let age = entry.age_secs(now_ms).to_string();
    let mut headers: Vec<(&str, &str)> = entry.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    headers.push(("x-cache", cache));
    headers.push(("age", age.as_str()));
    // A failed reply leaves the request paused; Envoy's stream timeout ends it (fail closed).
    if let Err(e) = host::send_reply_bytes(entry.status, &headers, &entry.body) {
        host::log(LogLevel::Error, &format!("stagedoor: cached reply not sent: {e}"));
    }
}

/// Runs `act` on another request's context, then comes back to `current`.
fn on_context(context_id: u32, current: u32, act: impl FnOnce()) {
    if context_id == current {
        return act();
    }
    if host::set_effective_context(context_id).is_err() {
        return; // the client left
    }
    act();
    let _ = host::set_effective_context(current);
}

fn resume(context_id: u32, current: u32) {
    on_context(context_id, current, || {
        if let Err(e) = host::resume_request() {
            host::log(LogLevel::Error, &format!("stagedoor: a request waiting on the cache could not go on: {e}"));
        }
    });
}
