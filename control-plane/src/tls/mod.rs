//! Mutual TLS for every control-plane port: the credentials in `.stagedoor/` (written by
//! `stagedoor certs init`), what a peer certificate says about its holder, and the checks
//! a certificate passes before anything serves with it.

pub mod admission;
pub mod files;
pub mod generate;
pub mod identity;
pub mod listener;
pub mod load;
pub mod rotate;
pub mod served;

#[cfg(test)]
mod tests;

/// Why credentials cannot be written or used. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: cannot write: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("{path}: not a PEM certificate ({detail})")]
    NotACertificate { path: String, detail: String },
    #[error("{path}: not a PEM private key ({detail})")]
    NotAKey { path: String, detail: String },
    #[error("{key}: this key does not belong to the certificate {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("{path}: expired on {not_after} (run `stagedoor certs init --force` for new development certificates)")]
    Expired { path: String, not_after: String },
    #[error("{path}: not valid before {not_before}")]
    NotYetValid { path: String, not_before: String },
    #[error("{path}: not signed by the CA in {ca}")]
    NotSignedByCa { path: String, ca: String },
    #[error("{0}")]
    BadName(String),
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsError {
    /// The file at fault, when one is (for /status).
    pub fn file(&self) -> Option<&str> {
        match self {
            TlsError::Read { path, .. }
            | TlsError::Write { path, .. }
            | TlsError::NotACertificate { path, .. }
            | TlsError::NotAKey { path, .. }
            | TlsError::Expired { path, .. }
            | TlsError::NotYetValid { path, .. }
            | TlsError::NotSignedByCa { path, .. } => Some(path),
            TlsError::KeyMismatch { key, .. } => Some(key),
            TlsError::BadName(_) | TlsError::Generate(_) | TlsError::Rustls(_) => None,
        }
    }
}
