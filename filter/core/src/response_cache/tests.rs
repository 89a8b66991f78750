use proptest::prelude::*;

use super::config::{CacheRouteConfig, MAX_ENTRIES};
use super::*;

fn route(per_user: bool) -> CacheRoute {
    CacheRoute::compile(&CacheRouteConfig {
        name: "search".into(),
        path: "/api/v1/search".into(),
        ttl_secs: 300,
        vary_query: vec!["q".into(), "category".into()],
        vary_headers: vec!["Accept-Language".into()],
        per_user,
        per_role: false,
        timeout_ms: 1000,
        stale_while_revalidate: 0,
    })
    .unwrap()
}

fn request<'a>(tenant: &'a str, subject: &'a str, query: &'a str, headers: &'a [(&'a str, &'a str)]) -> CacheRequest<'a> {
    CacheRequest { method: "GET", path: "/api/v1/search", query, tenant, subject, role: "customer", permissions: &[], headers }
}

#[test]
fn the_key_holds_the_declared_params_sorted_and_nothing_else_of_the_query() {
    let r = route(false);
    let a = request("t1", "u1", "q=x&category=c&utm=1", &[]);
    let b = request("t1", "u2", "category=c&page=2&q=x", &[]);
    assert_eq!(r.key(&a), r.key(&b), "undeclared params and the user (not per-user) are not part of it");
    assert_eq!(r.fetch_target(&a), "/api/v1/search?category=c&q=x");
    assert_ne!(r.key(&a), r.key(&request("t2", "u1", "q=x&category=c", &[])), "another tenant");
    assert_ne!(r.key(&a), r.key(&request("t1", "u1", "q=y&category=c", &[])));
    let fr = [("accept-language", "fr")];
    assert_ne!(r.key(&a), r.key(&request("t1", "u1", "q=x&category=c", &fr)), "a declared header");
    let other = [("x-whatever", "1"), ("x-tenant-id", "t2")];
    assert_eq!(r.key(&a), r.key(&request("t1", "u1", "q=x&category=c", &other)), "no other header, a spoofed identity included");
    let per_user = route(true);
    assert_ne!(per_user.key(&a), per_user.key(&b));
}

#[test]
fn a_route_that_would_key_on_identity_or_credentials_is_refused() {
    for header in ["Authorization", "cookie", "x-tenant-id", "x-user-id", "x-stagedoor-identity", "x-internal-key"] {
        let config = CacheRouteConfig {
            name: "r".into(),
            path: "/a".into(),
            ttl_secs: 1,
            vary_query: vec![],
            vary_headers: vec![header.into()],
            per_user: false,
            per_role: false,
            timeout_ms: 1,
            stale_while_revalidate: 0,
        };
        let e = CacheRoute::compile(&config).unwrap_err();
        assert_eq!(e.field, "vary_headers", "{header}: {e}");
    }
    let config = |ttl_secs| CacheRouteConfig {
        name: "r".into(),
        path: "/a/{id}".into(),
        ttl_secs,
        vary_query: vec![],
        vary_headers: vec![],
        per_user: false,
        per_role: false,
        timeout_ms: 1,
        stale_while_revalidate: 0,
    };
    assert_eq!(CacheRoute::compile(&config(0)).unwrap_err().field, "ttl_secs");
    assert!(CacheRoute::compile(&config(30)).unwrap().covers("HEAD", "/a/1"));
    assert!(!CacheRoute::compile(&config(30)).unwrap().covers("POST", "/a/1"));
}

#[test]
fn only_a_plain_200_is_storable() {
    let r = route(false);
    assert!(is_storable(&r, 200, &[("content-type", "application/json"), ("cache-control", "public, max-age=60")]));
    assert!(!is_storable(&r, 201, &[]));
    assert!(!is_storable(&r, 200, &[("set-cookie", "s=1")]));
    for cc in ["private", "no-store", "max-age=1, No-Store", "no-cache"] {
        assert!(!is_storable(&r, 200, &[("cache-control", cc)]), "{cc}");
    }
    assert!(is_storable(&r, 200, &[("vary", "Accept-Language")]));
    assert!(!is_storable(&r, 200, &[("vary", "Accept-Language, Cookie")]));
}

