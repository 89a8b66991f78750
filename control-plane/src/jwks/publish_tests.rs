//! Fetched keys through the publisher: into the filter config Envoys get, bound to their
//! issuer; refused, with the last good keys kept, when they clash with the registry's.

use serde_json::Value;
use stagedoor_filter_core::config::{FilterConfig, KeyConfig};

use super::RemoteKeys;
use crate::publish::Publisher;
use crate::registry::Registry;
use crate::snapshot::Snapshot;

const IDP: &str = "https://idp.example/";

fn registry() -> Registry {
    let yaml = format!(
        "{}    - jwks_uri: https://idp.example/.well-known/jwks.json\n      issuer: {IDP}\n      algorithms: [RS256]\nservices:\n  - name: a\n    routes: [{{prefix: /a}}]\n",
        crate::test_support::AUTH
    );
    Registry::parse("r", &yaml).unwrap()
}

fn idp_key(kid: &str) -> KeyConfig {
    let jwks: Value = serde_json::from_str(include_str!("../../../filter/core/testdata/jwks.json")).unwrap();
    KeyConfig { kid: Some(kid.into()), algorithms: vec!["RS256".into()], secret: None, jwk: Some(jwks["keys"][0].clone()), issuer: Some(IDP.into()) }
}

/// The filter config inside the snapshot's ECDS resource, as Envoy hands it to the filter.
fn filter_config(snapshot: &Snapshot) -> FilterConfig {
    use envoy_types::pb::envoy::config::core::v3::TypedExtensionConfig;
    use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
    use envoy_types::pb::google::protobuf::StringValue;
    use prost::Message;
    let any = snapshot.types[crate::resources::type_url::EXTENSION_CONFIG].resources.values().next().unwrap();
    let extension = TypedExtensionConfig::decode(any.value.as_slice()).unwrap();
    let typed = extension.typed_config.unwrap();
    let plugin = Wasm::decode(typed.value.as_slice()).unwrap().config.unwrap();
    let json = StringValue::decode(plugin.configuration.unwrap().value.as_slice()).unwrap().value;
    FilterConfig::from_json(json.as_bytes()).unwrap()
}

#[test]
fn before_the_first_fetch_the_issuer_is_listed_with_no_keys() {
    let (_, rx) = Publisher::new(registry(), crate::test_support::translate_options(8080)).unwrap();
    let config = filter_config(&rx.borrow());
    assert_eq!(config.auth.jwks.as_ref().unwrap().issuers, [IDP]);
    assert_eq!(config.auth.keys.len(), 1, "only the registry's own key");
}

#[test]
fn fetched_keys_go_out_bound_to_their_issuer_and_a_change_republishes() {
    let (mut p, rx) = Publisher::new(registry(), crate::test_support::translate_options(8080)).unwrap();
    let before = rx.borrow().version.clone();
    assert!(p.set_remote_keys(RemoteKeys::from([(IDP.to_owned(), vec![idp_key("k1")])])).unwrap());
    let config = filter_config(&rx.borrow());
    assert_eq!(config.auth.keys[1].kid.as_deref(), Some("k1"));
    assert_eq!(config.auth.keys[1].issuer.as_deref(), Some(IDP));
    assert_ne!(rx.borrow().version, before);
    assert!(!p.set_remote_keys(RemoteKeys::from([(IDP.to_owned(), vec![idp_key("k1")])])).unwrap(), "the same keys: no push");
}

#[test]
fn keys_the_filter_compiler_refuses_keep_the_last_good_ones() {
    let (mut p, rx) = Publisher::new(registry(), crate::test_support::translate_options(8080)).unwrap();
    p.set_remote_keys(RemoteKeys::from([(IDP.to_owned(), vec![idp_key("k1")])])).unwrap();
    let good = rx.borrow().version.clone();
    let mut bad = idp_key("k2");
    bad.algorithms = vec!["HS256".into()];
    let e = p.set_remote_keys(RemoteKeys::from([(IDP.to_owned(), vec![bad])])).unwrap_err();
    assert!(e.to_string().contains("algorithms"), "{e}");
    assert_eq!(rx.borrow().version, good);
}
