//! The caller and what it may do.

use super::tokens::{ApiTokens, Scope, TokenGrant};
use crate::tls::identity::PeerIdentity;

/// Who is calling, as far as the credentials show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The operator client certificate: every scope.
    Operator { name: String },
    /// A bearer token from the tokens file.
    Token(TokenGrant),
    /// An Envoy's certificate: xDS only, no API scope.
    Envoy { node_id: String },
    /// The control plane runs with `--insecure` and no tokens file: everyone is trusted,
    /// as before TLS (the startup warning says so).
    Insecure,
    /// No usable credentials; the reason, for the refusal.
    Anonymous { reason: &'static str },
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Operator { name } => write!(f, "operator:{name}"),
            Caller::Token(grant) => write!(f, "token:{}", grant.name),
            Caller::Envoy { node_id } => write!(f, "envoy:{node_id}"),
            Caller::Insecure => f.write_str("insecure:anyone"),
            Caller::Anonymous { .. } => f.write_str("anonymous"),
        }
    }
}

/// What a call does, with what authorization needs to know about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// GetRegistry, ListEnvoys, /status.
    Read,
    /// ApplyRegistry (a dry run too: it reveals what the control plane would accept).
    Apply,
    RevokeToken,
    /// RegisterInstance and DeregisterInstance, for one service.
    Register { service: &'a str },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unauthenticated(String),
    PermissionDenied(String),
}

impl From<Refusal> for tonic::Status {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated(m) => tonic::Status::unauthenticated(m),
            Refusal::PermissionDenied(m) => tonic::Status::permission_denied(m),
        }
    }
}

/// The caller from its verified certificate (if any) and its `authorization` header (if
/// any). A certificate wins over a token; a token that is presented but unknown is an
/// anonymous caller, never a fallback to something else.
pub fn authenticate(certificate: Option<&PeerIdentity>, authorization: Option<&str>, tokens: &ApiTokens, insecure: bool) -> Caller {
    match certificate {
        Some(PeerIdentity::Operator { name }) => return Caller::Operator { name: name.clone() },
        Some(PeerIdentity::Envoy { node_id }) => return Caller::Envoy { node_id: node_id.clone() },
        Some(PeerIdentity::Unrecognised { .. }) | None => {}
    }
    match authorization {
        Some(header) => match header.strip_prefix("Bearer ").map(str::trim) {
            Some(token) => match tokens.find(token) {
                Some(grant) => Caller::Token(grant.clone()),
                None => Caller::Anonymous { reason: "unknown bearer token" },
            },
            None => Caller::Anonymous { reason: "the authorization header is not `Bearer <token>`" },
        },
        None if insecure && tokens.is_empty() => Caller::Insecure,
        None => Caller::Anonymous { reason: "no client certificate and no bearer token" },
    }
}

pub fn authorize(caller: &Caller, action: Action<'_>) -> Result<(), Refusal> {
    let grant = match caller {
        Caller::Operator { .. } | Caller::Insecure => return Ok(()),
        Caller::Anonymous { reason } => return Err(Refusal::Unauthenticated(format!("{reason}: use the operator certificate or an API token"))),
        Caller::Envoy { node_id } => {
            return Err(Refusal::PermissionDenied(format!("envoy {node_id}: an Envoy certificate has no API scope")))
        }
        Caller::Token(grant) => grant,
    };
    let scope = match action {
        Action::Read => Scope::Read,
        Action::Apply => Scope::Apply,
        Action::RevokeToken => Scope::Revoke,
        Action::Register { .. } => Scope::Register,
    };
    if !grant.scopes.contains(&scope) {
        return Err(Refusal::PermissionDenied(format!("token {}: no {} scope", grant.name, scope.name())));
    }
    if let (Action::Register { service }, Some(services)) = (action, &grant.services) {
        if !services.contains(service) {
            return Err(Refusal::PermissionDenied(format!("token {}: may not register instances of {service}", grant.name)));
        }
    }
    Ok(())
}
