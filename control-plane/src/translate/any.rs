use envoy_types::pb::google::protobuf::Any;

/// Packs a message into `Any` with its canonical type URL.
pub fn to_any<M: prost::Name>(message: &M) -> Any {
    Any { type_url: M::type_url(), value: message.encode_to_vec() }
}
