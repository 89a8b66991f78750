//! RBAC shadow mode (issue 15): a rule, every rule of a service (`rbac_shadow`), or a
//! role's coming permissions (`shadow_permissions`) are decided beside the enforced policy
//! without refusing anything. The request goes on by the enforced decision; where the
//! shadow decision differs, the difference is logged and counted per rule, so a platform
//! team turns the rule on once its counter is quiet.

use std::rc::Rc;

use crate::config::Unmatched;
use crate::policy::Service;
use crate::rbac::Rule;

/// The rules a decision is made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSet {
    /// What refuses requests: no shadow rule, no rule of an `rbac_shadow` service.
    Enforced,
    /// Every rule, as it would be once the shadow ones are turned on.
    Shadow,
}

impl RuleSet {
    pub fn includes(self, service: &Service, rule: &Rule) -> bool {
        match self {
            RuleSet::Enforced => !rule.shadow && !service.rbac_shadow,
            RuleSet::Shadow => true,
        }
    }

    /// An `rbac_shadow` service's `unmatched: deny` is in shadow too.
    pub fn unmatched(self, service: &Service) -> Unmatched {
        match self {
            RuleSet::Enforced if service.rbac_shadow => Unmatched::Authenticated,
            _ => service.unmatched,
        }
    }
}

/// Where the shadow decision differs from the enforced one; never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowDifference {
    /// Which change under trial decides it: `<service>.<rule>` (a shadow rule, or the rule
    /// an `rbac_shadow` service enforces no more), `<service>.unmatched`,
    /// `<service>.venue_scope`, or `role.<role>` for a role's shadow permissions.
    pub label: Rc<str>,
    /// The shadow policy refuses what the enforced one lets through; false: the reverse.
    pub denied: bool,
    /// The permission the deciding rule asks for (empty when no rule decides).
    pub permission: String,
    pub tenant: String,
}

impl ShadowDifference {
    /// The counter this difference goes to: `stagedoor_rbac_shadow_denied.<label>` or
    /// `stagedoor_rbac_shadow_allowed.<label>`.
    pub fn metric_name(&self) -> String {
        let kind = if self.denied { "denied" } else { "allowed" };
        format!("stagedoor_rbac_shadow_{kind}.{}", self.label)
    }

    /// The log line (rule, permission, route, tenant).
    pub fn log_line(&self, method: &str, path: &str) -> String {
        let verdict = if self.denied { "would deny" } else { "would allow" };
        format!(
            "stagedoor: rbac shadow {verdict}: rule={} permission={} route={method} {path} tenant={}",
            self.label,
            if self.permission.is_empty() { "-" } else { &self.permission },
            self.tenant
        )
    }
}

/// Where filters report their shadow differences on the control plane's HTTP side (the
/// revocation feed's cluster), batched on the root context's tick: never a callout per
/// request.
pub const SHADOW_REPORT_PATH: &str = "/v1/shadow-report";

/// One report: the differences a filter counted since its last report, by label.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowReport {
    pub counts: std::collections::BTreeMap<String, ShadowCount>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowCount {
    /// Requests the shadow policy would refuse and the enforced one let through.
    #[serde(default)]
    pub denied: u64,
    /// Requests the enforced policy refused and the shadow one would let through.
    #[serde(default)]
    pub allowed: u64,
}

#[cfg(test)]
#[path = "shadow_tests.rs"]
mod tests;
