//! Stagedoor's own gRPC API, generated at build time from `stagedoor/v1/*.proto`.

pub mod v1 {
    #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    tonic::include_proto!("stagedoor.v1");
}
