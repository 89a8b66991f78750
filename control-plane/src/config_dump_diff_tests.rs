use envoy_types::pb::envoy::admin::v3::ClientResourceStatus;
use envoy_types::pb::envoy::service::status::v3::client_config::GenericXdsConfig;
use envoy_types::pb::envoy::service::status::v3::ClientConfig;
use serde_json::json;

use super::*;

fn dump(cluster_version: &str, listener: serde_json::Value) -> Value {
    json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
         "static_clusters": [{"cluster": {"name": "stagedoor_xds"}}],
         "dynamic_active_clusters": [{"version_info": cluster_version, "cluster": {"name": "svc_venue"}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [listener]},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
         "dynamic_route_configs": [{"version_info": "v2", "route_config": {"name": "stagedoor_routes"}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
         "dynamic_endpoint_configs": [{"version_info": "v1", "endpoint_config": {"cluster_name": "svc_venue"}}]},
    ]})
}

fn generic(type_url: &str, name: &str, version: &str, status: ClientResourceStatus) -> GenericXdsConfig {
    GenericXdsConfig { type_url: type_url.to_owned(), name: name.to_owned(), version_info: version.to_owned(), client_status: status as i32, ..Default::default() }
}

fn sent(cluster_status: ClientResourceStatus) -> ClientConfig {
    ClientConfig {
        generic_xds_configs: vec![
            generic(type_url::CLUSTER, "svc_venue", "v1", cluster_status),
            generic(type_url::ENDPOINT, "svc_venue", "v1", ClientResourceStatus::Acked),
            generic(type_url::LISTENER, "stagedoor_http", "v1", ClientResourceStatus::Acked),
            generic(type_url::ROUTE, "stagedoor_routes", "v2", ClientResourceStatus::Acked),
        ],
        ..Default::default()
    }
}

/// Every type ACKed at each of `versions`.
fn ever(versions: &[&str]) -> AckedVersions {
    ["CDS", "LDS", "RDS", "ECDS", "SDS"].iter().map(|t| ((*t).to_owned(), versions.iter().map(|v| (*v).to_owned()).collect())).collect()
}

fn active_listener(version: &str) -> Value {
    json!({"name": "stagedoor_http", "active_state": {"version_info": version}})
}

#[test]
fn an_envoy_running_what_it_acked_shows_no_difference() {
    let running = running(&dump("v1", active_listener("v1")));
    assert_eq!(running.len(), 3, "dynamic clusters, listeners and routes; no endpoints: {running:?}");
    assert!(diff(&acked(&sent(ClientResourceStatus::Acked)), &running, Some(&ever(&["v1", "v2"]))).is_empty());
    let nacked = diff(&acked(&sent(ClientResourceStatus::Nacked)), &running, Some(&ever(&["v1", "v2"])));
    assert!(nacked.is_empty(), "a NACKed resource keeps running its ACKed version");
    let older = running.clone().into_iter().map(|(k, v)| (k, if v == "v1" { String::from("v0") } else { v })).collect();
    assert!(diff(&acked(&sent(ClientResourceStatus::Acked)), &older, Some(&ever(&["v0", "v1", "v2"]))).is_empty(), "an unchanged resource keeps the older version it was ACKed at");
}

#[test]
fn a_different_version_a_missing_and_an_extra_resource_are_each_one_line() {
    let running = running(&dump("v0", json!({"name": "stagedoor_http", "warming_state": {"version_info": "v1"}})));
    let mut sent = sent(ClientResourceStatus::Acked);
    sent.generic_xds_configs.retain(|g| g.type_url != type_url::ROUTE);
    let lines = diff(&acked(&sent), &running, Some(&ever(&["v1", "v2"])));
    assert_eq!(
        lines,
        [
            "CDS svc_venue: Envoy runs version v0, which it never ACKed (now ACKed: v1)",
            "LDS stagedoor_http: ACKed version v1, not in Envoy's config_dump",
            "RDS stagedoor_routes: Envoy runs version v2, which the control plane did not send it (or not ACKed)",
        ]
    );
    let names_only = diff(&acked(&sent), &running, None);
    assert_eq!(names_only.len(), 2, "delta: versions are not comparable, names are: {names_only:?}");
}
