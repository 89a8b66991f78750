//! The rules a live instance (`stagedoor register`, gRPC `RegisterInstance`) must meet: the
//! registry's own rules for its static instances, and a service the registry has. One place,
//! used by the command line and the gRPC API alike.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::input::bounded;
use super::model::InstanceSpec;
use super::validate::{is_service_name, Registry};

/// Live instances by service name, as discovery finds them and translation adds them to
/// each service's static ones.
pub type LiveInstances = BTreeMap<String, BTreeSet<InstanceSpec>>;

/// How long a live instance may stay without a heartbeat. Bounded so that an instance that
/// died without deregistering leaves within a day at worst.
pub const MAX_INSTANCE_TTL: Duration = Duration::from_secs(86_400);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LiveInstanceError {
    #[error("service: {0:?} must match [a-z][a-z0-9-]{{0,39}}")]
    BadName(String),
    #[error("service: the registry has no service {0:?} (live instances join a service the registry defines)")]
    UnknownService(String),
    #[error("address: {0:?} must be an IP address")]
    BadAddress(String),
    #[error("port: {0} must be 1-65535")]
    BadPort(u32),
    #[error("ttl: {0} s must be 1 s to 1 day")]
    BadTtl(u64),
}

/// A live instance as Redis keeps it: (service, address, port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInstance {
    pub service: String,
    pub address: String,
    pub port: u16,
}

/// Checks a service name, address and port by the registry's rules; with `registry`, the
/// service must also be one it defines (deregistering a removed service's instance needs
/// no registry).
pub fn check_instance(registry: Option<&Registry>, service: &str, address: &str, port: u32) -> Result<LiveInstance, LiveInstanceError> {
    if !is_service_name(service) {
        return Err(LiveInstanceError::BadName(bounded(service)));
    }
    if let Some(registry) = registry {
        if !registry.services.contains_key(service) {
            return Err(LiveInstanceError::UnknownService(service.to_owned()));
        }
    }
    let ip: std::net::IpAddr = address.parse().map_err(|_| LiveInstanceError::BadAddress(bounded(address)))?;
    let port = u16::try_from(port).ok().filter(|p| *p != 0).ok_or(LiveInstanceError::BadPort(port))?;
    Ok(LiveInstance { service: service.to_owned(), address: ip.to_string(), port })
}

/// A heartbeat TTL: whole seconds, at least one, at most [`MAX_INSTANCE_TTL`] (Redis `EX`
/// takes whole seconds; 0 would expire the instance as it is registered).
pub fn check_ttl(ttl: Duration) -> Result<Duration, LiveInstanceError> {
    if ttl < Duration::from_secs(1) || ttl > MAX_INSTANCE_TTL {
        return Err(LiveInstanceError::BadTtl(ttl.as_secs()));
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::parse("r", &crate::test_support::registry_yaml("services:\n  - name: venue\n    routes: [{prefix: /v}]\n")).unwrap()
    }

    #[test]
    fn an_instance_meets_the_registrys_rules_and_joins_a_service_it_has() {
        let registry = registry();
        let ok = check_instance(Some(&registry), "venue", "127.0.0.1", 4002).unwrap();
        assert_eq!(ok, LiveInstance { service: "venue".into(), address: "127.0.0.1".into(), port: 4002 });
        assert_eq!(check_instance(Some(&registry), "Bad_Name!", "127.0.0.1", 1), Err(LiveInstanceError::BadName("Bad_Name!".into())));
        assert_eq!(check_instance(Some(&registry), "seats", "127.0.0.1", 1), Err(LiveInstanceError::UnknownService("seats".into())));
        assert_eq!(check_instance(Some(&registry), "venue", "127.0.0.1", 0), Err(LiveInstanceError::BadPort(0)));
        assert_eq!(check_instance(Some(&registry), "venue", "127.0.0.1", 70_000), Err(LiveInstanceError::BadPort(70_000)));
        assert!(matches!(check_instance(Some(&registry), "venue", "host.internal", 1), Err(LiveInstanceError::BadAddress(_))));
        assert!(check_instance(None, "seats", "127.0.0.1", 1).is_ok(), "deregistering needs no registry");
        let long = "a".repeat(100_000);
        let e = check_instance(None, &long, "127.0.0.1", 1).unwrap_err().to_string();
        assert!(e.len() < 400, "the name is echoed bounded: {} bytes", e.len());
    }

    #[test]
    fn a_ttl_is_one_second_to_one_day() {
        assert_eq!(check_ttl(Duration::ZERO), Err(LiveInstanceError::BadTtl(0)));
        assert_eq!(check_ttl(Duration::from_millis(500)), Err(LiveInstanceError::BadTtl(0)));
        assert!(check_ttl(Duration::from_secs(1)).is_ok());
        assert!(check_ttl(MAX_INSTANCE_TTL).is_ok());
        assert_eq!(check_ttl(MAX_INSTANCE_TTL + Duration::from_secs(1)), Err(LiveInstanceError::BadTtl(86_401)));
    }
}