fn entry(now: u64, ttl: u64, body: usize) -> Entry {
    Entry { route: "r".into(), tenant: "t1".into(), surrogates: vec![], stored_ms: now, expires_ms: now + ttl, stale_until_ms: now + ttl, status: 200, headers: vec![], body: vec![b'x'; body] }
}

#[test]
fn a_miss_leads_later_misses_wait_and_an_entry_expires() {
    let mut cache = ResponseCache::default();
    let key = CacheKey("k".into());
    assert_eq!(cache.lookup(&key, 1, 0), Lookup::Miss);
    assert_eq!(cache.lookup(&key, 2, 1), Lookup::Joined);
    assert_eq!(cache.lookup(&key, 3, 1), Lookup::Joined);
    cache.forget_waiter(3);
    assert_eq!(cache.finish(&key).waiters, vec![2]);
    assert!(cache.insert(key.clone(), entry(10, 1000, 4)));
    assert!(matches!(cache.lookup(&key, 4, 1009), Lookup::Hit(e) if e.age_secs(2010) == 2));
    assert_eq!(cache.lookup(&key, 5, 1010), Lookup::Miss, "expired at stored + ttl");
    assert!(cache.is_empty());
}

#[test]
fn the_cache_stays_within_its_entry_bound_oldest_out_first() {
    let mut cache = ResponseCache::default();
    for i in 0..MAX_ENTRIES + 10 {
        cache.insert(CacheKey(format!("k{i}")), entry(0, 1000, 1));
    }
    assert_eq!(cache.len(), MAX_ENTRIES);
    assert_eq!(cache.lookup(&CacheKey("k0".into()), 1, 1), Lookup::Miss);
    assert!(matches!(cache.lookup(&CacheKey(format!("k{}", MAX_ENTRIES + 9)), 1, 1), Lookup::Hit(_)));
    assert!(!cache.insert(CacheKey("big".into()), entry(0, 1000, config::MAX_ENTRY_BYTES + 1)));
}

proptest! {
    /// Random (tenant, user, path, query) tuples: two requests share a key only if they
    /// share the tenant, and on a per-user route the user too. So no answer stored for one
    /// is ever served to another.
    #[test]
    fn keys_never_collide_across_tenants_or_users(
        a in ("[a-z|:0-9]{0,6}", "[a-z|:0-9]{0,6}", "[a-z]{0,3}", "[a-z=&|:]{0,12}"),
        b in ("[a-z|:0-9]{0,6}", "[a-z|:0-9]{0,6}", "[a-z]{0,3}", "[a-z=&|:]{0,12}"),
        per_user in any::<bool>(),
    ) {
        let r = CacheRoute::compile(&CacheRouteConfig {
            name: "r".into(),
            path: "/api/{x}".into(),
            ttl_secs: 1,
            vary_query: vec!["q".into(), "a".into()],
            vary_headers: vec![],
            per_user,
            per_role: false,
            timeout_ms: 1,
            stale_while_revalidate: 0,
        }).unwrap();
        let path_a = format!("/api/{}", a.2);
        let path_b = format!("/api/{}", b.2);
        let ka = r.key(&CacheRequest { method: "GET", path: &path_a, query: &a.3, tenant: &a.0, subject: &a.1, role: "r", permissions: &[], headers: &[] });
        let kb = r.key(&CacheRequest { method: "GET", path: &path_b, query: &b.3, tenant: &b.0, subject: &b.1, role: "r", permissions: &[], headers: &[] });
        if ka == kb {
            prop_assert_eq!(&a.0, &b.0);
            if per_user {
                prop_assert_eq!(&a.1, &b.1);
            }
        }
        // The same tenant and user with the same request always share it.
        let again = r.key(&CacheRequest { method: "GET", path: &path_a, query: &a.3, tenant: &a.0, subject: &a.1, role: "r", permissions: &[], headers: &[] });
        prop_assert_eq!(ka, again);
    }
}

