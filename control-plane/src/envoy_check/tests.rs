use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::transport_socket;
use envoy_types::pb::envoy::config::listener::v3::filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{http_filter, HttpConnectionManager};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext};
use prost::{Message, Name};

use super::*;
use crate::registry::{LiveInstances, Registry};
use crate::translate::{translate, Resources, TranslateOptions};

fn identity() -> Identity {
    Identity { certificate: "/id/envoy.pem".into(), key: "/id/envoy-key.pem".into(), ca: "/id/ca.pem".into() }
}

fn options() -> TranslateOptions {
    TranslateOptions {
        control_plane_http: Some((String::from("127.0.0.1"), 18080)),
        control_plane_tls: true,
        ..crate::test_support::translate_options(8080)
    }
}

/// Service `venue` (with a health check) and a second one: translated, and where each
/// resource comes from.
fn venue_and(second: &str) -> (Resources, crate::translate::origins::Origins) {
    let yaml = crate::test_support::registry_yaml(&format!(
        "services:
  - name: venue
    routes: [{{prefix: /api/v1/venues}}]
    instances: [{{address: 127.0.0.1, port: 9000}}]
    traffic: {{health_check: {{path: /health}}}}
  - name: {second}
    routes: [{{prefix: /api/v1/{second}}}]
    instances: [{{address: 127.0.0.1, port: 9001}}]
"
    ));
    let registry = Registry::parse("test", &yaml).unwrap();
    let resources = translate(&registry, &LiveInstances::new(), &[], &options()).unwrap();
    (resources, crate::translate::origins::origins(&registry, &[]))
}

fn shipped() -> (Registry, Resources) {
    let registry = crate::test_support::shipped_registry("envoy-check");
    let resources = translate(&registry, &LiveInstances::new(), &[], &options()).unwrap();
    (registry, resources)
}

fn assert_static_secrets(context: &CommonTlsContext, resource: &str) {
    assert!(context.tls_certificate_sds_secret_configs.iter().all(|c| c.sds_config.is_none()), "{resource}: certificates name static secrets");
    match &context.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(c)) => assert!(c.sds_config.is_none(), "{resource}"),
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            assert!(c.validation_context_sds_secret_config.as_ref().is_none_or(|c| c.sds_config.is_none()), "{resource}")
        }
        _ => {}
    }
}

#[test]
fn every_xds_reference_of_the_snapshot_is_inlined_in_the_bootstrap() {
    let (_, resources) = shipped();
    let bootstrap = static_bootstrap(&resources, &identity(), Scope::Everything).unwrap();
    let statics = bootstrap.static_resources.unwrap();
    assert_eq!(statics.clusters.len(), resources.clusters.len());
    for cluster in &statics.clusters {
        assert_ne!(cluster.cluster_discovery_type, Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)), "{}", cluster.name);
        assert!(cluster.eds_cluster_config.is_none(), "{}", cluster.name);
        if cluster.name.starts_with("svc_") {
            let endpoints = resources.endpoints.iter().find(|e| e.cluster_name == cluster.name).unwrap();
            assert_eq!(cluster.load_assignment.as_ref(), Some(endpoints), "{}: its EDS resource inlined", cluster.name);
        }
        if let Some(transport_socket::ConfigType::TypedConfig(any)) = cluster.transport_socket.as_ref().and_then(|s| s.config_type.as_ref()) {
            let tls = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
            assert_static_secrets(tls.common_tls_context.as_ref().unwrap(), &cluster.name);
        }
    }
    assert_eq!(statics.listeners.len(), resources.listeners.len());
    let mut connection_managers = 0;
    for listener in &statics.listeners {
        for chain in &listener.filter_chains {
            if let Some(transport_socket::ConfigType::TypedConfig(any)) = chain.transport_socket.as_ref().and_then(|s| s.config_type.as_ref()) {
                assert_eq!(any.type_url, DownstreamTlsContext::type_url());
                let tls = DownstreamTlsContext::decode(any.value.as_slice()).unwrap();
                assert_static_secrets(tls.common_tls_context.as_ref().unwrap(), &listener.name);
            }
            for f in &chain.filters {
                let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else { continue };
                let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
                connection_managers += 1;
                assert!(matches!(hcm.route_specifier, Some(RouteSpecifier::RouteConfig(_))), "{}: routes inlined", listener.name);
                for http in &hcm.http_filters {
                    assert!(matches!(http.config_type, Some(http_filter::ConfigType::TypedConfig(_))), "{}: {} inlined", listener.name, http.name);
                }
            }
        }
    }
    assert!(connection_managers >= 1);
    let names: Vec<&str> = statics.secrets.iter().map(|s| s.name.as_str()).collect();
    for secret in &resources.secrets {
        assert!(names.contains(&secret.name.as_str()), "{} is a static secret", secret.name);
    }
    assert!(names.contains(&crate::translate::names::ENVOY_IDENTITY_SECRET) && names.contains(&crate::translate::names::CA_SECRET));
}

