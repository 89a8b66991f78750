//! The one route configuration, assembled from every service's pre-encoded routes.
//!
//! The route configuration is one resource (one virtual host whose routes are every
//! service's, longest prefix first). Each service keeps its routes encoded as entries of
//! `VirtualHost.routes` (a protobuf repeated field is the concatenation of its entries), in
//! a [`Joined`] set kept in route order, so the resource is rebuilt by one concatenation of
//! bytes, and versioned by the set's digest instead of a hash of its megabytes.

use std::cmp::Reverse;
use std::sync::Arc;

use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::incremental::Encoded;
use super::joined::{Joined, Piece};
use super::{cors, names, route};
use crate::registry::Registry;

/// `VirtualHost.routes` (`repeated Route routes = 3`).
pub const VIRTUAL_HOST_ROUTES_TAG: u32 = 3;
/// `RouteConfiguration.virtual_hosts` (`repeated VirtualHost virtual_hosts = 2`).
const ROUTE_CONFIGURATION_VIRTUAL_HOSTS_TAG: u32 = 2;

/// Longest prefix first, then the prefix, then the services' and their targets' order:
/// the order [`route::sort_targets`] gives the targets of services walked in name order.
pub type TargetKey = (Reverse<usize>, String, String, usize);

/// One route prefix of a service: its routes encoded as `VirtualHost.routes` entries.
#[derive(Debug)]
pub struct EncodedTarget {
    pub prefix: String,
    pub routes: Vec<u8>,
    pub hash: String,
}

impl EncodedTarget {
    pub fn new(prefix: String, routes: &[Route]) -> Self {
        let mut bytes = Vec::new();
        for r in routes {
            prost::encoding::message::encode(VIRTUAL_HOST_ROUTES_TAG, r, &mut bytes);
        }
        let hash = crate::hash::short_hash(&bytes);
        Self { prefix, routes: bytes, hash }
    }
}

/// Every service's route targets in the route configuration's order.
pub type RouteTargets = Joined<TargetKey, EncodedTarget>;

impl Piece for EncodedTarget {
    const SEPARATOR: &'static [u8] = b"";
    fn bytes(&self) -> &[u8] {
        &self.routes
    }
    fn hash(&self) -> &str {
        &self.hash
    }
}

/// The route configuration, and the virtual host's own bytes it was made with (all but
/// the services' routes): the virtual host's head, the gateway's own routes, its tail.
#[derive(Debug)]
pub struct RoutePieces {
    frame: [Vec<u8>; 3],
    pub encoded: Arc<Encoded>,
}

/// The one route configuration from the services' pre-encoded routes (`targets`, in route
/// order): the bytes prost would write for [`route::route_configuration`]'s message. Prost
/// writes fields in their declaration order, and `VirtualHost` declares `name` and
/// `domains` before `routes`: so the head (those two), the routes, then the rest of the
/// virtual host.
///
/// Reused whole when no service's routes (`routes_changed`) and nothing of the virtual
/// host changed (an instance change, an edit of a service's cluster or filter part only).
pub fn route_pieces(
    registry: &Registry,
    gateway_routes: &[Route],
    targets: &mut RouteTargets,
    routes_changed: bool,
    cached: Option<&Arc<RoutePieces>>,
) -> Arc<RoutePieces> {
    let full = route::virtual_host(registry.cors.as_ref().map(cors::policy));
    let head = VirtualHost { name: full.name.clone(), domains: full.domains.clone(), ..Default::default() };
    let tail = VirtualHost { name: String::new(), domains: Vec::new(), ..full };
    let mut gateway = Vec::new();
    for r in gateway_routes {
        prost::encoding::message::encode(VIRTUAL_HOST_ROUTES_TAG, r, &mut gateway);
    }
    let frame = [head.encode_to_vec(), gateway, tail.encode_to_vec()];
    if let Some(cached) = cached.filter(|c| !routes_changed && c.frame == frame) {
        return cached.clone();
    }
    let [head, gateway, tail] = &frame;
    let virtual_host_len = head.len() + gateway.len() + targets.len_joined() + tail.len();
    // The bytes written once, in place: the message's head, then every piece.
    let mut value = RouteConfiguration { name: names::ROUTE_CONFIG.to_owned(), ..Default::default() }.encode_to_vec();
    prost::encoding::encode_key(ROUTE_CONFIGURATION_VIRTUAL_HOSTS_TAG, prost::encoding::WireType::LengthDelimited, &mut value);
    prost::encoding::encode_varint(virtual_host_len as u64, &mut value);
    value.reserve_exact(virtual_host_len);
    value.extend_from_slice(head);
    value.extend_from_slice(gateway);
    targets.write_to(&mut value);
    value.extend_from_slice(tail);

    // Hashing the frame and the entries' digest instead of the megabytes.
    let mut hashed = Vec::with_capacity(head.len() + gateway.len() + tail.len() + 24 + 32);
    for part in &frame {
        hashed.extend_from_slice(&(part.len() as u64).to_le_bytes());
        hashed.extend_from_slice(part);
    }
    hashed.extend_from_slice(&targets.digest());
    let hash = crate::hash::short_hash(&hashed);
    let encoded = Arc::new(Encoded { any: Arc::new(Any { type_url: RouteConfiguration::type_url(), value }), hash });
    Arc::new(RoutePieces { frame, encoded })
}
