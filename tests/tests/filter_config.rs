#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The filter's last line of defence: a config the control plane would never send (it
//! validates first) is still refused by the filter's on_configure, so Envoy refuses it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stagedoor_e2e::ports::free_port;
use stagedoor_e2e::stack::{envoy_bin, wasm_path};

/// Starts Envoy with a static listener running the filter with `config`; returns whether
/// Envoy exited on its own within the limit, and its log.
fn envoy_with_filter_config(config: &str) -> (bool, String) {
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
        wasm = wasm_path().display(),
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