#[test]
fn the_bootstrap_raises_the_regex_limit_as_the_real_bootstrap_does() {
    let real = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../envoy/bootstrap.yaml")).unwrap();
    let line = format!("re2.max_program_size.error_level: {RE2_MAX_PROGRAM_SIZE_ERROR_LEVEL}");
    assert!(real.contains(&line), "envoy/bootstrap.yaml and the validate bootstrap agree on {line}");
}

#[test]
fn clusters_only_leaves_the_listeners_out() {
    let (_, resources) = shipped();
    let statics = static_bootstrap(&resources, &identity(), Scope::ClustersOnly).unwrap().static_resources.unwrap();
    assert!(statics.listeners.is_empty());
    assert_eq!(statics.clusters.len(), resources.clusters.len());
}

#[test]
fn a_reference_the_snapshot_lacks_is_an_error_naming_both() {
    let (_, mut resources) = shipped();
    resources.routes.clear();
    let error = static_bootstrap(&resources, &identity(), Scope::Everything).unwrap_err().to_string();
    assert!(error.contains("listener stagedoor_") && error.contains("route configuration \"stagedoor_routes\""), "{error}");
    let (_, mut resources) = shipped();
    resources.endpoints.clear();
    let error = static_bootstrap(&resources, &identity(), Scope::Everything).unwrap_err().to_string();
    assert!(error.contains("cluster svc_") && error.contains("load assignment"), "{error}");
}

#[test]
fn envoys_reason_is_the_text_after_the_file_name() {
    let output = "[2026-12-01 19:20:20.536][2385][warning][main] [source/server/server.cc:1] something else\n\
        [2026-12-01 19:20:20.536][2385][critical][main] [source/server/config_validation/server.cc:76] error initializing configuration '/tmp/x/bootstrap.pb': invalid perl operator: (?=\n";
    assert_eq!(reason(output).as_deref(), Some("invalid perl operator: (?="));
    let spanning = "[t][1][critical][main] [s.cc:76] error initializing configuration 'b.pb': Proto constraint validation failed (a):\nsecond line\n[t][1][info][main] exiting\n";
    assert_eq!(reason(spanning).as_deref(), Some("Proto constraint validation failed (a):\nsecond line"));
    let critical = "[t][1][info][main] x\n[t][1][critical][wasm] [source/extensions/common/wasm/wasm.cc:626] Plugin stagedoor failed to load\n";
    assert_eq!(reason(critical).as_deref(), Some("Plugin stagedoor failed to load"));
    assert_eq!(reason("configuration 'b.pb' OK\n"), None);
}

#[test]
fn a_reason_naming_a_cluster_is_traced_to_its_service_and_fields() {
    let (resources, origins) = venue_and("venue2");
    let found = culprits("cluster 'svc_venue': health check path refused", &resources, &origins);
    let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["CDS svc_venue (service venue, traffic.health_check)", "EDS svc_venue (service venue, instances)"]);
    let own = culprits("stagedoor_control_plane: bad", &resources, &origins);
    assert_eq!(own.iter().map(ToString::to_string).collect::<Vec<_>>(), ["CDS stagedoor_control_plane (the control plane's own, not the registry's)"]);
    assert!(culprits("invalid perl operator: (?=", &resources, &origins).is_empty(), "a message naming nothing names no culprit");
}

#[test]
fn a_long_dump_of_the_refused_message_is_left_out_and_a_short_one_kept() {
    let long = "[t][1][critical][main] [s.cc:76] error initializing configuration 'b.pb': goo.gle/debugproto  \nnode {\n  id: \"x\"\n}\nstatic_resources {\n  clusters { name: \"svc_venue\" }\n}\n: Proto constraint validation failed (BootstrapValidationError.StaticResources: embedded message failed validation | caused by StaticResourcesValidationError.Clusters[0]: x)\n";
    assert_eq!(
        reason(long).as_deref(),
        Some("Proto constraint validation failed (BootstrapValidationError.StaticResources: embedded message failed validation | caused by StaticResourcesValidationError.Clusters[0]: x)")
    );
    let short = "[t][1][critical][main] [s.cc:76] error initializing configuration 'b.pb': Invalid duration: Duration out-of-range according to Protobuf: goo.gle/debugonly    \nseconds: 400000000000000\n";
    assert_eq!(reason(short).as_deref(), Some("Invalid duration: Duration out-of-range according to Protobuf: seconds: 400000000000000"));
}

