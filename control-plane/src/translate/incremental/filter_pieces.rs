//! The filter config's ECDS resource: reused, or its JSON joined from the services' parts
//! and checked by the filter's own compiler (on the new parts alone when nothing reads
//! across services).

use std::sync::Arc;

use imbl::OrdMap;
use stagedoor_filter_core::config::{FilterConfig, RevocationConfig};

use super::super::filter_config::{self, ServicePart};
use super::super::{check, extension_config, names, to_any, TranslateError, TranslateOptions};
use super::{Changed, Encoded, OwnResources, ServicePieces};
use crate::registry::Registry;

/// The filter config's ECDS resource, and what it was made from.
#[derive(Debug)]
pub(super) struct FilterPieces {
    pub(super) globals: FilterConfig,
    pub(super) wasm_path: String,
    pub(super) encoded: Arc<Encoded>,
    pub(super) type_url: String,
}

/// The filter config, checked by the filter's own compiler, unless nothing it is made of
/// changed since the cached one was. Only the services' parts that changed are compiled
/// (the others are checked against their prefixes), and the config's JSON is the parts'
/// joined.
pub(super) fn filter_pieces(
    registry: &Registry,
    options: &TranslateOptions,
    services: &OrdMap<String, Arc<ServicePieces>>,
    own: &mut OwnResources,
    changed: &Changed,
    cached: Option<&Arc<FilterPieces>>,
) -> Result<Arc<FilterPieces>, TranslateError> {
    let globals = filter_config::global_filter_config(registry, revocation(options));
    let same_globals = cached.is_some_and(|c| c.globals == globals);
    if let Some(cached) = cached {
        if !changed.filter && same_globals && cached.wasm_path == extension_config::module_path(options, &globals.auth) {
            return Ok(cached.clone());
        }
    }
    // Check before publish: the control plane refuses what the filter would, and keeps
    // the last good snapshot.
    if !(same_globals && new_parts_compile(registry, &globals, &own.prefix_counts, changed)) {
        let parts: Vec<&ServicePart> = services.values().map(|p| &*p.filter).collect();
        let vouched = changed.compiled_before();
        let compiled_before = |i: usize| parts.get(i).is_some_and(|p| vouched(p));
        check::check_parts(registry, &globals, parts.iter().map(|p| &p.config).collect(), compiled_before)?;
    }
    let filter_config::ConfigJson { json, version } = filter_config::config_json(&globals, &mut own.service_parts);
    let module = extension_config::module_path(options, &globals.auth).to_owned();
    let extension = extension_config::stagedoor_filter_config(&module, json);
    let type_url = extension.typed_config.as_ref().map(|a| a.type_url.clone()).unwrap_or_default();
    // The resource hashed with its config's version in place of the config: what tells
    // its bytes apart (the version is a hash of the config), without reading megabytes.
    let hash = crate::hash::short_hash(&to_any(&extension_config::stagedoor_filter_config(&module, version)).value);
    let encoded = Arc::new(Encoded { any: Arc::new(to_any(&extension)), hash });
    Ok(Arc::new(FilterPieces { globals, wasm_path: module, encoded, type_url }))
}

/// Whether the filter would compile the config made of the cached one's globals (`globals`,
/// unchanged) and its services with `changed`'s new parts in place, judged from the new
/// parts alone: the cached config compiled, and nothing of the other services' checks
/// depends on another service's part but their prefixes (each listed once:
/// `prefix_counts`) and the globals' composite and cached routes (none here). `false`
/// says only that the whole check must decide (and name the first error, in the
/// services' order), so a refusal is refused with the same error as ever.
fn new_parts_compile(registry: &Registry, globals: &FilterConfig, prefix_counts: &OrdMap<String, usize>, changed: &Changed) -> bool {
    if changed.no_part_cached || !globals.composites.is_empty() || !globals.response_cache.is_empty() {
        return false;
    }
    let new = &changed.new_parts;
    let own_prefixes = new.iter().flat_map(|p| &p.config.prefixes).all(|prefix| prefix_counts.get(prefix) == Some(&1));
    own_prefixes && check::check_parts(registry, globals, new.iter().map(|p| &p.config).collect(), |_| false).is_ok()
}

/// The revocation feed the filter polls, when the control plane's HTTP side is known.
pub fn revocation(options: &TranslateOptions) -> Option<RevocationConfig> {
    options.control_plane_http.as_ref().map(|_| RevocationConfig {
        cluster: names::CONTROL_PLANE_CLUSTER.to_owned(),
        authority: String::from("stagedoor-control-plane"),
        path: String::from(names::REVOCATION_FEED_PATH),
        poll_interval_ms: stagedoor_filter_core::config::DEFAULT_POLL_INTERVAL_MS,
        wait_ms: stagedoor_filter_core::feed_poll::DEFAULT_WAIT_MS,
    })
}
