//! A registry key that names an identity provider's JWKS URL: the rules it passes to
//! become a [`JwksSource`] the fetcher (`crate::jwks`) follows.

use std::time::Duration;

use super::model::KeySpec;

/// The default and bounds of `refresh_secs`: a key set is fetched again at least every
/// day, and never more than twice a minute by the timer.
pub const DEFAULT_REFRESH_SECS: u64 = 300;
pub const MIN_REFRESH_SECS: u64 = 30;
pub const MAX_REFRESH_SECS: u64 = 86_400;
const MAX_URI_BYTES: usize = 2048;

/// A JWKS the control plane fetches and whose keys it pushes, bound to `issuer`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JwksSource {
    pub issuer: String,
    pub uri: String,
    /// The algorithms the issuer's keys may verify (asymmetric only).
    pub algorithms: Vec<String>,
    pub refresh: Duration,
    /// The CA bundle (PEM) the server must chain to; None: the platform's roots. In the
    /// registry's version, so a rotated CA file is a new version (cert_watch.rs).
    pub ca_pem: Option<String>,
}

/// The field at fault and why.
pub type FieldError = (&'static str, String);

/// `static_hmac_issuer`: the registry's own issuer when a static key is an HMAC secret (an
/// IdP's public keys may not share an issuer with a secret, see token::compile_key_set).
pub fn jwks_source(spec: &KeySpec, uri: &str, static_hmac_issuer: Option<&str>, now: i64) -> Result<JwksSource, FieldError> {
    let KeySpec { kid, algorithms, secret, secret_env, jwk, dev, jwks_uri: _, issuer, refresh_secs, ca_file } = spec;
    if kid.is_some() || secret.is_some() || secret_env.is_some() || jwk.is_some() || *dev {
        return Err(("jwks_uri", String::from("a JWKS key has no `kid`, `secret`, `secret_env`, `jwk` or `dev`: its keys come from the URL")));
    }
    check_uri(uri)?;
    let issuer = match issuer.as_deref() {
        Some(issuer) if !issuer.trim().is_empty() => issuer.to_owned(),
        _ => return Err(("issuer", String::from("a JWKS key needs the `iss` of the tokens its keys verify"))),
    };
    if static_hmac_issuer == Some(issuer.as_str()) {
        return Err(("issuer", format!("{issuer:?} is also the issuer of an HMAC secret: an IdP's public keys need an issuer of their own")));
    }
    check_algorithms(algorithms)?;
    let refresh_secs = refresh_secs.unwrap_or(DEFAULT_REFRESH_SECS);
    if !(MIN_REFRESH_SECS..=MAX_REFRESH_SECS).contains(&refresh_secs) {
        return Err(("refresh_secs", format!("must be {MIN_REFRESH_SECS} to {MAX_REFRESH_SECS}")));
    }
    let ca_pem = match ca_file {
        Some(path) => Some(super::edge::read_bundle("ca_file", path, now).map_err(|(_, reason)| ("ca_file", reason))?),
        None => None,
    };
    Ok(JwksSource { issuer, uri: uri.to_owned(), algorithms: algorithms.clone(), refresh: Duration::from_secs(refresh_secs), ca_pem })
}

/// HTTPS only, a host, no credentials in the URL (they would show in /status and logs).
fn check_uri(uri: &str) -> Result<(), FieldError> {
    if uri.len() > MAX_URI_BYTES {
        return Err(("jwks_uri", format!("longer than {MAX_URI_BYTES} bytes")));
    }
    let url = reqwest::Url::parse(uri).map_err(|e| ("jwks_uri", format!("not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(("jwks_uri", String::from("must be https:// (keys fetched in the clear could be anyone's)")));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(("jwks_uri", String::from("needs a host")));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(("jwks_uri", String::from("must not carry credentials")));
    }
    Ok(())
}

/// The algorithms a JWKS's public keys can verify; an HMAC algorithm there would let a key
/// set's published material sign tokens.
fn check_algorithms(algorithms: &[String]) -> Result<(), FieldError> {
    const ASYMMETRIC: [&str; 8] = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"];
    if algorithms.is_empty() {
        return Err(("algorithms", String::from("list at least one")));
    }
    match algorithms.iter().find(|a| !ASYMMETRIC.contains(&a.as_str())) {
        Some(bad) => Err(("algorithms", format!("{bad:?} is not one of {} (a JWKS holds public keys)", ASYMMETRIC.join(", ")))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> KeySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn refusal(yaml: &str) -> FieldError {
        let spec = spec(yaml);
        jwks_source(&spec, spec.jwks_uri.as_deref().unwrap(), Some("tickettoken"), 0).unwrap_err()
    }

    #[test]
    fn a_good_source_takes_its_defaults() {
        let spec = spec("{jwks_uri: 'https://idp.example/.well-known/jwks.json', issuer: 'https://idp.example/', algorithms: [RS256, ES256]}");
        let source = jwks_source(&spec, spec.jwks_uri.as_deref().unwrap(), Some("tickettoken"), 0).unwrap();
        assert_eq!(source.issuer, "https://idp.example/");
        assert_eq!(source.refresh, Duration::from_secs(DEFAULT_REFRESH_SECS));
        assert_eq!(source.ca_pem, None);
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = "jwks_uri: 'https://idp.example/jwks', issuer: 'https://idp.example/', algorithms: [RS256]";
        assert_eq!(refusal("{jwks_uri: 'http://idp.example/jwks', issuer: i, algorithms: [RS256]}").0, "jwks_uri");
        assert_eq!(refusal("{jwks_uri: 'https://u:p@idp.example/jwks', issuer: i, algorithms: [RS256]}").0, "jwks_uri");
        assert_eq!(refusal("{jwks_uri: 'not a url', issuer: i, algorithms: [RS256]}").0, "jwks_uri");
        assert_eq!(refusal("{jwks_uri: 'https://idp.example/jwks', algorithms: [RS256]}").0, "issuer");
        assert_eq!(refusal("{jwks_uri: 'https://idp.example/jwks', issuer: tickettoken, algorithms: [RS256]}").0, "issuer");
        assert_eq!(refusal("{jwks_uri: 'https://idp.example/jwks', issuer: i, algorithms: [HS256]}").0, "algorithms");
        assert_eq!(refusal("{jwks_uri: 'https://idp.example/jwks', issuer: i, algorithms: []}").0, "algorithms");
        assert_eq!(refusal(&format!("{{{base}, refresh_secs: 5}}")).0, "refresh_secs");
        assert_eq!(refusal(&format!("{{{base}, kid: a}}")).0, "jwks_uri");
        assert_eq!(refusal(&format!("{{{base}, ca_file: /nonexistent/ca.pem}}")).0, "ca_file");
    }
}