#[test]
fn a_purge_drops_what_every_given_field_matches_and_travels_as_a_feed_key() {
    assert_eq!(Purge::new("", "", ""), Err(PurgeError::Everything));
    assert_eq!(Purge::new("a b", "", ""), Err(PurgeError::NotPlain("route")));
    let purge = Purge::new("venue", "t1", "").unwrap();
    assert_eq!(purge.key(), "cache-purge route=venue tenant=t1");
    assert_eq!(Purge::from_key(&purge.key()), Some(purge.clone()));
    assert_eq!(Purge::from_key("some-jti"), None);
    assert_eq!(Purge::from_key("cache-purge colour=red"), None, "a field this build does not read purges nothing");

    let mut cache = ResponseCache::default();
    let tagged = |route: &str, tenant: &str, tags: &[&str]| Entry {
        route: route.into(),
        tenant: tenant.into(),
        surrogates: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..entry(0, 1000, 1)
    };
    cache.insert(CacheKey("a".into()), tagged("venue", "t1", &["event-1"]));
    cache.insert(CacheKey("b".into()), tagged("venue", "t2", &["event-1"]));
    cache.insert(CacheKey("c".into()), tagged("search", "t1", &["event-2"]));
    assert_eq!(cache.purge(&purge), 1);
    assert_eq!(cache.purge(&Purge::new("", "", "event-1").unwrap()), 1, "t2's venue answer");
    assert_eq!(cache.purge(&Purge::new("", "t1", "").unwrap()), 1);
    assert!(cache.is_empty());
}

#[test]
fn a_per_role_route_keys_on_the_verified_role_and_permissions_in_any_order() {
    let r = CacheRoute::compile(&CacheRouteConfig {
        name: "reports".into(),
        path: "/api/v1/reports".into(),
        ttl_secs: 60,
        vary_query: vec![],
        vary_headers: vec![],
        per_user: false,
        per_role: true,
        timeout_ms: 1000,
        stale_while_revalidate: 0,
    })
    .unwrap();
    let perms = |list: &[&str]| list.iter().map(|p| (*p).to_owned()).collect::<Vec<_>>();
    let (ab, ba, a) = (perms(&["a:x", "b:y"]), perms(&["b:y", "a:x"]), perms(&["a:x"]));
    let key = |role: &str, permissions: &[String], subject: &str| {
        r.key(&CacheRequest { method: "GET", path: "/api/v1/reports", query: "", tenant: "t1", subject, role, permissions, headers: &[] })
    };
    assert_eq!(key("manager", &ab, "u1"), key("manager", &ba, "u2"), "same role and permissions share, whoever asks");
    assert_ne!(key("manager", &ab, "u1"), key("manager", &a, "u1"));
    assert_ne!(key("manager", &a, "u1"), key("owner", &a, "u1"));
}

fn stale_entry(now: u64, ttl: u64, stale: u64) -> Entry {
    Entry { stale_until_ms: now + ttl + stale, ..entry(now, ttl, 1) }
}

#[test]
fn past_its_ttl_an_entry_is_answered_stale_and_one_request_leads_its_refresh() {
    let mut cache = ResponseCache::default();
    let key = CacheKey("k".into());
    cache.insert(key.clone(), stale_entry(0, 1000, 5000));
    assert!(matches!(cache.lookup(&key, 1, 999), Lookup::Hit(_)));
    // Past the ttl, within the window: the first asks for the refresh, the rest only read.
    assert!(matches!(cache.lookup(&key, 2, 1000), Lookup::Stale { refresh: true, ref entry } if entry.age_secs(1000) == 1));
    assert!(matches!(cache.lookup(&key, 3, 3000), Lookup::Stale { refresh: false, .. }));
    assert!(matches!(cache.lookup(&key, 4, 5999), Lookup::Stale { refresh: false, .. }));
    // The refresh failed: the entry is as it was, and the next request asks again.
    assert_eq!(cache.finish(&key).waiters, Vec::<u32>::new());
    assert!(matches!(cache.lookup(&key, 5, 4000), Lookup::Stale { refresh: true, .. }));
    // It answered: a fresh entry, and stale requests are hits again.
    cache.finish(&key);
    cache.insert(key.clone(), stale_entry(4100, 1000, 5000));
    assert!(matches!(cache.lookup(&key, 6, 4200), Lookup::Hit(e) if e.stored_ms == 4100));
}

