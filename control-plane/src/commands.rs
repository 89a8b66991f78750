//! The bodies of `stagedoor`'s subcommands other than `serve`: each prints what it did and
//! returns an error for the binary to print as one line with a non-zero exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::ApiArgs;
use crate::publish::PublishError;
use crate::registry;
use crate::tls::files::CredentialDir;
use crate::tls::generate;
use crate::translate::{TranslateError, TranslateOptions};

/// `stagedoor validate --envoy`: where Envoy is and the filter module it loads.
#[derive(Debug, Clone)]
pub struct EnvoyValidation {
    /// None: `envoy` on PATH.
    pub envoy_bin: Option<PathBuf>,
    pub wasm: PathBuf,
}

/// `stagedoor validate`: the registry file and the snapshot it makes, as `serve` would;
/// with `envoy`, that snapshot through Envoy's own `--mode validate` too (envoy_check/).
pub fn validate(file: &Path, envoy: Option<&EnvoyValidation>, limits: crate::registry::limits::Limits) -> anyhow::Result<()> {
    let registry = registry::load(file)?;
    let wasm_path = match envoy {
        Some(e) => std::fs::canonicalize(&e.wasm).unwrap_or_else(|_| e.wasm.clone()).display().to_string(),
        None => String::from("/stagedoor.wasm"),
    };
    let options = TranslateOptions {
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        wasm_path: wasm_path.clone(),
        hmac_wasm_path: None,
        control_plane_http: Some((String::from("127.0.0.1"), 18080)),
        control_plane_tls: true,
        rate_limit_service: None,
        limits,
    };
    let snapshot = crate::publish::build_snapshot(&registry, &registry::LiveInstances::new(), &[], &options, None).map_err(|e| match e {
        // The filter compiler's refusal reads as the registry's other errors, naming the file.
        PublishError::Translate(TranslateError::FilterConfig(refused)) => refused.in_file(&file.display().to_string()).into(),
        PublishError::OverLimit(over) => anyhow::anyhow!("{}: {over}", file.display()),
        other => anyhow::Error::from(other),
    })?;
    let by_envoy = match envoy {
        Some(e) => {
            let bin = crate::envoy_check::find_envoy(e.envoy_bin.as_deref())?;
            // The decoded form of what the snapshot carries (translate() equals the
            // incremental translation: translate/incremental_tests.rs).
            let resources = crate::translate::translate(&registry, &registry::LiveInstances::new(), &[], &options)?;
            let said = crate::envoy_check::check(&bin, &resources, &snapshot.origins, &wasm_path)
                .map_err(|refused| anyhow::anyhow!("{}: {refused}", file.display()))?;
            format!("; {} --mode validate: {said}", bin.display())
        }
        None => String::new(),
    };
    println!("{}: valid ({} services, version {}){by_envoy}", file.display(), registry.services.len(), registry.version);
    Ok(())
}

/// `stagedoor filter-config`: the filter config (JSON) the control plane would push.
pub fn print_filter_config(file: &Path) -> anyhow::Result<()> {
    let registry = registry::load(file)?;
    let config = crate::translate::check(&registry, None).map_err(|e| e.in_file(&file.display().to_string()))?;
    println!("{}", config.to_json());
    Ok(())
}

/// `stagedoor token`: a development token signed with the registry's dev key.
pub fn mint_token(registry_file: &Path, request: &crate::token::MintRequest) -> anyhow::Result<()> {
    let registry = crate::translate::load_checked(registry_file)?;
    let now = (crate::clock::unix_ms() / 1000) as i64;
    println!("{}", crate::token::mint(&registry, request, now)?);
    Ok(())
}

