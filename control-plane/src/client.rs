//! How the CLI reaches the stagedoor.v1 API: over TLS with the operator certificate from
//! the credential directory (`.stagedoor/` by default), or a bearer token
//! (`--api-token`/`STAGEDOOR_API_TOKEN`) with only the CA; plain only for an `http://`
//! server (a control plane run with `--insecure`).

use std::path::PathBuf;

use anyhow::Context;
use stagedoor_proto::v1::control_plane_client::ControlPlaneClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::tls::files::CredentialDir;

#[derive(clap::Args, Clone, Debug)]
pub struct ApiArgs {
    /// The control plane's gRPC address (`https://`; `http://` only for `serve --insecure`).
    #[arg(long, env = "STAGEDOOR_SERVER", default_value = "https://127.0.0.1:18000")]
    pub server: String,
    /// Where the CA and the operator certificate are (`stagedoor certs init`).
    #[arg(long, env = "STAGEDOOR_TLS_DIR", default_value = crate::tls::files::DEFAULT_DIR)]
    pub tls_dir: PathBuf,
    /// A bearer token from the control plane's --api-tokens file, instead of the operator
    /// certificate.
    #[arg(long, env = "STAGEDOOR_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
}

/// Adds the bearer token, when there is one, to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type ApiClient = ControlPlaneClient<InterceptedService<Channel, Bearer>>;

pub async fn connect(args: &ApiArgs) -> anyhow::Result<ApiClient> {
    let (channel, bearer) = channel(args).await?;
    Ok(ControlPlaneClient::with_interceptor(channel, bearer))
}

/// The standard CSDS service on the same port, with the same credentials.
pub async fn connect_csds(
    args: &ApiArgs,
) -> anyhow::Result<envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient<InterceptedService<Channel, Bearer>>> {
    use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_client::ClientStatusDiscoveryServiceClient;
    let (channel, bearer) = channel(args).await?;
    Ok(ClientStatusDiscoveryServiceClient::with_interceptor(channel, bearer))
}

async fn channel(args: &ApiArgs) -> anyhow::Result<(Channel, Bearer)> {
    let bearer = match &args.api_token {
        Some(token) => Some(format!("Bearer {token}").parse().context("the API token is not a valid header value")?),
        None => None,
    };
    let mut endpoint = Endpoint::from_shared(args.server.clone()).with_context(|| format!("{}: not a URL", args.server))?;
    if args.server.starts_with("https://") {
        endpoint = endpoint.tls_config(tls(&CredentialDir::new(&args.tls_dir), bearer.is_some())?)?;
    }
    let channel = endpoint.connect().await.with_context(|| format!("cannot reach the control plane at {}", args.server))?;
    Ok((channel, Bearer(bearer)))
}

fn tls(dir: &CredentialDir, has_token: bool) -> anyhow::Result<ClientTlsConfig> {
    let hint = "run `stagedoor certs init` or give --tls-dir";
    if has_token {
        let ca = dir.ca().cert;
        let pem = std::fs::read_to_string(&ca).with_context(|| format!("{}: the CA ({hint})", ca.display()))?;
        return Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)));
    }
    let credentials = crate::tls::load::operator(dir).with_context(|| format!("the operator credentials ({hint}, or give --api-token)"))?;
    Ok(crate::tls::load::grpc_client(&credentials))
}
