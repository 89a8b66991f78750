//! What a client certificate says about its holder: its SPIFFE-style URI SAN.
//!
//! `spiffe://stagedoor/node/<node-id>` is an Envoy, `spiffe://stagedoor/operator/<name>`
//! an operator; the control plane's own certificate carries `spiffe://stagedoor/control-plane`
//! (Envoy matches it, so no client certificate can pose as the control plane). A URI, not a
//! DNS name: a node id is not a host name, and a DNS SAN would also make the certificate
//! valid as a server for that name.

use x509_parser::extensions::GeneralName;

pub const URI_PREFIX: &str = "spiffe://stagedoor/";
pub const CONTROL_PLANE_URI: &str = "spiffe://stagedoor/control-plane";
const NODE: &str = "node/";
const OPERATOR: &str = "operator/";

/// Who a verified client certificate belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerIdentity {
    Envoy { node_id: String },
    Operator { name: String },
    /// Signed by our CA but carrying no Stagedoor identity (its subject, for the logs).
    Unrecognised { subject: String },
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerIdentity::Envoy { node_id } => write!(f, "envoy:{node_id}"),
            PeerIdentity::Operator { name } => write!(f, "operator:{name}"),
            PeerIdentity::Unrecognised { subject } => write!(f, "certificate:{subject}"),
        }
    }
}

pub fn node_uri(node_id: &str) -> String {
    format!("{URI_PREFIX}{NODE}{node_id}")
}

pub fn operator_uri(name: &str) -> String {
    format!("{URI_PREFIX}{OPERATOR}{name}")
}

/// The identity a URI SAN names, if it is one of ours.
pub fn identity_from_uri(uri: &str) -> Option<PeerIdentity> {
    let rest = uri.strip_prefix(URI_PREFIX)?;
    if let Some(node_id) = rest.strip_prefix(NODE).filter(|id| check_name(id).is_ok()) {
        return Some(PeerIdentity::Envoy { node_id: node_id.to_owned() });
    }
    let name = rest.strip_prefix(OPERATOR).filter(|n| check_name(n).is_ok())?;
    Some(PeerIdentity::Operator { name: name.to_owned() })
}

/// The identity of a DER certificate the TLS layer already verified against the CA.
/// A certificate with two Stagedoor URIs is refused as unrecognised: it would be two callers.
pub fn identity_of(der: &[u8]) -> PeerIdentity {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return PeerIdentity::Unrecognised { subject: String::from("(unparsable)") };
    };
    let subject = cert.subject().to_string();
    let uris: Vec<PeerIdentity> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::URI(uri) => identity_from_uri(uri),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    match <[PeerIdentity; 1]>::try_from(uris) {
        Ok([identity]) => identity,
        Err(_) => PeerIdentity::Unrecognised { subject },
    }
}

/// Node ids and operator names become file names and URI path segments: letters, digits,
/// `.`, `_` and `-`, 1 to 128 of them, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?}: a node id or operator name is 1-128 letters, digits, '.', '_' or '-', not starting with '.'"))
    }
}