/// `stagedoor token --refresh`: a new family's first refresh token, signed with the
/// registry's `token_endpoint.refresh_key`.
pub fn mint_refresh_token(registry_file: &Path, sub: &str, tenant: &str, role: &str) -> anyhow::Result<()> {
    let registry = crate::translate::load_checked(registry_file)?;
    let endpoint = registry
        .token_endpoint
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{}: the registry has no token_endpoint (and so no refresh key)", registry_file.display()))?;
    let signer = crate::token_endpoint::claims::Signer { registry: &registry, endpoint };
    let now = (crate::clock::unix_ms() / 1000) as i64;
    let claims = signer.first_refresh_claims(&crate::token::new_jti(), sub, tenant, Some(role), now);
    println!("{}", signer.sign_refresh(&claims)?);
    Ok(())
}

/// The instance `stagedoor register` and `deregister` name.
pub struct InstanceTarget {
    pub service: String,
    pub address: std::net::IpAddr,
    /// Wider than a port so that a wrong number is refused with the registry's message.
    pub port: u32,
    pub redis: String,
}

/// `stagedoor register`: checked against the registry's rules before Redis is touched;
/// with `heartbeat`, kept alive until a stop signal, then deregistered.
pub async fn register(instance: &InstanceTarget, registry_file: &Path, ttl: Duration, heartbeat: bool) -> anyhow::Result<()> {
    let registry = registry::load(registry_file)?;
    let live = registry::live::check_instance(Some(&registry), &instance.service, &instance.address.to_string(), instance.port)?;
    let ttl = registry::live::check_ttl(ttl)?;
    if heartbeat {
        let target = crate::discovery::redis_source::Instance {
            service: live.service.clone(),
            address: live.address.clone(),
            port: live.port,
        };
        let signal = crate::discovery::heartbeat::run(&instance.redis, &target, ttl).await?;
        println!("deregistered {}:{}:{} ({signal})", live.service, live.address, live.port);
        return Ok(());
    }
    crate::discovery::redis_source::register(&instance.redis, &live.service, &live.address, live.port, ttl).await?;
    println!("registered {}:{}:{}", live.service, live.address, live.port);
    Ok(())
}

/// `stagedoor deregister`.
pub async fn deregister(instance: &InstanceTarget) -> anyhow::Result<()> {
    let live = registry::live::check_instance(None, &instance.service, &instance.address.to_string(), instance.port)?;
    crate::discovery::redis_source::deregister(&instance.redis, &live.service, &live.address, live.port).await?;
    println!("deregistered {}:{}:{}", live.service, live.address, live.port);
    Ok(())
}

/// `stagedoor certs init`.
pub fn certs_init(dir: PathBuf, request: &generate::InitRequest<'_>) -> anyhow::Result<()> {
    print_lines(generate::init(&CredentialDir::new(dir), request)?);
    Ok(())
}

/// `stagedoor certs envoy`.
pub fn certs_envoy(dir: PathBuf, node_id: &str, force: bool) -> anyhow::Result<()> {
    print_lines([generate::envoy(&CredentialDir::new(dir), node_id, force)?]);
    Ok(())
}

fn print_lines<T: std::fmt::Display>(lines: impl IntoIterator<Item = T>) {
    for line in lines {
        println!("{line}");
    }
}

/// The control plane's refusal as it wrote it (tonic's Display quotes and escapes it).
fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the control plane refused ({:?}): {}", status.code(), status.message())
}

/// `stagedoor token revoke`: a token or a bare jti, on a running control plane's list.
pub async fn revoke(server: &ApiArgs, token: String, jti: String) -> anyhow::Result<()> {
    let mut client = crate::client::connect(server).await?;
    let reply = client
        .revoke_token(stagedoor_proto::v1::RevokeTokenRequest { token, jti, expires_at_unix: 0 })
        .await
        .map_err(refused)?
        .into_inner();
    use stagedoor_proto::v1::Persistence;
    let persistence = match reply.persistence() {
        Persistence::Stored => String::from("stored in redis"),
        Persistence::Queued => format!("queued: {}; written back when it returns", reply.detail),
        Persistence::MemoryOnly => String::from("in memory only (no --redis): lost when the control plane restarts"),
        Persistence::Unspecified => String::from("persistence not reported"),
    };
    println!("revoked {} (cursor {}): {persistence}", reply.key, reply.cursor);
    Ok(())
}

