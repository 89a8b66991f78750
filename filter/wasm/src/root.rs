//! The root context: parses and compiles the config once, hands it to each request.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use stagedoor_filter_core::config::FilterConfig;
use stagedoor_filter_core::Policy;

use crate::http::StagedoorHttp;

#[derive(Default)]
pub struct StagedoorRoot {
    policy: Option<Rc<Policy>>,
}

impl Context for StagedoorRoot {}

impl RootContext for StagedoorRoot {
    /// Refusing a bad config (returning false) makes Envoy reject the listener update, so
    /// the control plane sees a NACK and the last good config keeps serving.
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let Some(bytes) = self.get_plugin_configuration() else {
            log::error!("stagedoor: no plugin configuration");
            return false;
        };
        let config = match FilterConfig::from_json(&bytes) {
            Ok(config) => config,
            Err(e) => {
                log::error!("stagedoor: config is not valid JSON for this filter: {e}");
                return false;
            }
        };
        match Policy::compile(&config) {
            Ok(policy) => {
                log::info!("stagedoor: config {} loaded", policy.config_version);
                self.policy = Some(Rc::new(policy));
                true
            }
            Err(e) => {
                log::error!("stagedoor: config refused: {e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let policy = self.policy.clone()?;
        Some(Box::new(StagedoorHttp::new(policy)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
