//! The response cache's host side: one VM's [`ResponseCache`], the fetches of its misses in
//! flight, the refreshes of its stale entries, and the replies to a fetch's leader and the
//! requests that waited for it.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::types::LogLevel;
use stagedoor_filter_core::config::service_cluster;
use stagedoor_filter_core::header_map;
use stagedoor_filter_core::response_cache::config::MAX_ENTRY_BYTES;
use stagedoor_filter_core::response_cache::{
    is_relayed_header, is_storable, CacheEvent, CacheKey, CacheRequest, CacheRoute, Entry, Finished, Lookup, Purge, ResponseCache,
    BYPASS_FILTER_STATE,
};

use crate::host;
use crate::metrics::Metrics;

struct Fetch {
    key: CacheKey,
    route: Rc<CacheRoute>,
    /// The request this fetch answers; `None` for a stale entry's refresh (its request was
    /// answered at once).
    leader: Option<u32>,
    tenant: String,
}

/// A fetch as it is sent: the service's cluster and the request's headers.
struct FetchRequest {
    cluster: String,
    headers: Vec<(String, String)>,
    timeout: Duration,
}

/// A stale entry's refresh, sent on the root context's next tick: sent from the context of
/// the request that found the entry stale, Envoy would cancel it when that request (answered
/// at once) ends.
struct Refresh {
    key: CacheKey,
    route: Rc<CacheRoute>,
    tenant: String,
    request: FetchRequest,
}

#[derive(Default)]
pub struct EdgeCache {
    cache: ResponseCache,
    fetches: HashMap<u32, Fetch>,
    refreshes: Vec<Refresh>,
}

/// What the request's context does now.
pub enum Served {
    /// Answered (a hit), or waiting for a fetch: paused.
    Paused,
    /// Not served from the cache: on to the upstream as usual (the caller marks it BYPASS).
    Proxied,
}