/// `stagedoor cache purge`: drops cached answers in every Envoy (by route, tenant, surrogate key).
pub async fn purge(server: &ApiArgs, route: String, tenant: String, surrogate_key: String) -> anyhow::Result<()> {
    let mut client = crate::client::connect(server).await?;
    let reply = client
        .purge_cache(stagedoor_proto::v1::PurgeCacheRequest { route, tenant, surrogate_key })
        .await
        .map_err(refused)?
        .into_inner();
    println!("purged: {} (cursor {})", reply.key, reply.cursor);
    Ok(())
}

/// `stagedoor apply`: the diff against the running control plane, then the push.
pub async fn apply(file: &Path, server: &ApiArgs, dry_run: bool) -> anyhow::Result<()> {
    use stagedoor_proto::v1::{ApplyRegistryRequest, GetRegistryRequest};
    let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let proposed = registry::Registry::parse(&file.display().to_string(), &text)?;
    // The served registry comes back re-serialized (block YAML), which can be larger than
    // the compact file that loaded; the request side is bounded by the registry's limit.
    let mut client = crate::client::connect(server).await?.max_decoding_message_size(4 * registry::input::MAX_REGISTRY_BYTES);
    let current = client.get_registry(GetRegistryRequest {}).await.map_err(refused)?.into_inner();
    // The served registry comes back with literal secrets redacted; compare services and
    // sections, and let the control plane judge the rest.
    // Placeholders stand in for the redacted and environment secrets: the diff compares
    // services and where secrets come from, never their values.
    // Each a different one: the registry refuses a refresh key equal to an access key.
    let placeholder = "x".repeat(32);
    let served_yaml = distinct_placeholders(&current.yaml, &placeholder);
    let served = registry::Registry::parse_with_env("served registry", &served_yaml, &|name| Some(format!("{placeholder}-{name}")))?;
    let changes = crate::diff::diff(&served, &proposed);
    print!("{}", crate::diff::render(&changes, &crate::diff::global_changes(&served, &proposed)));
    // Based on the version just read: an apply through another replica in between is
    // refused (FAILED_PRECONDITION, both versions named), never silently overwritten.
    let base_version = (current.store_version > 0).then_some(current.store_version);
    let reply = client.apply_registry(ApplyRegistryRequest { yaml: text, dry_run, base_version }).await.map_err(refused)?.into_inner();
    let in_store = if reply.store_version > 0 { format!(" (version {} in redis)", reply.store_version) } else { String::new() };
    if dry_run {
        println!("dry run: nothing pushed (registry {} -> {})", reply.previous_version, reply.version);
    } else if reply.changed {
        println!("applied: registry {} -> {}, snapshot {}{in_store}", reply.previous_version, reply.version, reply.snapshot_version);
    } else {
        println!("nothing to push: Envoys already run registry {}", reply.version);
    }
    Ok(())
}

/// `stagedoor history`: the versions of the registry Redis keeps, newest first.
pub async fn history(server: &ApiArgs) -> anyhow::Result<()> {
    let mut client = crate::client::connect(server).await?;
    let reply = client.registry_history(stagedoor_proto::v1::RegistryHistoryRequest {}).await.map_err(refused)?.into_inner();
    println!("{:>7}  {:<16}  {:<24}  applied by", "version", "registry", "applied at (UTC)");
    for v in reply.versions {
        println!("{:>7}  {:<16}  {:<24}  {}", v.version, v.hash, utc(v.applied_at_unix_ms), v.applied_by);
    }
    Ok(())
}

