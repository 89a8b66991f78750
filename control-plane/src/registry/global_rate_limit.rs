//! The registry's `global_rate_limit` section: checked by the ratelimit crate's own compiler
//! (the one owner of what a good limit is), with the salt resolved from this process's
//! environment, and written back without a literal salt when redacted.

use stagedoor_ratelimit::compile::{CompiledLimits, ConfigError};
use stagedoor_ratelimit::config::GlobalRateLimitConfig;

use super::REDACTED;

pub fn compile(spec: Option<&GlobalRateLimitConfig>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<CompiledLimits>, ConfigError> {
    spec.map(|spec| stagedoor_ratelimit::compile::compile(spec, env)).transpose()
}

pub fn redacted(spec: &GlobalRateLimitConfig, redact: bool) -> GlobalRateLimitConfig {
    let mut spec = spec.clone();
    if redact && spec.salt.is_some() {
        spec.salt = Some(String::from(REDACTED));
    }
    spec
}

#[cfg(test)]
mod tests {
    use crate::registry::Registry;
    use crate::test_support::registry_yaml;

    const SERVICES: &str = "services:\n  - name: venue\n    routes: [{ prefix: /api/v1/venues }]\n    instances: [{ address: 127.0.0.1, port: 9 }]\n";

    fn with_limits(section: &str) -> String {
        format!("global_rate_limit:\n{section}{}", registry_yaml(SERVICES))
    }

    #[test]
    fn a_bad_limit_is_refused_naming_the_file_and_the_field() {
        let yaml = with_limits("  salt: s\n  limits: [{ name: api, requests: 0, period_ms: 60000 }]\n");
        let e = Registry::parse_with_env("reg.yaml", &yaml, &|_| None).unwrap_err().to_string();
        assert_eq!(e, "reg.yaml: global_rate_limit: limits[api].requests: must be positive");
        let yaml = with_limits("  salt: ''\n  limits: [{ name: api, requests: 1, period_ms: 60000 }]\n");
        let e = Registry::parse_with_env("reg.yaml", &yaml, &|_| None).unwrap_err().to_string();
        assert!(e.starts_with("reg.yaml: global_rate_limit: salt: must not be empty"), "{e}");
    }

    #[test]
    fn the_limits_are_compiled_versioned_and_the_literal_salt_redacted() {
        let yaml = with_limits("  salt: s3cret\n  limits: [{ name: api, requests: 5, period_ms: 60000 }]\n");
        let registry = Registry::parse_with_env("reg.yaml", &yaml, &|_| None).unwrap();
        assert_eq!(registry.global_rate_limits.as_ref().map(|l| l.limits.len()), Some(1));
        let without = Registry::parse_with_env("reg.yaml", &registry_yaml(SERVICES), &|_| None).unwrap();
        assert_ne!(registry.version, without.version);
        let written = registry.to_file(true);
        assert_eq!(written.global_rate_limit.and_then(|g| g.salt).as_deref(), Some(crate::registry::REDACTED));
    }
}
