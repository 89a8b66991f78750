//! Incremental translation against the cold one: after any sequence of edits, what the
//! cache-reusing translation makes is byte for byte what a translation from nothing makes,
//! and what the decoded `translate` makes.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;

use super::{to_any, translate, translate_incremental, Encoded, EncodedTypes, TranslateCache};
use crate::registry::{InstanceSpec, LiveInstances, Registry, ServiceSpec};
use crate::resources::type_url;

/// One service as the test draws it: which of a few variants each part is.
#[derive(Debug, Clone)]
struct ServiceDraw {
    prefix_variant: u8,
    second_route: bool,
    instances: u8,
    timeout: Option<u8>,
    route_timeout: bool,
    public: bool,
    ring_hash: bool,
}

fn service_draw() -> impl Strategy<Value = ServiceDraw> {
    (0u8..3, any::<bool>(), 0u8..4, proptest::option::of(1u8..4), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(prefix_variant, second_route, instances, timeout, route_timeout, public, ring_hash)| ServiceDraw {
            prefix_variant,
            second_route,
            instances,
            timeout,
            route_timeout,
            public,
            ring_hash,
        },
    )
}

/// A registry state: services by index (absent ones are removed), and live instances.
#[derive(Debug, Clone)]
struct State {
    services: BTreeMap<u8, ServiceDraw>,
    live: BTreeMap<u8, u8>,
    /// The live instances after an instance change that leaves the registry as it is.
    live_after: BTreeMap<u8, u8>,
    cors: bool,
    /// A cached route on the first service's prefix (its routes then answer X-Cache: BYPASS).
    cached: bool,
}

fn state() -> impl Strategy<Value = State> {
    let live = || proptest::collection::btree_map(0u8..8, 1u8..3, 0..4);
    (proptest::collection::btree_map(0u8..8, service_draw(), 1..8), live(), live(), any::<bool>(), any::<bool>())
        .prop_map(|(services, live, live_after, cors, cached)| State { services, live, live_after, cors, cached })
}

/// Edits from one state to the next: each service kept, changed, removed or added, and
/// the live instances redrawn, so that a sequence of states is a sequence of edits.
fn states() -> impl Strategy<Value = Vec<State>> {
    proptest::collection::vec(state(), 2..6).prop_map(|mut states| {
        // Keep most services of the previous state as they were: edits touch a few.
        for i in 1..states.len() {
            let (before, now) = states.split_at_mut(i);
            let previous = &before[i - 1];
            for (index, draw) in &previous.services {
                if index % 3 != i as u8 % 3 {
                    now[0].services.insert(*index, draw.clone());
                }
            }
        }
        states
    })
}

fn yaml(state: &State) -> String {
    let mut yaml = String::new();
    if state.cors {
        yaml.push_str("cors:\n  allowed_origins: [https://app.example.com]\n");
    }
    yaml.push_str("services:\n");
    for (i, s) in &state.services {
        let prefix = format!("/api/s{i}/v{}", s.prefix_variant);
        yaml.push_str(&format!("  - name: s{i}\n    routes:\n      - prefix: {prefix}\n"));
        if s.second_route {
            yaml.push_str(&format!("      - {{ prefix: /other/s{i}, upstream_prefix: /up }}\n"));
        }
        yaml.push_str("    instances:\n");
        for j in 0..s.instances {
            yaml.push_str(&format!("      - {{ address: 10.0.{i}.{j}, port: 80 }}\n"));
        }
        if s.instances == 0 {
            yaml.truncate(yaml.len() - "    instances:\n".len());
        }
        if s.public {
            yaml.push_str(&format!("    public_paths: [{prefix}/public/*]\n"));
        }
        let mut traffic = Vec::new();
        if let Some(t) = s.timeout {
            traffic.push(format!("timeout_ms: {}", u64::from(t) * 1000));
        }
        if s.route_timeout {
            traffic.push(format!("route_timeouts: [{{ prefix: {prefix}/slow, timeout_ms: 9000 }}]"));
        }
        if s.ring_hash {
            traffic.push(String::from("load_balancing: { policy: ring_hash, hash_header: x-user }"));
        }
        if !traffic.is_empty() {
            yaml.push_str(&format!("    traffic: {{ {} }}\n", traffic.join(", ")));
        }
    }
    if let Some((i, s)) = state.services.iter().next().filter(|_| state.cached) {
        yaml.push_str(&format!("response_cache:\n  - {{ name: c, path: /api/s{i}/v{}, ttl_secs: 60 }}\n", s.prefix_variant));
    }
    crate::test_support::registry_yaml(&yaml)
}

fn live(state: &State, drawn: &BTreeMap<u8, u8>) -> LiveInstances {
    let mut live = LiveInstances::new();
    for (i, count) in drawn {
        if state.services.contains_key(i) {
            let instances = (0..*count).map(|j| InstanceSpec { address: format!("10.1.{i}.{j}"), port: 8080 });
            live.insert(format!("s{i}"), instances.collect());
        }
    }
    live
}

