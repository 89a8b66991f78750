//! ECDS: the Stagedoor wasm filter's config (plugin, VM, policy) as one
//! `TypedExtensionConfig`. A registry edit that only changes policy changes this resource
//! alone; Envoy swaps it into the listener's filter chain for new streams without touching
//! the listener.

use envoy_types::pb::envoy::config::core::v3::{async_data_source, data_source, AsyncDataSource, DataSource, TypedExtensionConfig};
use envoy_types::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use envoy_types::pb::envoy::extensions::wasm::v3::{plugin_config, FailurePolicy, PluginConfig, VmConfig};
use envoy_types::pb::google::protobuf::{BoolValue, StringValue};
use stagedoor_filter_core::config::AuthConfig;

use super::{names, to_any, TranslateOptions};

/// The filter module Envoy loads for `auth`: the HMAC-only build when there is one and it
/// serves every key, else the full one.
pub fn module_path<'a>(options: &'a TranslateOptions, auth: &AuthConfig) -> &'a str {
    match &options.hmac_wasm_path {
        Some(hmac) if auth.hmac_only() => hmac,
        _ => &options.wasm_path,
    }
}

/// `module`: the filter module to load ([`module_path`]); `config_json`: the filter config's
/// JSON (`FilterConfig::to_json`, or what [`super::filter_config::config_json`] makes of its parts).
pub fn stagedoor_filter_config(module: &str, config_json: String) -> TypedExtensionConfig {
    let wasm = Wasm {
        config: Some(PluginConfig {
            name: names::FILTER_NAME.to_owned(),
            root_id: names::FILTER_NAME.to_owned(),
            vm: Some(plugin_config::Vm::VmConfig(VmConfig {
                vm_id: names::WASM_VM_ID.to_owned(),
                runtime: String::from("envoy.wasm.runtime.v8"),
                code: Some(AsyncDataSource {
                    specifier: Some(async_data_source::Specifier::Local(DataSource {
                        specifier: Some(data_source::Specifier::Filename(module.to_owned())),
                        ..Default::default()
                    })),
                }),
                ..Default::default()
            })),
            configuration: Some(to_any(&StringValue { value: config_json })),
            // A webhook is held at the headers (StopIteration) while its body arrives for
            // the signature check; without this Envoy would stop all iteration and never
            // hand the filter the body.
            allow_on_headers_stop_iteration: Some(BoolValue { value: true }),
            // If the VM ever fails at run time, the request at hand gets a 503 and the next
            // one a fresh VM (after Envoy's reload backoff), instead of every request on the
            // worker failing until Envoy restarts (FAIL_CLOSED, the default).
            failure_policy: FailurePolicy::FailReload as i32,
            ..Default::default()
        }),
    };
    TypedExtensionConfig { name: names::FILTER_EXTENSION_CONFIG.to_owned(), typed_config: Some(to_any(&wasm)) }
}

#[cfg(test)]
mod tests {
    use stagedoor_filter_core::config::KeyConfig;

    use super::*;

    fn auth(algorithm: &str) -> AuthConfig {
        let key = KeyConfig { kid: None, algorithms: vec![algorithm.to_owned()], secret: Some(String::from("s")), jwk: None, issuer: None };
        AuthConfig { issuer: String::from("i"), audience: String::from("a"), leeway_secs: 0, keys: vec![key], jwks: None }
    }

    #[test]
    fn the_hmac_only_module_is_pushed_only_when_there_is_one_and_it_serves_every_key() {
        let full = crate::test_support::translate_options(8080);
        let both = TranslateOptions { hmac_wasm_path: Some(String::from("/hmac.wasm")), ..full.clone() };
        assert_eq!(module_path(&both, &auth("HS256")), "/hmac.wasm");
        assert_eq!(module_path(&both, &auth("RS256")), "/f.wasm");
        assert_eq!(module_path(&full, &auth("HS256")), "/f.wasm", "no HMAC-only build given");
    }
}
