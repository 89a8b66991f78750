//! Token parsing and verification never panic, and nothing unsigned verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stagedoor_filter_core::config::KeyConfig;
use stagedoor_filter_core::token::{bearer_token, compile_key, Verifier};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let verifier = Verifier {
        issuer: "tickettoken".into(),
        audience: "tickettoken-platform".into(),
        leeway_secs: 30,
        jwks_issuers: vec![],
        keys: vec![compile_key(&KeyConfig {
            kid: None,
            algorithms: vec!["HS256".into()],
            secret: Some("fuzz-secret-fuzz-secret-fuzz-secret-0".into()),
            jwk: None,
            issuer: None,
        })
        .expect("key")],
    };
    if let Ok(token) = bearer_token(&[text]) {
        // Random input never carries a valid HMAC over itself.
        assert!(verifier.verify(token, 1_800_000_000).is_err());
    }
    let _ = verifier.verify(text, 1_800_000_000);
});