/// `stagedoor rollback --to V`: a new version with V's content, based on the current one.
pub async fn rollback(server: &ApiArgs, to_version: u64) -> anyhow::Result<()> {
    let mut client = crate::client::connect(server).await?;
    let request = stagedoor_proto::v1::RollbackRegistryRequest { to_version, base_version: None };
    let reply = client.rollback_registry(request).await.map_err(refused)?.into_inner();
    if reply.changed {
        println!("rolled back to version {to_version}'s content: registry {} -> {} (version {} in redis)", reply.previous_version, reply.version, reply.store_version);
    } else {
        println!("nothing to push: version {to_version}'s content is already served (version {} in redis)", reply.store_version);
    }
    Ok(())
}

/// `2026-12-01 17:45:03` from unix milliseconds (no time-zone database needed for UTC).
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Every redacted secret in `yaml` replaced by `placeholder` and its position: distinct
/// stand-ins, so rules that compare secrets judge the served registry as they did the file.
fn distinct_placeholders(yaml: &str, placeholder: &str) -> String {
    yaml.split(registry::REDACTED)
        .enumerate()
        .map(|(i, part)| if i == 0 { part.to_owned() } else { format!("{placeholder}-{i}{part}") })
        .collect()
}

/// What `stagedoor status` shows and whether it waits.
#[derive(Debug, Clone)]
pub struct StatusRequest {
    /// One Envoy's detail instead of the table.
    pub node: Option<String>,
    /// With `node`: that Envoy's admin base URL, whose /config_dump is diffed.
    pub config_dump: Option<String>,
    pub json: bool,
    /// Wait until every connected Envoy runs the current snapshot; fail on a NACK or after
    /// `timeout`.
    pub wait_synced: Option<Duration>,
}