#[test]
fn beyond_the_stale_window_a_request_is_a_plain_miss_and_a_refresh_in_flight_is_joined() {
    let mut cache = ResponseCache::default();
    let key = CacheKey("k".into());
    cache.insert(key.clone(), stale_entry(0, 1000, 1000));
    assert_eq!(cache.lookup(&key, 1, 2000), Lookup::Miss, "stale until 2000, not at it");
    assert!(cache.is_empty());
    cache.finish(&key);
    // A refresh still in flight when the window closes: later requests wait for it.
    cache.insert(key.clone(), stale_entry(0, 1000, 1000));
    assert!(matches!(cache.lookup(&key, 2, 1500), Lookup::Stale { refresh: true, .. }));
    assert_eq!(cache.lookup(&key, 3, 2500), Lookup::Joined);
    assert_eq!(cache.finish(&key).waiters, vec![3]);
    // Without a window (stale_until == expires) nothing is ever answered stale.
    cache.insert(key.clone(), entry(0, 1000, 1));
    assert_eq!(cache.lookup(&key, 4, 1000), Lookup::Miss);
}

#[test]
fn evictions_are_counted_by_route_until_taken() {
    let mut cache = ResponseCache::default();
    for i in 0..MAX_ENTRIES + 3 {
        let route = if i % 2 == 0 { "a" } else { "b" };
        cache.insert(CacheKey(format!("k{i}")), Entry { route: route.into(), ..entry(0, 1000, 1) });
    }
    let evicted = cache.take_evictions();
    assert_eq!(evicted.values().sum::<u64>(), 3);
    assert_eq!((evicted.get("a"), evicted.get("b")), (Some(&2), Some(&1)), "k0, k2 and k1 went first");
    assert!(cache.take_evictions().is_empty());
    // A purge or an expiry is not an eviction.
    cache.purge(&Purge::new("a", "", "").unwrap());
    assert!(cache.take_evictions().is_empty());
}

#[test]
fn a_stale_window_is_bounded_and_named_when_refused_and_a_route_knows_its_paths_for_any_method() {
    let config = |stale_while_revalidate| CacheRouteConfig {
        name: "r".into(),
        path: "/a/{id}".into(),
        ttl_secs: 30,
        vary_query: vec![],
        vary_headers: vec![],
        per_user: false,
        per_role: false,
        timeout_ms: 1,
        stale_while_revalidate,
    };
    let e = CacheRoute::compile(&config(config::MAX_STALE_SECS + 1)).unwrap_err();
    assert_eq!(e.field, "stale_while_revalidate", "{e}");
    let r = CacheRoute::compile(&config(60)).unwrap();
    assert_eq!((r.ttl_ms, r.stale_ms), (30_000, 60_000));
    assert!(r.covers_path("/a/1") && !r.covers("POST", "/a/1") && !r.covers_path("/a/1/b"));
    let parsed: CacheRouteConfig =
        serde_json::from_str(r#"{"name":"r","path":"/a","ttl_secs":1,"stale_while_revalidate":5}"#).unwrap();
    assert_eq!(parsed.stale_while_revalidate, 5);
    let plain: CacheRouteConfig = serde_json::from_str(r#"{"name":"r","path":"/a","ttl_secs":1}"#).unwrap();
    assert_eq!(plain.stale_while_revalidate, 0);
    assert!(!serde_json::to_string(&plain).unwrap().contains("stale"), "an unset window is not written");
}

#[test]
fn cache_event_metric_names_are_one_per_route_and_kind() {
    let names: Vec<String> = CacheEvent::ALL.iter().map(|e| e.metric_name("ticket-availability")).collect();
    assert_eq!(names[0], "stagedoor_response_cache_hits.ticket-availability");
    assert!(CacheEvent::ALL.iter().enumerate().all(|(i, e)| e.index() == i));
    let mut unique = names.clone();
    unique.dedup();
    assert_eq!(unique.len(), CacheEvent::ALL.len());
}

#[test]
fn a_fetch_out_when_a_purge_arrives_is_marked_so_its_answer_is_not_stored() {
    let mut cache = ResponseCache::default();
    let (out, later) = (CacheKey("out".into()), CacheKey("later".into()));
    assert_eq!(cache.lookup(&out, 1, 0), Lookup::Miss);
    assert_eq!(cache.lookup(&out, 2, 0), Lookup::Joined);
    // Whatever it names: the fetch's own surrogate keys are not known until it answers.
    cache.purge(&Purge::new("", "", "event-1").unwrap());
    assert_eq!(cache.lookup(&later, 3, 1), Lookup::Miss, "a fetch that leaves after the purge");
    assert_eq!(cache.finish(&out), Finished { waiters: vec![2], purged: true });
    assert_eq!(cache.finish(&later), Finished { waiters: vec![], purged: false });
}
