//! Stagedoor's proxy-wasm filter. This crate only talks to the host: it copies what a
//! request looks like into `stagedoor_filter_core`, and applies the decision it gets back.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cache_fetch;
mod fanout;
mod host;
mod http;
mod metrics;
mod root;
mod time;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    // The release build aborts on a panic (the VM is then reloaded: FAIL_RELOAD); say why
    // first, at the level an operator alerts on.
    std::panic::set_hook(Box::new(|info| {
        host::log(proxy_wasm::types::LogLevel::Critical, &format!("stagedoor: panic: {info}"));
    }));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::StagedoorRoot::new(context_id))
    });
}}
