//! Stagedoor's proxy-wasm filter. This crate only talks to the host: it copies what a
//! request looks like into `stagedoor_filter_core`, and applies the decision it gets back.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod host;
mod http;
mod metrics;
mod root;
mod time;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::StagedoorRoot::default())
    });
}}
