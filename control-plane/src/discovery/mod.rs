//! Live instances: services register themselves in Redis with a TTL heartbeat, and the
//! control plane follows the changes into EDS.
//!
//! Key schema (documented in the README):
//! - `stagedoor:instance:<service>:<address>:<port>`: one live instance; the value is JSON
//!   (`{"service","address","port","registered_at"}`, informational), the key carries a TTL
//!   the instance refreshes (`stagedoor register --heartbeat`). Expired or deleted: gone.
//! - channel `stagedoor:instances`: `stagedoor register/deregister` publish the service name
//!   when an instance appears (a key that was not there: new, expired, or lost with a Redis
//!   restart) or goes, so the control plane reacts at once (plain heartbeats publish nothing); keyspace events (`expired`, `del`)
//!   cover instances that stop heartbeating; a full rescan every 10 s is the safety net.

pub mod backoff;
pub mod heartbeat;
pub mod redis_source;
pub mod revocation_sync;
pub mod scan;

use crate::registry::{InstanceSpec, LiveInstances};

pub const KEY_PREFIX: &str = "stagedoor:instance:";
pub const CHANNEL: &str = "stagedoor:instances";

pub fn instance_key(service: &str, address: &str, port: u16) -> String {
    format!("{KEY_PREFIX}{service}:{address}:{port}")
}

/// Parses an instance key; None for anything that is not one (never trusted blindly: the
/// address and port are checked like the registry's).
pub fn parse_instance_key(key: &str) -> Option<(String, InstanceSpec)> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (service, endpoint) = rest.split_once(':')?;
    let (address, port) = endpoint.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    let address = address.trim_start_matches('[').trim_end_matches(']');
    if service.is_empty() || address.parse::<std::net::IpAddr>().is_err() {
        return None;
    }
    Some((service.to_owned(), InstanceSpec { address: address.to_owned(), port }))
}

pub fn collect(keys: impl IntoIterator<Item = String>) -> LiveInstances {
    let mut live = LiveInstances::new();
    for key in keys {
        if let Some((service, instance)) = parse_instance_key(&key) {
            live.entry(service).or_default().insert(instance);
        }
    }
    live
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_junk_is_ignored() {
        let key = instance_key("venue", "10.0.0.7", 3002);
        assert_eq!(key, "stagedoor:instance:venue:10.0.0.7:3002");
        let (service, inst) = parse_instance_key(&key).unwrap();
        assert_eq!((service.as_str(), inst.address.as_str(), inst.port), ("venue", "10.0.0.7", 3002));
        let v6 = parse_instance_key("stagedoor:instance:venue:[::1]:80").unwrap();
        assert_eq!(v6.1.address, "::1");
        for junk in [
            "stagedoor:instance:venue:10.0.0.7",
            "stagedoor:instance:venue:10.0.0.7:0",
            "stagedoor:instance:venue:not-an-ip:80",
            "stagedoor:instance::10.0.0.7:80",
            "other:venue:10.0.0.7:80",
        ] {
            assert!(parse_instance_key(junk).is_none(), "{junk}");
        }
        let live = collect(["stagedoor:instance:a:127.0.0.1:1".to_owned(), "junk".to_owned(), "stagedoor:instance:a:127.0.0.1:2".to_owned()]);
        assert_eq!(live["a"].len(), 2);
    }
}
