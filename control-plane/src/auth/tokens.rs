//! The API tokens file (`--api-tokens FILE`): named bearer tokens for scripts, each with
//! scopes and, for `register`, the services it may (de)register. Only the SHA-256 of a
//! token is stored, so the file is no secret worth stealing.
//!
//! ```yaml
//! tokens:
//!   - name: deploy-bot
//!     sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//!     scopes: [read, apply]
//!   - name: venue-autoscaler
//!     sha256: ...
//!     scopes: [register]
//!     services: [venue]
//! ```

use std::collections::{BTreeMap, BTreeSet};


#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Apply,
    Revoke,
    Register,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Apply => "apply",
            Scope::Revoke => "revoke",
            Scope::Register => "register",
        }
    }
}

/// One named token's rights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub name: String,
    pub scopes: BTreeSet<Scope>,
    /// None: any service (for `register`).
    pub services: Option<BTreeSet<String>>,
}

/// The tokens by the hex SHA-256 of their value.
#[derive(Debug, Clone, Default)]
pub struct ApiTokens {
    by_digest: BTreeMap<String, TokenGrant>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
    #[serde(default)]
    services: Option<Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl ApiTokens {
    pub fn load(path: &std::path::Path) -> Result<Self, TokensError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| TokensError::Read { path: name.clone(), error })?;
        Self::parse(&text).map_err(|detail| TokensError::Invalid { path: name, detail })
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: TokensFile = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_digest = BTreeMap::new();
        let mut names = BTreeSet::new();
        for (i, TokenEntry { name, sha256, scopes, services }) in file.tokens.into_iter().enumerate() {
            let at = format!("tokens[{i}] ({name})");
            let digest = sha256.to_ascii_lowercase();
            if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("{at}.sha256: expected 64 hex digits (sha256sum of the token)"));
            }
            if scopes.is_empty() {
                return Err(format!("{at}.scopes: give at least one of read, apply, revoke, register"));
            }
            if !names.insert(name.clone()) {
                return Err(format!("{at}.name: {name:?} appears twice"));
            }
            let grant = TokenGrant { name, scopes: scopes.into_iter().collect(), services: services.map(|s| s.into_iter().collect()) };
            if by_digest.insert(digest, grant).is_some() {
                return Err(format!("{at}.sha256: the same token appears twice"));
            }
        }
        Ok(Self { by_digest })
    }

    /// The grant of a presented token, by its digest.
    pub fn find(&self, token: &str) -> Option<&TokenGrant> {
        self.by_digest.get(&digest(token))
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

pub fn digest(token: &str) -> String {
    crate::hash::sha256_hex(token.as_bytes())
}
