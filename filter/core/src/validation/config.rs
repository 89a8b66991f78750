//! One validated route as the registry and the filter config write it: data only, compiled
//! by [`super::RouteValidation`].

use serde::{Deserialize, Serialize};

/// One validated route as the registry and the filter config write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationConfig {
    /// An HTTP method, or `*` for any (GET covers HEAD, as for rules).
    #[serde(default = "any_method")]
    pub method: String,
    /// As a rule's path: literal segments and `{name}` params.
    pub path: String,
    /// The JSON body's schema; a request on this route must then send JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The query string as an object of its names (values typed by their schemas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<serde_json::Value>,
    /// The path params as an object of the pattern's `{name}`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// The largest body accepted (413 above it); 1 MiB when absent, and at most that.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
}

fn any_method() -> String {
    String::from("*")
}

