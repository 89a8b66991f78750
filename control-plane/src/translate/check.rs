//! The filter's own compiler on the config translation pushes: the one place the control
//! plane compiles a filter config. The registry's rules (`registry::Registry::parse`) leave
//! keys, rules, roles, public paths and header policies to it.

use std::path::Path;

use stagedoor_filter_core::config::{FilterConfig, RevocationConfig, ServiceConfig};
use stagedoor_filter_core::CompileError;

use super::filter_config::filter_config;
use crate::registry::{Registry, RegistryError};

/// The filter compiler's refusal, with its field named as the registry file names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{item}: {field}: {reason}")]
pub struct FilterConfigRefused {
    /// `service "NAME"` for a service's part, else the section (`auth.keys[0]`, `roles`).
    pub item: String,
    pub service: Option<String>,
    pub field: String,
    pub reason: String,
}

impl FilterConfigRefused {
    /// As a registry error naming `file`, for callers that validate a file without
    /// translating it (`stagedoor validate`, `filter-config`, `token`).
    pub fn in_file(self, file: &str) -> RegistryError {
        let Self { item, service, field, reason } = self;
        let error = match service {
            Some(service) => RegistryError::Invalid { file: file.to_owned(), service, field, reason },
            None => RegistryError::Field { file: file.to_owned(), item, field, reason },
        };
        error.bounded()
    }
}

/// Builds the filter config for `registry` and runs the filter's `Policy::compile` on it:
/// the filter would refuse in `on_configure` whatever this refuses, so a refused config
/// never reaches an Envoy.
pub fn check(registry: &Registry, revocation: Option<RevocationConfig>) -> Result<FilterConfig, FilterConfigRefused> {
    let config = filter_config(registry, revocation);
    stagedoor_filter_core::Policy::compile(&config).map_err(|e| refusal(registry, e))?;
    Ok(config)
}

/// [`check`] of the config made of `globals` (what [`super::filter_config::global_filter_config`]
/// makes) and the registry's services' parts (`parts`, in the registry's order), compiling
/// only the parts `compiled_before` does not vouch for (`Policy::check`): what an edit of a
/// few services costs.
pub fn check_parts<'a>(
    registry: &Registry,
    globals: &'a FilterConfig,
    mut parts: Vec<&'a ServiceConfig>,
    compiled_before: impl Fn(usize) -> bool,
) -> Result<(), FilterConfigRefused> {
    let own = parts.len();
    parts.extend(&globals.services);
    stagedoor_filter_core::Policy::check(globals, &parts, |i| i < own && compiled_before(i)).map_err(|e| refusal(registry, e))
}

/// Reads a registry file and checks it whole: the registry's rules, then [`check`].
pub fn load_checked(path: &Path) -> Result<Registry, RegistryError> {
    let registry = crate::registry::load(path)?;
    check(&registry, None).map_err(|e| e.in_file(&path.display().to_string()))?;
    Ok(registry)
}

fn refusal(registry: &Registry, error: CompileError) -> FilterConfigRefused {
    let CompileError { item, service, field, reason } = error;
    let item = registry_key_item(registry, &item).unwrap_or(item);
    let field = match &service {
        Some(service) => registry_field(registry, service, &field),
        None => field,
    };
    FilterConfigRefused { item, service, field, reason }
}

/// The file's name for the filter's `auth.keys[i]`: keys with `jwks_uri` are not in the
/// filter's list, and keys fetched from one follow the registry's own.
fn registry_key_item(registry: &Registry, item: &str) -> Option<String> {
    let rest = item.strip_prefix("auth.keys[")?;
    let (index, tail) = rest.split_once(']')?;
    let index = index.parse::<usize>().ok()?;
    let place = registry.key_index_in_file(index)?;
    let fetched = if registry.keys.get(index).is_some_and(|k| k.issuer.is_some()) { " (fetched from its jwks_uri)" } else { "" };
    Some(format!("auth.keys[{place}]{tail}{fetched}"))
}

/// The registry's name for a field of the filter's service config: the filter's
/// `prefixes[i]` is the i-th route's prefix in the file.
fn registry_field(registry: &Registry, service: &str, field: &str) -> String {
    let route = field.strip_prefix("prefixes[").and_then(|rest| rest.strip_suffix(']')).and_then(|i| i.parse::<usize>().ok());
    match route {
        Some(i) if registry.services.get(service).is_some_and(|s| i < s.routes.len()) => format!("routes[{i}].prefix"),
        _ => field.to_owned(),
    }
}