/// (name, bytes, hash) of each resource, by type.
type Contents = BTreeMap<&'static str, Vec<(String, Vec<u8>, String)>>;

/// Names, bytes and hashes of every resource.
fn contents(types: &EncodedTypes) -> Contents {
    types
        .iter()
        .map(|(t, resources)| (*t, resources.iter().map(|(n, e)| (n.clone(), e.any.value.clone(), e.hash.clone())).collect()))
        .collect()
}

fn decoded_bytes(resources: &super::Resources) -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let named = |items: Vec<(String, envoy_types::pb::google::protobuf::Any)>| {
        let mut items: Vec<(String, Vec<u8>)> = items.into_iter().map(|(n, a)| (n, a.value)).collect();
        items.sort();
        items
    };
    BTreeMap::from([
        (type_url::CLUSTER, named(resources.clusters.iter().map(|c| (c.name.clone(), to_any(c))).collect())),
        (type_url::ENDPOINT, named(resources.endpoints.iter().map(|e| (e.cluster_name.clone(), to_any(e))).collect())),
        (type_url::LISTENER, named(resources.listeners.iter().map(|l| (l.name.clone(), to_any(l))).collect())),
        (type_url::ROUTE, named(resources.routes.iter().map(|r| (r.name.clone(), to_any(r))).collect())),
        (type_url::EXTENSION_CONFIG, named(resources.extension_configs.iter().map(|e| (e.name.clone(), to_any(e))).collect())),
        (type_url::SECRET, named(resources.secrets.iter().map(|s| (s.name.clone(), to_any(s))).collect())),
    ])
}

fn without_hashes(types: &EncodedTypes) -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    types.iter().map(|(t, r)| (*t, r.iter().map(|(n, e)| (n.clone(), e.any.value.clone())).collect())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn incremental_translation_equals_cold_translation_after_any_edits(states in states()) {
        let options = crate::test_support::translate_options(8080);
        let mut cache = TranslateCache::default();
        let mut previous: Option<Registry> = None;
        let mut snapshot: Option<crate::snapshot::Snapshot> = None;
        for state in &states {
            let parsed = Registry::parse("r", &yaml(state)).unwrap();
            // The same registry sharing its unchanged entries with the previous one (what
            // `Publisher::apply` translates): only the services that differ are visited.
            let registry = match &previous {
                Some(p) => parsed.clone().rebased_on(p),
                None => parsed.clone(),
            };
            prop_assert_eq!(&registry, &parsed);
            // Removed services are retired: their clusters and endpoints outlive their routes.
            let retired: Vec<&ServiceSpec> = previous.iter().flat_map(|p| p.services.values()).map(|s| &**s).collect();
            // A registry edit, then an instance change alone (the path that reuses the rest).
            for drawn in [&state.live, &state.live_after] {
                let live = live(state, drawn);
                let (warm, next) = translate_incremental(&registry, &live, &retired, &options, &cache).unwrap();
                let (cold, _) = translate_incremental(&registry, &live, &retired, &options, &TranslateCache::default()).unwrap();
                prop_assert_eq!(contents(&warm.types), contents(&cold.types));
                // The parsed registry shares nothing with the cache's: every service is
                // compared, and the result is the same.
                let (walked, _) = translate_incremental(&parsed, &live, &retired, &options, &cache).unwrap();
                prop_assert_eq!(contents(&walked.types), contents(&cold.types));
                warm.check().unwrap();
                let decoded = translate(&registry, &live, &retired, &options).unwrap();
                prop_assert_eq!(without_hashes(&warm.types), decoded_bytes(&decoded));
                cache = next;
                // And the snapshots: one built on the previous equals one built from nothing.
                let built = crate::publish::build_snapshot(&registry, &live, &retired, &options, snapshot.as_ref()).unwrap();
                let fresh = crate::publish::build_snapshot(&registry, &live, &retired, &options, None).unwrap();
                for (t, typed) in &built.types {
                    prop_assert_eq!(&typed.resources, &fresh.types[t].resources);
                    prop_assert_eq!(&typed.hashes, &fresh.types[t].hashes);
                }
                prop_assert_eq!(&built.origins, &fresh.origins);
                // The origins patched service by service are those made whole.
                prop_assert_eq!(&*built.origins, &super::origins::origins(&registry, &retired));
                snapshot = Some(built);
            }
            previous = Some(registry);
        }
    }
}

fn translated(services: &str, live: &LiveInstances, cache: &TranslateCache) -> (EncodedTypes, TranslateCache) {
    let registry = Registry::parse("r", &crate::test_support::registry_yaml(services)).unwrap();
    let (translation, cache) =
        translate_incremental(&registry, live, &[], &crate::test_support::translate_options(8080), cache).unwrap();
    (translation.types, cache)
}

