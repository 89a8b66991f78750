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
    /// The token's issuer takes its keys from a JWKS the control plane has not fetched yet.
    KeysUnavailable,
}

impl TokenError {
    /// One of each kind, in metric order: `ALL[e.index()]` is of `e`'s kind (a test checks
    /// it; `index` is an exhaustive match, so a new kind does not compile until it is placed).
    pub const ALL: [TokenError; 18] = [
        Self::Missing,
        Self::Malformed(""),
        Self::TooLarge,
        Self::UnknownKey,
        Self::AlgorithmNotAllowed,
        Self::InvalidSignature,
        Self::Expired,
        Self::NotYetValid,
        Self::IssuedInFuture,
        Self::WrongIssuer,
        Self::WrongAudience,
        Self::WrongType,
        Self::MissingTenant,
        Self::MissingSubject,
        Self::InvalidClaims(""),
        Self::UnknownRole,
        Self::Revoked,
        Self::KeysUnavailable,
    ];

    /// Every code, derived from [`Self::ALL`] and [`Self::code`].
    pub const ALL_CODES: [&'static str; 18] = {
        let mut codes = [""; 18];
        let mut i = 0;
        while i < codes.len() {
            codes[i] = Self::ALL[i].code();
            i += 1;
        }
        codes
    };

    pub const fn code(&self) -> &'static str {
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
            Self::KeysUnavailable => "TOKEN_KEYS_UNAVAILABLE",
        }
    }

    /// Index into [`Self::ALL`] and [`Self::ALL_CODES`], for per-reason metrics.
    pub const fn index(&self) -> usize {
        match self {
            Self::Missing => 0,
            Self::Malformed(_) => 1,
            Self::TooLarge => 2,
            Self::UnknownKey => 3,
            Self::AlgorithmNotAllowed => 4,
            Self::InvalidSignature => 5,
            Self::Expired => 6,
            Self::NotYetValid => 7,
            Self::IssuedInFuture => 8,
            Self::WrongIssuer => 9,
            Self::WrongAudience => 10,
            Self::WrongType => 11,
            Self::MissingTenant => 12,
            Self::MissingSubject => 13,
            Self::InvalidClaims(_) => 14,
            Self::UnknownRole => 15,
            Self::Revoked => 16,
            Self::KeysUnavailable => 17,
        }
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
            Self::KeysUnavailable => "The keys of the token's issuer are not loaded yet".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TokenError;

    #[test]
    fn the_list_of_kinds_agrees_with_index_and_code() {
        for (i, e) in TokenError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
            assert_eq!(TokenError::ALL_CODES[i], e.code());
            assert!(e.code().starts_with("TOKEN_"));
        }
        let mut codes = TokenError::ALL_CODES.to_vec();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TokenError::ALL.len(), "codes are distinct");
    }
}
