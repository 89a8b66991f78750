use envoy_types::pb::google::protobuf::Any;

/// Packs a message into `Any` with its canonical type URL.
pub fn to_any<M: prost::Name>(message: &M) -> Any {
    Any { type_url: M::type_url(), value: message.encode_to_vec() }
}

/// A protobuf map field (prost makes them `HashMap`s) whose entries encode in the same
/// order every time within this process: every such map shares one hasher, so equal
/// content gives equal bytes, and equal bytes are what per-resource content hashes (delta
/// xDS) compare. With a hasher per map, a two-entry map encoded in either order at random
/// and resent unchanged routes.
pub fn stable_map<K: std::hash::Hash + Eq, V>(entries: impl IntoIterator<Item = (K, V)>) -> std::collections::HashMap<K, V> {
    static HASHER: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
    let mut map = std::collections::HashMap::with_hasher(HASHER.get_or_init(Default::default).clone());
    map.extend(entries);
    map
}
