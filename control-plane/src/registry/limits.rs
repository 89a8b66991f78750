//! How much one registry may hold: services, route prefixes per service, instances per
//! service. A registry over a limit is refused with the limit named (at apply, at file load,
//! at `stagedoor validate`), not accepted into a snapshot Envoy then chokes on; live
//! instances over a service's limit are left out of the snapshot, with a log line and a
//! metric. The defaults come from what Envoy 1.40 itself costs at that size
//! (bench/envoy_scale.py, bench/results-scale.md); `serve` flags change them. The text's
//! size is bounded apart, before parsing (input::MAX_REGISTRY_BYTES).

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::{InstanceSpec, LiveInstances, Registry, ServiceSpec, Services};

/// The limits a registry and its live instances are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub services: usize,
    /// Route prefixes (`routes:`) of one service.
    pub routes_per_service: usize,
    /// Static and live instances of one service together.
    pub instances_per_service: usize,
}

impl Limits {
    /// Envoy 1.40 with `--concurrency 1` holds 10,000 services (one cluster, one route
    /// each) in 722 MiB, about 62 KiB a service, linear from 1,000 up
    /// (bench/results-envoy-scale.md); the first ACK of it all took 26 s.
    pub const DEFAULT_SERVICES: usize = 10_000;
    /// Every prefix is a route and a filter prefix entry: about 23 KiB of Envoy each, so 50
    /// is 1.1 MiB a service. The total is bounded by the text's 4,000,000 bytes.
    pub const DEFAULT_ROUTES_PER_SERVICE: usize = 50;
    /// Every instance is a host Envoy keeps (and health-checks) per worker. Not measured
    /// yet: the cost per host is Envoy's, not ours to guess at; 1,000 is a service far
    /// larger than any in the platform.
    pub const DEFAULT_INSTANCES_PER_SERVICE: usize = 1_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            services: Self::DEFAULT_SERVICES,
            routes_per_service: Self::DEFAULT_ROUTES_PER_SERVICE,
            instances_per_service: Self::DEFAULT_INSTANCES_PER_SERVICE,
        }
    }
}

/// A registry over one of the limits: the message names the limit and the flag that sets it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    #[error("services: {count} is over the limit of {limit} services (serve --max-services)")]
    Services { count: usize, limit: usize },
    #[error("service \"{service}\": routes: {count} prefixes is over the limit of {limit} per service (serve --max-routes-per-service)")]
    Routes { service: String, count: usize, limit: usize },
    #[error("service \"{service}\": instances: {count} is over the limit of {limit} per service (serve --max-instances-per-service)")]
    Instances { service: String, count: usize, limit: usize },
}

/// A service whose live instances were not all served: `served` of `found` (static included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capped {
    pub service: String,
    pub found: usize,
    pub served: usize,
}

impl Limits {
    /// The registry's own content against the limits: the first one it is over.
    pub fn check(&self, registry: &Registry) -> Result<(), OverLimit> {
        self.check_since(registry, None)
    }

    /// [`Self::check`] of a registry whose services differ from `previous` (services that
    /// passed these limits) only where the two maps differ: only those are checked, which
    /// costs what differs when the registry shares its entries with `previous`.
    pub fn check_since(&self, registry: &Registry, previous: Option<&Services>) -> Result<(), OverLimit> {
        if registry.services.len() > self.services {
            return Err(OverLimit::Services { count: registry.services.len(), limit: self.services });
        }
        let changed: Box<dyn Iterator<Item = (&String, &std::sync::Arc<ServiceSpec>)>> = match previous {
            Some(previous) => Box::new(previous.diff(&registry.services).filter_map(|item| match item {
                imbl::ordmap::DiffItem::Add(name, spec) | imbl::ordmap::DiffItem::Update { new: (name, spec), .. } => Some((name, spec)),
                imbl::ordmap::DiffItem::Remove(..) => None,
            })),
            None => Box::new(registry.services.iter()),
        };
        for (name, spec) in changed {
            if spec.routes.len() > self.routes_per_service {
                return Err(OverLimit::Routes { service: name.clone(), count: spec.routes.len(), limit: self.routes_per_service });
            }
            if spec.instances.len() > self.instances_per_service {
                let (count, limit) = (spec.instances.len(), self.instances_per_service);
                return Err(OverLimit::Instances { service: name.clone(), count, limit });
            }
        }
        Ok(())
    }

    /// One more live instance of `service` (RegisterInstance): refused when the service
    /// already has its limit of instances and this is not one of them (a heartbeat of a
    /// held instance is always fine).
    pub fn check_new_instance(&self, registry: &Registry, live: &LiveInstances, service: &str, instance: &InstanceSpec) -> Result<(), OverLimit> {
        let found = live.get(service);
        if found.is_some_and(|f| f.contains(instance)) {
            return Ok(());
        }
        let count = found.map_or(0, |f| f.len()) + registry.services.get(service).map_or(0, |s| s.instances.len());
        if count >= self.instances_per_service {
            return Err(OverLimit::Instances { service: service.to_owned(), count: count + 1, limit: self.instances_per_service });
        }
        Ok(())
    }

    /// `live` with each service's instances cut to what its limit leaves beside its static
    /// ones (the lowest addresses kept, so the cut is the same on every replica), and the
    /// services cut. Borrowed, not copied, when none is over (every instance change).
    pub fn cap_live<'a>(&self, registry: &Registry, live: &'a LiveInstances) -> (Cow<'a, LiveInstances>, Vec<Capped>) {
        let room = |service: &str| {
            let fixed = registry.services.get(service).map_or(0, |s| s.instances.len());
            self.instances_per_service.saturating_sub(fixed)
        };
        let over: Vec<&String> = live.iter().filter(|(service, found)| found.len() > room(service)).map(|(s, _)| s).collect();
        if over.is_empty() {
            return (Cow::Borrowed(live), Vec::new());
        }
        let mut capped_live = live.clone();
        let mut capped = Vec::new();
        for service in over {
            let fixed = registry.services.get(service).map_or(0, |s| s.instances.len());
            let keep = room(service);
            let Some(found) = capped_live.get_mut(service) else { continue };
            capped.push(Capped { service: service.clone(), found: fixed + found.len(), served: fixed + keep });
            *found = found.iter().take(keep).cloned().collect::<BTreeSet<_>>();
        }
        (Cow::Owned(capped_live), capped)
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
