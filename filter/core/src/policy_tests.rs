//! `Policy::check` (what the control plane runs on an edit) against `Policy::compile` (what
//! the filter runs): whichever services are vouched for, as long as each of them compiles
//! on its own, the two decide the same, down to the first error.

use proptest::prelude::*;

use super::*;
use crate::config::{HeaderPolicyConfig, ServiceConfig, Unmatched};

/// A service drawn from a few prefixes (so two services may share one), with a public path
/// and a header allow-list either of which may be bad.
fn service(index: usize, prefixes: Vec<u8>, bad_public: bool, bad_header: bool) -> ServiceConfig {
    ServiceConfig {
        name: format!("s{index}"),
        prefixes: prefixes.iter().map(|p| format!("/api/p{p}")).collect(),
        public_paths: vec![if bad_public { String::from("no-slash") } else { format!("/api/p{index}/public/*") }],
        rules: vec![],
        request_headers: HeaderPolicyConfig { allow: vec![if bad_header { String::from("bad header") } else { String::from("x-ok") }], allow_any: false },
        unmatched: Unmatched::Authenticated,
        validation: vec![],
        require_signatures: false,
        signed_routes: vec![],
        rbac_shadow: false,
    }
}

fn services() -> impl Strategy<Value = Vec<(ServiceConfig, bool)>> {
    let one = (proptest::collection::vec(0u8..6, 0..3), proptest::bool::weighted(0.15), proptest::bool::weighted(0.15), any::<bool>());
    proptest::collection::vec(one, 1..8).prop_map(|drawn| {
        drawn
            .into_iter()
            .enumerate()
            .map(|(i, (prefixes, bad_public, bad_header, vouched))| (service(i, prefixes, bad_public, bad_header), vouched))
            .collect()
    })
}

proptest! {
    #[test]
    fn check_decides_what_compile_decides(drawn in services()) {
        let base = crate::decision::tests::config();
        let config = FilterConfig { services: drawn.iter().map(|(s, _)| s.clone()).collect(), ..base.clone() };
        // Only a service that compiles on its own may be vouched for, as the control plane
        // vouches only for parts that compiled before.
        let alone = |s: &ServiceConfig| Policy::compile(&FilterConfig { services: vec![s.clone()], ..base.clone() }).is_ok();
        let vouched: Vec<bool> = drawn.iter().map(|(s, v)| *v && alone(s)).collect();
        let compiled = Policy::compile(&config).map(drop);
        prop_assert_eq!(Policy::check(&config, &config.services, |i| vouched[i]), compiled.clone());
        let shared: Vec<&ServiceConfig> = config.services.iter().collect();
        prop_assert_eq!(Policy::check(&config, &shared, |_| false), compiled);
    }
}

#[test]
fn services_with_one_header_config_share_its_table_and_keep_their_verdicts() {
    let mut config = crate::decision::tests::config();
    config.services = (0..3).map(|i| service(i, vec![i as u8], false, false)).collect();
    let policy = Policy::compile(&config).unwrap();
    let verdicts: Vec<_> = policy.services.iter().map(|s| (s.headers.request_header("x-ok"), s.headers.request_header("x-other"))).collect();
    assert!(verdicts.iter().all(|v| *v == (crate::headers::Verdict::Keep, crate::headers::Verdict::Remove)), "{verdicts:?}");
}