#[test]
fn a_proto_constraint_path_points_at_the_cluster_or_route_by_index() {
    let (resources, origins) = venue_and("zeta");
    let cluster = "Proto constraint validation failed (BootstrapValidationError.StaticResources: embedded message failed validation | caused by StaticResourcesValidationError.Clusters[1]: embedded message failed validation | caused by ClusterValidationError.HealthChecks[0]: x)";
    let shown: Vec<String> = culprits(cluster, &resources, &origins).iter().map(ToString::to_string).collect();
    assert_eq!(shown, [format!("CDS {} (service zeta, traffic)", resources.clusters[1].name)]);
    let index = resources.routes[0].virtual_hosts[0].routes.iter().position(|r| r.name.starts_with("zeta:")).unwrap();
    let route = format!("Proto constraint validation failed (HttpConnectionManagerValidationError.RouteConfig: embedded message failed validation | caused by RouteConfigurationValidationError.VirtualHosts[0]: embedded message failed validation | caused by VirtualHostValidationError.Routes[{index}]: embedded message failed validation | caused by RouteActionValidationError.HashPolicy[0]: x)");
    let found = culprits(&route, &resources, &origins);
    assert_eq!(found.len(), 1, "{found:?}");
    let entry = found[0].entry.as_ref().map(|e| (e.service.as_deref(), e.route.as_deref(), e.field.as_str()));
    assert_eq!(entry, Some((Some("zeta"), Some("/api/v1/zeta"), "traffic.load_balancing")));
}

/// What `serve --test-bootstrap-dir` writes: the snapshot decoded is what the translation
/// made, and two stacks that differ only in their ports write the same file.
#[test]
fn a_published_snapshot_decodes_to_its_translation_and_ports_do_not_change_its_file() {
    let snapshot_on = |listen: u16, instance: u16| {
        let yaml = crate::test_support::registry_yaml(&format!(
            "services:\n  - name: venue\n    routes: [{{prefix: /api/v1/venues}}]\n    instances: [{{address: 127.0.0.1, port: {instance}}}]\n"
        ));
        let registry = Registry::parse("test", &yaml).unwrap();
        let options = TranslateOptions { control_plane_tls: true, ..crate::test_support::translate_options(listen) };
        let translated = translate(&registry, &LiveInstances::new(), &[], &options).unwrap();
        (crate::publish::build_snapshot(&registry, &LiveInstances::new(), &[], &options, None).unwrap(), translated)
    };
    let (snapshot, translated) = snapshot_on(8080, 9000);
    let decoded = published::resources_of(&snapshot).unwrap();
    let sorted = |mut names: Vec<String>| {
        names.sort();
        names
    };
    assert_eq!(sorted(decoded.clusters.iter().map(|c| c.name.clone()).collect()), sorted(translated.clusters.iter().map(|c| c.name.clone()).collect()));
    assert_eq!(decoded.listeners.len(), translated.listeners.len());
    assert_eq!(decoded.extension_configs.len(), translated.extension_configs.len());
    let dir = std::env::temp_dir().join(format!("stagedoor-published-{}", std::process::id()));
    let first = published::write(&dir, &snapshot).unwrap();
    let (other_ports, _) = snapshot_on(18080, 19000);
    assert_eq!(published::write(&dir, &other_ports).unwrap(), first, "only the ports differ: one file");
    let (other_prefix, _) = {
        let yaml = crate::test_support::registry_yaml("services:\n  - name: venue\n    routes: [{prefix: /api/v2/venues}]\n    instances: [{address: 127.0.0.1, port: 9000}]\n");
        let registry = Registry::parse("test", &yaml).unwrap();
        let options = TranslateOptions { control_plane_tls: true, ..crate::test_support::translate_options(8080) };
        (crate::publish::build_snapshot(&registry, &LiveInstances::new(), &[], &options, None).unwrap(), ())
    };
    assert_ne!(published::write(&dir, &other_prefix).unwrap(), first, "another route: another file");
    let _ = std::fs::remove_dir_all(&dir);
}