/// `stagedoor status`: the convergence ledger of every Envoy (see status_table.rs).
pub async fn status(server: &ApiArgs, request: &StatusRequest) -> anyhow::Result<()> {
    use crate::status_table::{convergence, Convergence};
    let mut client = crate::client::connect(server).await?;
    let started = std::time::Instant::now();
    let reply = loop {
        let reply = client.list_envoys(stagedoor_proto::v1::ListEnvoysRequest {}).await.map_err(refused)?.into_inner();
        let Some(timeout) = request.wait_synced else { break reply };
        match convergence(&reply) {
            Convergence::Synced => break reply,
            Convergence::Nacked(why) => {
                print_status(&reply, request)?;
                anyhow::bail!("not synced: NACKED ({})", why.join("; "));
            }
            Convergence::Waiting(why) if started.elapsed() >= timeout => {
                print_status(&reply, request)?;
                anyhow::bail!("not synced after {timeout:?}: {}", why.join("; "));
            }
            Convergence::Waiting(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    print_status(&reply, request)?;
    if let (Some(node), Some(admin)) = (&request.node, &request.config_dump) {
        print_config_dump_diff(server, &reply, node, admin).await?;
    }
    Ok(())
}

/// The differences between what `node` runs (its admin /config_dump) and what it ACKed.
async fn print_config_dump_diff(server: &ApiArgs, reply: &stagedoor_proto::v1::ListEnvoysResponse, node: &str, admin: &str) -> anyhow::Result<()> {
    use envoy_types::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, NodeMatcher, StringMatcher};
    use envoy_types::pb::envoy::service::status::v3::ClientStatusRequest;
    let url = format!("{}/config_dump", admin.trim_end_matches('/'));
    let dump: serde_json::Value = reqwest::Client::new()
        .get(&url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?
        .json()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: not a config dump: {e}"))?;
    let matcher = NodeMatcher {
        node_id: Some(StringMatcher { match_pattern: Some(MatchPattern::Exact(node.to_owned())), ..Default::default() }),
        ..Default::default()
    };
    let request = ClientStatusRequest { node_matchers: vec![matcher], exclude_resource_contents: true, ..Default::default() };
    let csds = crate::client::connect_csds(server).await?.fetch_client_status(request).await.map_err(refused)?.into_inner();
    let config = csds.config.first().ok_or_else(|| anyhow::anyhow!("CSDS has no connected Envoy with node id {node:?}"))?;
    let envoy = reply.envoys.iter().find(|e| e.node_id == node);
    let delta = envoy.is_some_and(|e| e.protocol == "delta");
    let mut ever_acked = crate::config_dump_diff::AckedVersions::new();
    if let Some(e) = envoy {
        for t in &e.types {
            ever_acked.entry(t.r#type.clone()).or_default().insert(t.acked_version.clone());
        }
        for push in e.history.iter().filter(|p| p.outcome == "ACKED") {
            ever_acked.entry(push.r#type.clone()).or_default().insert(push.version.clone());
        }
    }
    let versions = (!delta).then_some(&ever_acked);
    let lines = crate::config_dump_diff::diff(&crate::config_dump_diff::acked(config), &crate::config_dump_diff::running(&dump), versions);
    if !lines.is_empty() {
        println!("{node} runs otherwise than it ACKed ({url}):");
        print_lines(lines.iter().map(|l| format!("- {l}")));
    }
    Ok(())
}

fn print_status(reply: &stagedoor_proto::v1::ListEnvoysResponse, request: &StatusRequest) -> anyhow::Result<()> {
    use crate::status_table::{envoy_json, node_detail, reply_json, table};
    let Some(node) = &request.node else {
        if request.json {
            println!("{}", serde_json::to_string_pretty(&reply_json(reply))?);
        } else {
            print!("{}", table(reply));
            print_shadow_counts(reply);
        }
        return Ok(());
    };
    let envoy = reply
        .envoys
        .iter()
        .find(|e| &e.node_id == node)
        .ok_or_else(|| anyhow::anyhow!("no Envoy with node id {node:?} (connected: {})", reply.envoys.len()))?;
    if request.json {
        println!("{}", serde_json::to_string_pretty(&envoy_json(envoy))?);
    } else {
        print!("{}", node_detail(envoy, &reply.snapshot_version));
    }
    Ok(())
}

fn print_shadow_counts(reply: &stagedoor_proto::v1::ListEnvoysResponse) {
    if reply.rbac_shadow.is_empty() {
        return;
    }
    println!("rbac shadow (requests decided otherwise in shadow, all Envoys, since the control plane started):");
    for count in &reply.rbac_shadow {
        println!("- {}: would deny {}, would allow {}", count.label, count.denied, count.allowed);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn history_times_read_as_utc() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_000_000_000), "2026-11-18 11:06:40");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[test]
    fn every_redacted_secret_gets_its_own_placeholder() {
        let yaml = format!("a: {r}\nb: {r}\n", r = crate::registry::REDACTED);
        assert_eq!(super::distinct_placeholders(&yaml, "x"), "a: x-1\nb: x-2\n");
        assert_eq!(super::distinct_placeholders("none", "x"), "none");
    }

    #[test]
    fn a_served_registry_with_a_refresh_key_reads_back_for_apply() {
        let yaml = format!(
            "{}token_endpoint:\n  instance: {{ address: 127.0.0.1, port: 1 }}\n  refresh_key: {{ kid: r, secret: unit-test-refresh-secret-refresh-0123456 }}\nservices: []\n",
            crate::test_support::AUTH
        );
        let served = crate::api::registry_yaml(&crate::registry::Registry::parse("r.yaml", &yaml).unwrap());
        let placeholder = "x".repeat(32);
        let env = |name: &str| Some(format!("{placeholder}-{name}"));
        let read_back = crate::registry::Registry::parse_with_env("served", &super::distinct_placeholders(&served, &placeholder), &env);
        assert!(read_back.is_ok(), "{read_back:?}");
        let one_for_all = served.replace(crate::registry::REDACTED, &placeholder);
        let refused = crate::registry::Registry::parse_with_env("served", &one_for_all, &env).unwrap_err().to_string();
        assert!(refused.contains("is also an access-token key's secret"), "why one placeholder cannot do: {refused}");
    }
}