fn same(a: &EncodedTypes, b: &EncodedTypes, type_url: &str, name: &str) -> bool {
    let piece = |t: &EncodedTypes| -> Option<Arc<Encoded>> { t.get(type_url)?.get(name).cloned() };
    matches!((piece(a), piece(b)), (Some(x), Some(y)) if Arc::ptr_eq(&x, &y))
}

const TWO: &str = "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n";

#[test]
fn an_edit_of_one_service_reuses_every_other_services_pieces() {
    let (first, cache) = translated(TWO, &LiveInstances::new(), &TranslateCache::default());
    let edited = "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n    traffic: { timeout_ms: 2000 }\n";
    let (second, _) = translated(edited, &LiveInstances::new(), &cache);
    assert!(same(&first, &second, type_url::CLUSTER, "svc_a"), "a's cluster is the same piece");
    assert!(same(&first, &second, type_url::ENDPOINT, "svc_a"));
    assert!(same(&first, &second, type_url::ENDPOINT, "svc_b"), "b's instances did not change");
    assert!(same(&first, &second, type_url::EXTENSION_CONFIG, super::names::FILTER_EXTENSION_CONFIG), "a timeout is not the filter's");
    assert!(!same(&first, &second, type_url::ROUTE, super::names::ROUTE_CONFIG), "b's routes carry its timeout");
}

#[test]
fn an_instance_change_touches_only_that_services_endpoints() {
    let (first, cache) = translated(TWO, &LiveInstances::new(), &TranslateCache::default());
    let live = LiveInstances::from([(String::from("b"), [InstanceSpec { address: String::from("10.0.0.9"), port: 80 }].into())]);
    let (second, _) = translated(TWO, &live, &cache);
    let changed: Vec<(&str, &String)> = first
        .iter()
        .flat_map(|(t, resources)| resources.keys().map(move |name| (*t, name)))
        .filter(|(t, name)| !same(&first, &second, t, name))
        .collect();
    // The listener and secrets are made again each time (global and few): same content.
    let changed: Vec<_> = changed.into_iter().filter(|(t, _)| *t != type_url::LISTENER).collect();
    assert_eq!(changed, [(type_url::ENDPOINT, &String::from("svc_b"))]);
    assert_eq!(first[type_url::LISTENER], second[type_url::LISTENER]);
}

#[test]
fn a_refused_filter_config_is_refused_with_a_warm_cache_too() {
    let (_, cache) = translated(TWO, &LiveInstances::new(), &TranslateCache::default());
    // Public paths are the filter compiler's to judge, not the registry's.
    let bad = "services:\n  - name: a\n    routes: [{prefix: /a}]\n    public_paths: [no-slash]\n  - name: b\n    routes: [{prefix: /b}]\n";
    let registry = Registry::parse("r", &crate::test_support::registry_yaml(bad)).unwrap();
    let result = translate_incremental(&registry, &LiveInstances::new(), &[], &crate::test_support::translate_options(8080), &cache);
    let Err(super::TranslateError::FilterConfig(refused)) = result else { panic!("refused: {result:?}") };
    assert_eq!((refused.service.as_deref(), refused.field.as_str()), (Some("a"), "public_paths[0]"));
}

#[test]
fn an_edit_that_routes_another_services_prefix_is_refused_as_the_whole_check_refuses_it() {
    // The registry's own rules refuse two services with one prefix when a file is parsed;
    // a registry edited in place (as `Publisher::apply` sees one) meets the filter's check
    // only, which must judge the edit from its new parts as it would judge the whole.
    let options = crate::test_support::translate_options(8080);
    let three = "services:\n  - name: a\n    routes: [{prefix: /a}]\n  - name: b\n    routes: [{prefix: /b}]\n  - name: c\n    routes: [{prefix: /c}]\n";
    let registry = Registry::parse("r", &crate::test_support::registry_yaml(three)).unwrap();
    let (_, cache) = translate_incremental(&registry, &LiveInstances::new(), &[], &options, &TranslateCache::default()).unwrap();
    for (edited, prefix) in [("a", "/b"), ("c", "/a"), ("b", "/b/")] {
        let mut registry = registry.clone();
        if let Some(svc) = registry.services.get_mut(edited) {
            Arc::make_mut(svc).routes[0].prefix = prefix.to_owned();
        }
        // The version names the content (a parse computes it); an edit in place names its own.
        registry.version = format!("{edited} routes {prefix}");
        let warm = translate_incremental(&registry, &LiveInstances::new(), &[], &options, &cache).map(drop);
        let cold = translate_incremental(&registry, &LiveInstances::new(), &[], &options, &TranslateCache::default()).map(drop);
        assert_eq!(format!("{warm:?}"), format!("{cold:?}"), "{edited} routing {prefix}");
        if prefix != "/b/" {
            assert!(warm.is_err(), "{edited} routing {prefix} is refused");
        }
    }
}
