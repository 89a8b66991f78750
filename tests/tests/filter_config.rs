#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The filter's last line of defence: a config the control plane would never send (it
//! validates first) is still refused by the filter's on_configure, so Envoy refuses it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::stack::{envoy_bin, hmac_wasm_path, wasm_path, workspace_root};

/// Starts Envoy with a static listener running the filter with `config`; returns whether
/// Envoy exited on its own within the limit, and its log.
fn envoy_with_filter_config(config: &str) -> (bool, String) {
    envoy_with_module_and_config(&wasm_path(), config)
}

/// As [`envoy_with_filter_config`], with the filter build at `module`.
fn envoy_with_module_and_config(module: &std::path::Path, config: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("stagedoor-filter-config-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let bootstrap = format!(
        r#"
admin: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }} }}
static_resources:
  listeners:
    - name: test
      address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: test
                route_config: {{ virtual_hosts: [{{ name: all, domains: ["*"], routes: [{{ match: {{ prefix: / }}, direct_response: {{ status: 200 }} }}] }}] }}
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: stagedoor
                        root_id: stagedoor
                        vm_config:
                          runtime: envoy.wasm.runtime.v8
                          code: {{ local: {{ filename: {wasm} }} }}
                        configuration:
                          "@type": type.googleapis.com/google.protobuf.StringValue
                          value: {config:?}
                  - name: envoy.filters.http.router
                    typed_config: {{ "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }}
"#,
        admin = free_port(),
        port = free_port(),
        wasm = module.display(),
    );
    let path = dir.join("bootstrap.yaml");
    std::fs::write(&path, bootstrap).unwrap();
    let log = dir.join("envoy.log");
    let mut child = Command::new(envoy_bin())
        .args(["-c", &path.display().to_string(), "--concurrency", "1", "--disable-hot-restart", "-l", "info"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (exited, text)
}

#[test]
fn the_filter_refuses_a_config_that_is_not_its_json() {
    let (exited, log) = envoy_with_filter_config(r#"{"config_version":"x","unexpected":true}"#);
    assert!(exited, "Envoy must not start with a refused filter config:\n{log}");
    assert!(log.contains("stagedoor: config is not valid JSON for this filter"), "{log}");
}

#[test]
fn the_filter_refuses_a_config_with_a_bad_key() {
    let config = r#"{"config_version":"x","services":[],"auth":{"issuer":"i","audience":"a","keys":[{"algorithms":["HS256"],"secret":"short"}]}}"#;
    let (exited, log) = envoy_with_filter_config(config);
    assert!(exited, "Envoy must not start with a refused filter config:\n{log}");
    assert!(log.contains("stagedoor: config refused: auth.keys[0]: secret: must be at least 32 bytes"), "{log}");
    assert!(!log.contains("\"short\""), "the refusal does not echo the secret");
}

/// The HMAC-only build (`scripts/build-filter.sh --hmac-only`) has no RSA verifier: a
/// policy with an RSA key is refused when it compiles, so Envoy refuses the config instead
/// of the filter answering 401 to that key's tokens; the full build takes the same config.
#[test]
fn the_hmac_only_module_refuses_an_rsa_key_which_the_full_one_takes() {
    let jwks = std::fs::read_to_string(workspace_root().join("filter/core/testdata/jwks.json")).unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&jwks).unwrap();
    let key = serde_json::json!({ "algorithms": ["RS256"], "jwk": jwks["keys"][0] });
    let config = serde_json::json!({ "config_version": "x", "services": [], "auth": { "issuer": "i", "audience": "a", "keys": [key] } });
    let (exited, log) = envoy_with_module_and_config(&hmac_wasm_path(), &config.to_string());
    assert!(exited, "Envoy must not start with a policy the HMAC-only build cannot serve:\n{log}");
    assert!(log.contains("auth.keys[0]") && log.contains("needs the filter module built with asymmetric algorithms"), "{log}");
    let (exited, log) = envoy_with_module_and_config(&wasm_path(), &config.to_string());
    assert!(!exited, "the full build serves an RSA key:\n{log}");
}

/// A filter config Envoy refuses over ECDS (here: the module file became unreadable as
/// wasm) is NACKed, and the last accepted one keeps serving: the policy stays the old one,
/// never none. Once the module is back, the next edit goes through.
#[test]
fn a_nacked_filter_config_keeps_the_last_good_one_serving() {
    use stagedoor_e2e::fixtures::registry_with;
    use stagedoor_e2e::stack::time_until;
    use stagedoor_e2e::{raw, Stack, StackOptions};

    let module = std::env::temp_dir().join(format!("stagedoor-nack-{}-{}.wasm", std::process::id(), free_port()));
    std::fs::copy(wasm_path(), &module).unwrap();
    let registry = registry_with("  - name: event\n    routes: [{ prefix: /api/v1/events }]\n    instances: [{ address: 127.0.0.1, port: 1 }]\n");
    let stack = Stack::start(StackOptions {
        registry_yaml: registry,
        wasm_override: Some(module.display().to_string()),
        envoy_refuses_on_purpose: true,
        ..Default::default()
    });
    stack.wait_ready();
    let status = |path: &str| raw::request(stack.gateway_port, "GET", path, &[], "").status;
    let with_public = |path: &str| {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&stack.registry()).unwrap();
        let svc = doc["services"].as_sequence_mut().unwrap().iter_mut().find(|s| s["name"] == "venue").unwrap();
        svc["public_paths"] = serde_yaml::Value::from(vec![path.to_owned()]);
        serde_yaml::to_string(&doc).unwrap()
    };
    stack.write_registry(&with_public("/api/v1/venues/first"));
    assert!(time_until(Duration::from_secs(5), || status("/api/v1/venues/first") == 200).is_some(), "first edit served");

    std::fs::write(&module, b"not a wasm module").unwrap();
    stack.write_registry(&with_public("/api/v1/venues/second"));
    let nacked = time_until(Duration::from_secs(10), || stack.control_plane_status()["last_nack"]["type"] == "ECDS");
    assert!(nacked.is_some(), "the refused filter config is a NACK: {}", stack.control_plane_status());
    eprintln!("NACK after {:?}: {}", nacked.unwrap(), stack.control_plane_status()["last_nack"]["detail"]);
    for _ in 0..20 {
        assert_eq!(status("/api/v1/venues/first"), 200, "the last good policy keeps serving");
        assert_eq!(status("/api/v1/venues/second"), 401, "the refused policy never applies, nor does no policy");
    }

    std::fs::copy(wasm_path(), &module).unwrap();
    stack.write_registry(&with_public("/api/v1/venues/third"));
    let took = time_until(Duration::from_secs(5), || status("/api/v1/venues/third") == 200 && status("/api/v1/venues/first") == 401);
    assert!(took.is_some(), "a good config after the NACK is accepted");
    let _ = std::fs::remove_file(&module);
}