impl EdgeCache {
    /// A cacheable, authenticated request whose headers are already applied: answered from
    /// memory (fresh, or stale while one refresh renews it), joined to the fetch of its
    /// key, or fetched (this request leads).
    #[allow(clippy::too_many_arguments)]
    pub fn serve(
        &mut self,
        context_id: u32,
        route: &Rc<CacheRoute>,
        service: &str,
        request: &CacheRequest<'_>,
        identity: &[(&'static str, String)],
        request_id: &str,
        metrics: &Metrics,
    ) -> Served {
        let now = host::now_ms();
        let key = route.key(request);
        match self.cache.lookup(&key, context_id, now) {
            Lookup::Hit(entry) => {
                metrics.cache_event(&route.name, CacheEvent::Hit);
                reply(&entry, "HIT", now);
                Served::Paused
            }
            Lookup::Stale { entry, refresh } => {
                metrics.cache_event(&route.name, CacheEvent::Stale);
                if refresh {
                    let request = fetch_request(route, service, request, identity, request_id);
                    self.refreshes.push(Refresh { key, route: route.clone(), tenant: entry.tenant.clone(), request });
                }
                reply(&entry, "STALE", now);
                Served::Paused
            }
            Lookup::Joined => {
                metrics.cache_event(&route.name, CacheEvent::Joined);
                Served::Paused
            }
            Lookup::Bypass => Served::Proxied,
            Lookup::Miss => {
                let fetch = fetch_request(route, service, request, identity, request_id);
                match send(&fetch) {
                    Ok(token) => {
                        metrics.cache_event(&route.name, CacheEvent::Miss);
                        let tenant = request.tenant.to_owned();
                        self.fetches.insert(token, Fetch { key, route: route.clone(), leader: Some(context_id), tenant });
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

    /// On the root context's tick: sends the stale entries' refreshes (their answers come
    /// back to the root context) and hands the evictions and the cache's size to the metrics.
    pub fn tick(&mut self, root_context: u32, metrics: &Metrics) {
        for Refresh { key, route, tenant, request } in std::mem::take(&mut self.refreshes) {
            match send(&request) {
                Ok(token) => {
                    self.fetches.insert(token, Fetch { key, route, leader: None, tenant });
                }
                Err(e) => {
                    // The stale entry stays; the next request in its window asks again.
                    host::log(LogLevel::Warn, &format!("stagedoor: cache refresh for {} not sent: {e}", route.name));
                    for waiter in self.cache.finish(&key).waiters {
                        proxy(waiter, root_context, &route.name, metrics);
                    }
                }
            }
        }
        for (route, n) in self.cache.take_evictions() {
            metrics.cache_events(&route, CacheEvent::Eviction, n);
        }
        metrics.cache_usage(self.cache.len(), self.cache.bytes());
    }

    /// The answer to fetch `token` (in its callback, on context `current`: the leader's, or
    /// the root's for a refresh): stored if storable, and sent to the leader and every
    /// waiter; `false` if not a fetch's token.
    pub fn on_response(&mut self, token: u32, num_headers: usize, body_size: usize, current: u32, metrics: &Metrics) -> bool {
        let Some(Fetch { key, route, leader, tenant }) = self.fetches.remove(&token) else { return false };
        let Finished { waiters, purged } = self.cache.finish(&key);
        let now = host::now_ms();
        // A 5xx is not relayed either: each request goes through its route, whose retries
        // (another instance) the fetch does not have.
        let answer = read_answer(num_headers, body_size).filter(|a| a.status < 500);
        let Some(Fetched { status, headers, body }) = answer else {
            // No usable answer: every request goes upstream itself, as without a cache (a
            // refresh leaves its stale entry as it is).
            for context in leader.into_iter().chain(waiters) {
                proxy(context, current, &route.name, metrics);
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
        let expires_ms = now + route.ttl_ms;
        let entry = Entry {
            route: route.name.clone(),
            tenant,
            surrogates,
            stored_ms: now,
            expires_ms,
            stale_until_ms: expires_ms + route.stale_ms,
            status,
            headers: relayed,
            body,
        };
        if storable && !purged {
            if let Some(leader) = leader {
                on_context(leader, current, || reply(&entry, "MISS", now));
            }
            for waiter in waiters {
                on_context(waiter, current, || reply(&entry, "HIT", now));
            }
            metrics.cache_event(&route.name, CacheEvent::Store);
            self.cache.insert(key, entry);
        } else {
            // Not for sharing (or fetched before a purge): the leader gets it, the waiters
            // ask for their own.
            if let Some(leader) = leader {
                metrics.cache_event(&route.name, CacheEvent::Bypass);
                on_context(leader, current, || reply(&entry, "BYPASS", now));
            }
            for waiter in waiters {
                proxy(waiter, current, &route.name, metrics);
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
    pub fn forget(&mut self, context_id: u32, metrics: &Metrics) {
        self.cache.forget_waiter(context_id);
        let led: Vec<u32> = self.fetches.iter().filter(|(_, f)| f.leader == Some(context_id)).map(|(t, _)| *t).collect();
        for token in led {
            if let Some(fetch) = self.fetches.remove(&token) {
                for waiter in self.cache.finish(&fetch.key).waiters {
                    proxy(waiter, context_id, &fetch.route.name, metrics);
                }
            }
        }
    }
}

/// The request a miss sends to the service's cluster: what the key holds (the path, the
/// declared params and headers, the verified identity), the request id, and what the
/// route's virtual host adds to every request it forwards (`x-gateway-forwarded`,
/// `x-original-ip`, from the control plane's `translate/route.rs`).
fn fetch_request(
    route: &CacheRoute,
    service: &str,
    request: &CacheRequest<'_>,
    identity: &[(&'static str, String)],
    request_id: &str,
) -> FetchRequest {
    let owned = |n: &str, v: &str| (n.to_owned(), v.to_owned());
    let mut headers = vec![
        owned(":method", request.method),
        owned(":path", &route.fetch_target(request)),
        owned(":authority", service),
        owned("x-gateway-forwarded", "true"),
    ];
    // Without it the service sees no x-original-ip, as a route would send none for a
    // peer it cannot name; the request is not refused over it.
    if let Ok(ip) = host::downstream_ip() {
        headers.push(owned("x-original-ip", &ip));
    }
    if !request_id.is_empty() {
        headers.push(owned("x-request-id", request_id));
    }
    headers.extend(identity.iter().map(|(n, v)| owned(n, v)));
    headers.extend(route.vary_values(request).iter().map(|(n, v)| owned(n, v)));
    FetchRequest { cluster: service_cluster(service), headers, timeout: Duration::from_millis(route.timeout_ms) }
}

fn send(fetch: &FetchRequest) -> Result<u32, stagedoor_filter_core::apply::HostError> {
    let headers: Vec<(&str, &str)> = fetch.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    host::dispatch_http_call(&fetch.cluster, headers, None, fetch.timeout)
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

/// The current request goes upstream through its route, not served from or stored in the
/// cache: its answer carries `X-Cache: BYPASS` (the route's response header reads this
/// filter state; see the control plane's `translate/route.rs`).
pub fn mark_bypass(route: &str, metrics: &Metrics) {
    metrics.cache_event(route, CacheEvent::Bypass);
    if let Err(e) = host::set_request_property(BYPASS_FILTER_STATE, b"BYPASS") {
        // Only the header is missing; the request itself is proxied as usual.
        host::log(LogLevel::Warn, &format!("stagedoor: X-Cache: BYPASS not marked: {e}"));
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

/// Lets a request that waited on the cache go upstream itself, marked BYPASS.
fn proxy(context_id: u32, current: u32, route: &str, metrics: &Metrics) {
    on_context(context_id, current, || {
        mark_bypass(route, metrics);
        if let Err(e) = host::resume_request() {
            host::log(LogLevel::Error, &format!("stagedoor: a request waiting on the cache could not go on: {e}"));
        }
    });
}
