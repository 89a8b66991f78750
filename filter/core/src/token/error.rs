/// Why a token was refused. Each has a stable code clients and dashboards can rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Malformed(&'static str),
    TooLarge,
    UnknownKey,
    AlgorithmNotAllowed,
    InvalidSignature,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
    WrongType,
    MissingTenant,
    MissingSubject,
    InvalidClaims(&'static str),
    UnknownRole,
    Revoked,
}

impl TokenError {
    pub const ALL_CODES: &'static [&'static str] = &[
        "TOKEN_MISSING",
        "TOKEN_MALFORMED",
        "TOKEN_TOO_LARGE",
        "TOKEN_UNKNOWN_KEY",
        "TOKEN_ALGORITHM_NOT_ALLOWED",
        "TOKEN_INVALID_SIGNATURE",
        "TOKEN_EXPIRED",
        "TOKEN_NOT_YET_VALID",
        "TOKEN_ISSUED_IN_FUTURE",
        "TOKEN_WRONG_ISSUER",
        "TOKEN_WRONG_AUDIENCE",
        "TOKEN_WRONG_TYPE",
        "TOKEN_MISSING_TENANT",
        "TOKEN_MISSING_SUBJECT",
        "TOKEN_INVALID_CLAIMS",
        "TOKEN_UNKNOWN_ROLE",
        "TOKEN_REVOKED",
    ];

    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Malformed(_) => "TOKEN_MALFORMED",
            Self::TooLarge => "TOKEN_TOO_LARGE",
            Self::UnknownKey => "TOKEN_UNKNOWN_KEY",
            Self::AlgorithmNotAllowed => "TOKEN_ALGORITHM_NOT_ALLOWED",
            Self::InvalidSignature => "TOKEN_INVALID_SIGNATURE",
            Self::Expired => "TOKEN_EXPIRED",
            Self::NotYetValid => "TOKEN_NOT_YET_VALID",
            Self::IssuedInFuture => "TOKEN_ISSUED_IN_FUTURE",
            Self::WrongIssuer => "TOKEN_WRONG_ISSUER",
            Self::WrongAudience => "TOKEN_WRONG_AUDIENCE",
            Self::WrongType => "TOKEN_WRONG_TYPE",
            Self::MissingTenant => "TOKEN_MISSING_TENANT",
            Self::MissingSubject => "TOKEN_MISSING_SUBJECT",
            Self::InvalidClaims(_) => "TOKEN_INVALID_CLAIMS",
            Self::UnknownRole => "TOKEN_UNKNOWN_ROLE",
            Self::Revoked => "TOKEN_REVOKED",
        }
    }

    /// Index into [`Self::ALL_CODES`], for per-reason metrics.
    pub fn index(&self) -> usize {
        let code = self.code();
        Self::ALL_CODES.iter().position(|c| *c == code).unwrap_or(0)
    }

    /// A message for the client: says what is wrong, never echoes key material.
    pub fn message(&self) -> String {
        match self {
            Self::Missing => "A bearer token is required".into(),
            Self::Malformed(why) => format!("Malformed token: {why}"),
            Self::TooLarge => format!("Token exceeds {} bytes", super::MAX_TOKEN_BYTES),
            Self::UnknownKey => "Token is signed with an unknown key".into(),
            Self::AlgorithmNotAllowed => "Token algorithm is not allowed for its key".into(),
            Self::InvalidSignature => "Token signature is invalid".into(),
            Self::Expired => "Token has expired".into(),
            Self::NotYetValid => "Token is not valid yet".into(),
            Self::IssuedInFuture => "Token is issued in the future".into(),
            Self::WrongIssuer => "Token issuer is not accepted".into(),
            Self::WrongAudience => "Token audience is not accepted".into(),
            Self::WrongType => "Token is not an access token".into(),
            Self::MissingTenant => "Invalid token - missing tenant context".into(),
            Self::MissingSubject => "Token has no subject".into(),
            Self::InvalidClaims(why) => format!("Token claims are invalid: {why}"),
            Self::UnknownRole => "Token role is not known".into(),
            Self::Revoked => "Token has been revoked".into(),
        }
    }
}
