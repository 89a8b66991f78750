use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ports::free_port;

/// The workspace root, from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn stagedoor_bin() -> PathBuf {
    std::env::var_os("STAGEDOOR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/stagedoor"))
}

/// The echo upstream (`tools/echo`), built beside `stagedoor` by `cargo build`.
pub fn echo_bin() -> PathBuf {
    std::env::var_os("STAGEDOOR_ECHO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/stagedoor-echo"))
}

pub fn wasm_path() -> PathBuf {
    std::env::var_os("STAGEDOOR_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip1/release/stagedoor_filter.wasm"))
}

/// The HMAC-only build (`scripts/build-filter.sh --hmac-only`).
pub fn hmac_wasm_path() -> PathBuf {
    std::env::var_os("STAGEDOOR_WASM_HMAC")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/wasm32-wasip1/release/stagedoor_filter_hmac.wasm"))
}

pub fn envoy_bin() -> PathBuf {
    std::env::var_os("ENVOY_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("envoy"))
}

/// The operator's client for the control plane's TLS HTTP side (/status): the stack's CA
/// and operator certificate from `tls_dir`.
pub fn operator_client(tls_dir: &Path) -> reqwest::blocking::Client {
    let ca = fs::read(tls_dir.join("ca.pem")).expect("ca.pem");
    let mut identity = fs::read(tls_dir.join("operator.pem")).expect("operator.pem");
    identity.extend(fs::read(tls_dir.join("operator-key.pem")).expect("operator-key.pem"));
    reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
        .identity(reqwest::Identity::from_pem(&identity).expect("operator identity"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("https client")
}

/// The HTTPS port the shipped registry serves (registry/tickettoken.yaml's `edge_tls`); a
/// stack given it serves a free port instead.
pub const SHIPPED_HTTPS_PORT: u64 = 8443;

/// A gateway client over HTTPS that trusts only the stack's CA (`tls_dir/ca.pem`), as
/// `curl --cacert .stagedoor/ca.pem` does after scripts/run.sh.
pub fn https_client(tls_dir: &Path) -> reqwest::blocking::Client {
    let ca = fs::read(tls_dir.join("ca.pem")).expect("ca.pem");
    reqwest::blocking::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("https client")
}

/// A client that never goes through a proxy: every test target is on loopback.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// Registry YAML; every `instances` port is replaced by a running echo upstream's port.
    pub registry_yaml: String,
    /// Start this many Envoys (default 1).
    pub envoys: usize,
    /// Override the wasm path handed to Envoy (to test a broken deployment).
    pub wasm_override: Option<String>,
    /// Extra `stagedoor serve` arguments.
    pub serve_args: Vec<String>,
    /// Start a private redis-server and point the control plane at it.
    pub redis: bool,
    /// Envoys use incremental (delta) xDS instead of state of the world.
    pub delta: bool,
    /// Extra Envoy arguments (e.g. `--disable-extensions`, to make Envoy refuse a resource
    /// the control plane accepts, as a deployment missing an extension would).
    pub envoy_args: Vec<String>,
    /// The gateway port Envoys listen on (the control plane's `--listen`); default a free
    /// one. Replicas that serve the same Envoys must agree on it, as on every translate option.
    pub gateway_port: Option<u16>,
    /// Use this stack's credentials (a copy of another stack's `tls_dir`, CA included)
    /// instead of new ones, so Envoys and control planes of both stacks trust each other.
    pub tls_dir_from: Option<PathBuf>,
    /// The control plane's xDS port; default a free one (given, so that another replica's
    /// Envoys can list it before this stack starts).
    pub xds_port: Option<u16>,
    /// More control-plane replicas' xDS ports, listed after this stack's own in every
    /// Envoy's bootstrap (`${XDS_ENDPOINTS}`).
    pub xds_replicas: Vec<u16>,
    /// The test pushes a snapshot Envoy refuses on purpose (a filter module that does not
    /// load): its published snapshots are not run through `envoy --mode validate`
    /// (published.rs), which would fail it.
    pub envoy_refuses_on_purpose: bool,
}

/// `${XDS_ENDPOINTS}` for control planes on 127.0.0.1 at `ports`: a YAML flow list of
/// lb_endpoints (envoy/bootstrap.yaml).
pub fn xds_endpoints(ports: &[u16]) -> String {
    let endpoints: Vec<String> = ports
        .iter()
        .map(|port| format!("{{ endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }} }}"))
        .collect();
    format!("[{}]", endpoints.join(", "))
}

pub struct Envoy {
    pub child: Child,
    pub admin_port: u16,
    pub node_id: String,
}

pub struct Stack {
    pub dir: PathBuf,
    pub registry_path: PathBuf,
    pub gateway_port: u16,
    /// The registry's `edge_tls` port, when it serves HTTPS at the edge.
    pub https_port: Option<u16>,
    pub xds_port: u16,
    pub http_port: u16,
    /// Plain /metrics and /healthz.
    pub metrics_port: u16,
    /// The stack's credentials (`stagedoor certs init`): CA, control plane, edge, operator,
    /// and one certificate per Envoy node id. `<dir>/.stagedoor`, the control plane's working
    /// directory being `dir`: the shipped registry's `.stagedoor/edge.pem` resolves as it
    /// does under scripts/run.sh.
    pub tls_dir: PathBuf,
    pub control_plane: Option<Child>,
    pub envoys: Vec<Envoy>,
    pub echoes: Vec<(String, u16, Child)>,
    /// The private Redis (process, port), when asked for.
    pub redis: Option<(Option<Child>, u16)>,
    xds_api_type: &'static str,
    serve_args: Vec<String>,
    envoy_args: Vec<String>,
    wasm: String,
    xds_replicas: Vec<u16>,
    /// Where `serve --test-bootstrap-dir` writes the published snapshots; None: not validated.
    published: Option<PathBuf>,
}

static STACK_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Stack {
    pub fn start(options: StackOptions) -> Stack {
        let n = STACK_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("stagedoor-e2e-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create test dir");

        let mut stack = Stack {
            registry_path: dir.join("registry.yaml"),
            tls_dir: dir.join(".stagedoor"),
            metrics_port: free_port(),
            dir,
            gateway_port: options.gateway_port.unwrap_or_else(free_port),
            https_port: None,
            xds_port: options.xds_port.unwrap_or_else(free_port),
            http_port: free_port(),
            control_plane: None,
            envoys: Vec::new(),
            echoes: Vec::new(),
            redis: None,
            xds_api_type: if options.delta { "DELTA_GRPC" } else { "GRPC" },
            serve_args: options.serve_args.clone(),
            envoy_args: options.envoy_args.clone(),
            wasm: options.wasm_override.clone().unwrap_or_else(|| wasm_path().display().to_string()),
            xds_replicas: options.xds_replicas.clone(),
            published: None,
        };
        if !options.envoy_refuses_on_purpose && crate::published::enabled() {
            stack.published = Some(stack.dir.join("published-bootstraps"));
        }
        match &options.tls_dir_from {
            Some(from) => {
                fs::create_dir_all(&stack.tls_dir).expect("create credential dir");
                for entry in fs::read_dir(from).expect("credential dir to copy") {
                    let entry = entry.expect("credential file");
                    fs::copy(entry.path(), stack.tls_dir.join(entry.file_name())).expect("copy credential file");
                }
            }
            None => stack.stagedoor(&["certs", "init", "--dir", &stack.tls_dir.display().to_string()]),
        }
        let registry = stack.start_echoes_for(&options.registry_yaml);
        fs::write(&stack.registry_path, registry).expect("write registry");
        if options.redis {
            stack.redis = Some((None, free_port()));
            stack.start_redis();
        }
        stack.start_control_plane();
        for i in 0..options.envoys.max(1) {
            stack.start_envoy(&format!("e2e-{n}-{i}"));
        }
        stack
    }

    /// Starts one echo upstream per instance in the registry, rewriting the instance to
    /// point at it; instances at 127.0.0.2 are left alone (tests use them as unreachable
    /// instances). The shipped HTTPS port becomes a free one. Returns the rewritten registry.
    fn start_echoes_for(&mut self, yaml: &str) -> String {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("registry yaml");
        if let Some(port) = doc.get_mut("edge_tls").and_then(|e| e.get_mut("port")) {
            if port.as_u64() == Some(SHIPPED_HTTPS_PORT) {
                *port = serde_yaml::Value::from(free_port());
            }
            self.https_port = port.as_u64().and_then(|p| u16::try_from(p).ok());
        }
        if let Some(services) = doc.get_mut("services").and_then(|s| s.as_sequence_mut()) {
            for svc in services {
                let name = svc["name"].as_str().unwrap_or("unnamed").to_owned();
                let Some(instances) = svc.get_mut("instances").and_then(|i| i.as_sequence_mut()) else { continue };
                for inst in instances {
                    if inst["address"].as_str() == Some("127.0.0.2") {
                        continue;
                    }
                    let port = self.start_echo(&name);
                    inst["address"] = serde_yaml::Value::from("127.0.0.1");
                    inst["port"] = serde_yaml::Value::from(port);
                }
            }
        }
        serde_yaml::to_string(&doc).expect("registry yaml")
    }

    pub fn start_echo(&mut self, service: &str) -> u16 {
        let port = free_port();
        let log_name = format!("echo-{service}-{port}.log");
        let mut child = Command::new(echo_bin())
            .args(["--port", &port.to_string(), "--service", service])
            .stdout(Stdio::null())
            .stderr(self.log_file(&log_name))
            .spawn()
            .expect("start echo upstream");
        let up = wait_up(&format!("echo upstream {service} on port {port}"), &mut child, &self.dir.join(log_name), STARTUP_LIMIT, || {
            listening(port)
        });
        self.echoes.push((service.to_owned(), port, child));
        up.unwrap_or_else(|failure| panic!("{failure}"));
        port
    }

    /// An echo upstream that speaks only TLS (`stagedoor-echo --tls-cert`), requiring a
    /// client certificate signed by `client_ca` when given.
    pub fn start_tls_echo(&mut self, service: &str, cert: &Path, key: &Path, client_ca: Option<&Path>) -> u16 {
        let port = free_port();
        let log_name = format!("echo-tls-{service}-{port}.log");
        let mut command = Command::new(echo_bin());
        command.args(["--port", &port.to_string(), "--service", service]);
        command.args(["--tls-cert", &cert.display().to_string(), "--tls-key", &key.display().to_string()]);
        if let Some(ca) = client_ca {
            command.args(["--tls-client-ca", &ca.display().to_string()]);
        }
        let mut child = command.stdout(Stdio::null()).stderr(self.log_file(&log_name)).spawn().expect("start TLS echo upstream");
        let component = format!("TLS echo upstream {service} on port {port}");
        let up = wait_up(&component, &mut child, &self.dir.join(log_name), STARTUP_LIMIT, || listening(port));
        self.echoes.push((service.to_owned(), port, child));
        up.unwrap_or_else(|failure| panic!("{failure}"));
        port
    }

    /// Runs a `stagedoor` command to completion; it must succeed.
    pub fn stagedoor(&self, args: &[&str]) {
        let out = Command::new(stagedoor_bin()).args(args).output().expect("run stagedoor");
        assert!(out.status.success(), "stagedoor {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// A `stagedoor` CLI command (status, apply, token revoke) aimed at this stack's API
    /// with the operator's credentials, as an operator's shell would be.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(stagedoor_bin());
        cmd.env("STAGEDOOR_SERVER", self.api_url()).env("STAGEDOOR_TLS_DIR", &self.tls_dir);
        cmd
    }

    pub fn api_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.xds_port)
    }

    /// A stagedoor.v1 client with the operator certificate.
    pub async fn api_client(&self) -> stagedoor_proto::v1::control_plane_client::ControlPlaneClient<tonic::transport::Channel> {
        stagedoor_proto::v1::control_plane_client::ControlPlaneClient::new(self.grpc_channel(Some("operator")).await)
    }

    /// A TLS channel to the gRPC port that trusts the stack's CA and shows the client
    /// certificate `<stem>.pem` from the credential directory, or none.
    pub async fn grpc_channel(&self, certificate: Option<&str>) -> tonic::transport::Channel {
        let read = |name: &str| fs::read_to_string(self.tls_dir.join(name)).expect("credential file");
        let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(read("ca.pem")));
        if let Some(stem) = certificate {
            tls = tls.identity(tonic::transport::Identity::from_pem(read(&format!("{stem}.pem")), read(&format!("{stem}-key.pem"))));
        }
        tonic::transport::Endpoint::from_shared(self.api_url())
            .expect("url")
            .tls_config(tls)
            .expect("tls")
            .connect()
            .await
            .expect("connect to the gRPC port")
    }

    fn log_file(&self, name: &str) -> fs::File {
        fs::File::create(self.dir.join(name)).expect("log file")
    }

    pub fn redis_url(&self) -> Option<String> {
        self.redis.as_ref().map(|(_, port)| format!("redis://127.0.0.1:{port}"))
    }

    /// (Re)starts the private Redis on its port, with no persistence.
    pub fn start_redis(&mut self) {
        let Some((slot, port)) = self.redis.as_mut() else { return };
        let port = *port;
        let log = self.dir.join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(fs::File::create(&log).expect("redis log"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (is it installed? scripts/bootstrap.sh)");
        let up = wait_up(&format!("redis-server on port {port}"), &mut child, &log, STARTUP_LIMIT, || listening(port));
        *slot = Some(child);
        up.unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// Runs `redis-cli` against the private Redis; its stdout (`--raw`), trimmed.
    pub fn redis_cli(&self, args: &[&str]) -> String {
        let (_, port) = self.redis.as_ref().expect("the stack has no Redis");
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn stop_redis(&mut self) {
        if let Some((slot, _)) = self.redis.as_mut() {
            if let Some(mut child) = slot.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    pub fn start_control_plane(&mut self) {
        let log = self.log_file("control-plane.log");
        let mut cmd = Command::new(stagedoor_bin());
        // The working directory scripts/run.sh gives it (the repository root there, with
        // .stagedoor/ in it).
        cmd.current_dir(&self.dir)
            .arg("serve")
            .args(["--registry", &self.registry_path.display().to_string()])
            .args(["--xds", &format!("127.0.0.1:{}", self.xds_port)])
            .args(["--http", &format!("127.0.0.1:{}", self.http_port)])
            .args(["--metrics", &format!("127.0.0.1:{}", self.metrics_port)])
            .args(["--tls-dir", &self.tls_dir.display().to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", self.gateway_port)])
            .args(["--wasm", &self.wasm])
            .args(&self.serve_args)
            .args(self.published.iter().flat_map(|dir| [String::from("--test-bootstrap-dir"), dir.display().to_string()]))
            .args(self.redis_url().map(|url| vec![String::from("--redis"), url]).unwrap_or_default())
            .env("STAGEDOOR_LOG", "info,stagedoor=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log);
        let mut child = cmd.spawn().expect("start control plane");
        let (http_port, xds_port) = (self.http_port, self.xds_port);
        let log = self.dir.join("control-plane.log");
        let up = wait_up("control plane (stagedoor serve)", &mut child, &log, Duration::from_secs(20), || {
            listening(http_port) && listening(xds_port)
        });
        self.control_plane = Some(child);
        up.unwrap_or_else(|failure| panic!("{failure}"));
    }

    /// Stops the control plane, then runs Envoy's `--mode validate` on each snapshot it
    /// published that this run has not validated yet (published.rs); a refusal fails the
    /// test, with Envoy's message (unless the test is failing already).
    pub fn stop_control_plane(&mut self) {
        let Some(mut child) = self.control_plane.take() else { return };
        let _ = child.kill();
        let _ = child.wait();
        let Some(published) = &self.published else { return };
        match crate::published::validate_new(published) {
            Ok((0, _)) => {}
            Ok((ran, took)) => eprintln!("envoy --mode validate: {ran} new published snapshot(s) accepted in {} ms", took.as_millis()),
            Err(refused) if std::thread::panicking() => eprintln!("{refused}"),
            Err(refused) => panic!("{refused}\n(logs in {})", self.dir.display()),
        }
    }

    pub fn start_envoy(&mut self, node_id: &str) {
        self.start_envoy_with_args(node_id, &[]);
    }

    /// Another Envoy with extra arguments besides the stack's own (e.g. one started with
    /// `--disable-extensions` beside normal ones, so only it refuses a resource).
    pub fn start_envoy_with_args(&mut self, node_id: &str, extra_args: &[&str]) {
        let admin_port = free_port();
        self.stagedoor(&["certs", "envoy", "--dir", &self.tls_dir.display().to_string(), "--node-id", node_id]);
        let template = fs::read_to_string(workspace_root().join("envoy/bootstrap.yaml")).expect("bootstrap");
        let bootstrap = template
            .replace("${NODE_ID}", node_id)
            .replace("${ADMIN_PORT}", &admin_port.to_string())
            .replace("${XDS_ENDPOINTS}", &xds_endpoints(&[vec![self.xds_port], self.xds_replicas.clone()].concat()))
            .replace("${XDS_API_TYPE}", self.xds_api_type)
            .replace("${TLS_DIR}", &self.tls_dir.display().to_string());
        let path = self.dir.join(format!("bootstrap-{node_id}.yaml"));
        fs::write(&path, bootstrap).expect("write bootstrap");
        let log = self.log_file(&format!("envoy-{node_id}.log"));
        let child = Command::new(envoy_bin())
            .args(["-c", &path.display().to_string()])
            .args(["--concurrency", "1", "--disable-hot-restart"])
            .args(["-l", "warning", "--drain-time-s", "1"])
            .args(&self.envoy_args)
            .args(extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start envoy (is it installed? scripts/bootstrap.sh)");
        self.envoys.push(Envoy { child, admin_port, node_id: node_id.to_owned() });
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.gateway_port)
    }

    /// The gateway over HTTPS (`https://localhost:<edge_tls port>`), when the registry has
    /// `edge_tls`.
    pub fn https_url(&self, path: &str) -> Option<String> {
        self.https_port.map(|port| format!("https://localhost:{port}{path}"))
    }

    /// Where requests go: HTTPS when the registry serves it (the plain port redirects),
    /// else the plain port; with the client for it.
    fn gateway(&self, path: &str) -> (reqwest::blocking::Client, String) {
        match self.https_url(path) {
            Some(url) => (https_client(&self.tls_dir), url),
            None => (client(), self.url(path)),
        }
    }

    /// Waits until the gateway answers /health, i.e. Envoy has its listener and routes.
    /// Every Envoy is checked: one that exited or whose admin port never answered is named
    /// with its log's last lines (and the control plane's, which says what it pushed).
    pub fn wait_ready(&self) -> &Self {
        let (client, url) = self.gateway("/health");
        let start = Instant::now();
        let ok = wait_for(Duration::from_secs(30), || client.get(&url).send().map(|r| r.status() == 200).unwrap_or(false));
        if !ok {
            let envoys: Vec<String> = self
                .envoys
                .iter()
                .map(|e| {
                    let admin = if listening(e.admin_port) { "admin port answers" } else { "admin port never answered" };
                    let log = self.dir.join(format!("envoy-{}.log", e.node_id));
                    format!("envoy {} ({admin}); last lines of {}:\n{}", e.node_id, log.display(), log_tail(&log))
                })
                .collect();
            let control_plane = self.dir.join("control-plane.log");
            panic!(
                "the gateway did not answer {url} within 30 s\n{}\ncontrol plane; last lines of {}:\n{}",
                envoys.join("\n"),
                control_plane.display(),
                log_tail(&control_plane)
            );
        }
        eprintln!("stack: gateway ready after {} ms", start.elapsed().as_millis());
        self
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let (client, url) = self.gateway(path);
        let response = client.get(url).send().expect("request");
        let status = response.status().as_u16();
        let body = response.text().unwrap_or_default();
        (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
    }

    /// GET through the gateway with an admin token: (status, JSON body or Null).
    pub fn get_as_admin(&self, path: &str) -> (u16, Value) {
        let bearer = crate::fixtures::bearer(serde_json::json!({"role": "admin"}));
        if let Some(url) = self.https_url(path) {
            let response = https_client(&self.tls_dir).get(url).header("authorization", bearer).send().expect("request");
            let status = response.status().as_u16();
            return (status, response.json().unwrap_or(Value::Null));
        }
        let auth = format!("Authorization: {bearer}");
        let r = crate::raw::request(self.gateway_port, "GET", path, &[&auth], "");
        (r.status, r.json())
    }

    pub fn control_plane_status(&self) -> Value {
        operator_client(&self.tls_dir)
            .get(format!("https://127.0.0.1:{}/status", self.http_port))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    pub fn control_plane_log(&self) -> String {
        fs::read_to_string(self.dir.join("control-plane.log")).unwrap_or_default()
    }

    pub fn config_dump(&self, envoy: usize) -> String {
        let port = self.envoys[envoy].admin_port;
        client()
            .get(format!("http://127.0.0.1:{port}/config_dump"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// A page of Envoy's admin interface (`/listeners?format=json`, `/stats?filter=...`).
    pub fn envoy_admin(&self, envoy: usize, path: &str) -> String {
        let port = self.envoys[envoy].admin_port;
        client()
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// One counter or gauge from Envoy's /stats, by its exact name.
    pub fn envoy_stat(&self, envoy: usize, name: &str) -> Option<u64> {
        let page = self.envoy_admin(envoy, &format!("/stats?filter=^{}$", name.replace('.', "\\.")));
        page.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(": ")?.trim().parse().ok())
    }

    pub fn write_registry(&self, yaml: &str) {
        // Write then rename, as an editor or `kubectl apply` of a ConfigMap would.
        let tmp = self.registry_path.with_extension("tmp");
        fs::write(&tmp, yaml).expect("write registry");
        fs::rename(&tmp, &self.registry_path).expect("replace registry");
    }

    /// Appends a service (given as YAML) to the registry file.
    pub fn add_service(&self, service_yaml: &str) -> String {
        let mut doc: serde_yaml::Value = serde_yaml::from_str(&self.registry()).expect("registry yaml");
        let service: serde_yaml::Value = serde_yaml::from_str(service_yaml).expect("service yaml");
        doc["services"].as_sequence_mut().expect("services list").push(service);
        let yaml = serde_yaml::to_string(&doc).expect("registry yaml");
        self.write_registry(&yaml);
        yaml
    }

    /// How many requests carrying `x-echo-key: key` the service's echo upstreams received.
    pub fn echo_count(&self, service: &str, key: &str) -> u64 {
        self.echoes.iter().filter(|(name, _, _)| name == service).map(|(_, port, _)| echo_count_at(*port, key)).sum()
    }

    pub fn registry(&self) -> String {
        fs::read_to_string(&self.registry_path).expect("read registry")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for envoy in &mut self.envoys {
            let _ = envoy.child.kill();
            let _ = envoy.child.wait();
        }
        self.stop_control_plane();
        self.stop_redis();
        for (_, _, child) in &mut self.echoes {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("logs kept in {}", self.dir.display());
        }
    }
}

/// How many requests carrying `x-echo-key: key` the echo upstream on `port` received.
pub fn echo_count_at(port: u16, key: &str) -> u64 {
    client()
        .get(format!("http://127.0.0.1:{port}/__echo/count/{key}"))
        .send()
        .and_then(|r| r.json::<Value>())
        .ok()
        .and_then(|v| v["count"].as_u64())
        .unwrap_or(0)
}

/// How long an echo upstream or Redis may take to listen: generous, they take milliseconds.
const STARTUP_LIMIT: Duration = Duration::from_secs(10);

/// Whether something accepts connections on 127.0.0.1:`port`.
fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// The last lines of a log file, for a failure message.
pub fn log_tail(path: &Path) -> String {
    const LINES: usize = 20;
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("(cannot read: {e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LINES)..].join("\n")
}

/// Waits until `ready` holds for a process the stack started, and returns how long that took
/// (printed). Fails, naming `component` with its log's last lines, if the process exits first
/// or `limit` passes: a stack never goes on with a component that did not come up.
pub fn wait_up(component: &str, child: &mut Child, log: &Path, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        if ready() {
            let took = start.elapsed();
            eprintln!("stack: {component} up after {} ms", took.as_millis());
            return Ok(took);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{component} exited ({status}) before it came up; last lines of {}:\n{}", log.display(), log_tail(log)));
        }
        if start.elapsed() >= limit {
            return Err(format!(
                "{component} did not come up within {} ms; last lines of {}:\n{}",
                limit.as_millis(),
                log.display(),
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `check` every 50 ms until it holds or `limit` passes. Bounded by construction; the
/// measured time is printed with the caller's line, like [`time_until`]'s.
#[track_caller]
pub fn wait_for(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let caller = std::panic::Location::caller();
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            report(caller, Some(start.elapsed()), limit);
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    report(caller, None, limit);
    false
}

/// Waits until `check` holds and returns how long it took, or None after `limit`. Prints
/// the figure (or that the limit passed) with the caller's file and line, so every timing
/// bound in the tests shows what it measured.
#[track_caller]
pub fn time_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let caller = std::panic::Location::caller();
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            let took = start.elapsed();
            report(caller, Some(took), limit);
            return Some(took);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    report(caller, None, limit);
    None
}

fn report(caller: &std::panic::Location<'_>, took: Option<Duration>, limit: Duration) {
    match took {
        Some(took) => eprintln!("{}:{}: held after {} ms (limit {} ms)", caller.file(), caller.line(), took.as_millis(), limit.as_millis()),
        None => eprintln!("{}:{}: did not hold within {} ms", caller.file(), caller.line(), limit.as_millis()),
    }
}
