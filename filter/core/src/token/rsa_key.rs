//! The rules an RSA public key passes: a size we trust and can verify, a sound exponent,
//! and not one of the keys a flawed generator made (ROCA).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::key_error::KeyError;

/// 2048 bits is the floor of NIST SP 800-57 since 2014; 4096 is the most the RSA backend
/// verifies (a larger key would load and then refuse every token).
const MIN_BITS: usize = 2048;
const MAX_BITS: usize = 4096;

/// `n` and `e` as a JWK gives them (base64url, big-endian).
pub(super) fn check_rsa(n: &str, e: &str) -> Result<(), KeyError> {
    let n = URL_SAFE_NO_PAD.decode(n).map_err(|_| KeyError::NotBase64Url("jwk.n"))?;
    let n = strip_leading_zeros(&n);
    let bits = match n.first() {
        Some(top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(KeyError::RsaModulusSize { bits });
    }
    if n.last().is_some_and(|low| low & 1 == 0) {
        return Err(KeyError::RsaModulusEven);
    }
    if has_roca_fingerprint(n) {
        return Err(KeyError::RsaRoca);
    }
    let e = URL_SAFE_NO_PAD.decode(e).map_err(|_| KeyError::NotBase64Url("jwk.e"))?;
    let e = strip_leading_zeros(&e);
    if e.len() > 8 {
        return Err(KeyError::RsaExponent);
    }
    let e = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    // e = 1 makes every message its own signature; the backend's ceiling is 2^33 - 1.
    if e < 3 || e % 2 == 0 || e > (1 << 33) - 1 {
        return Err(KeyError::RsaExponent);
    }
    Ok(())
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// The small primes of the ROCA test (Nemec et al., CCS 2017): a modulus from the flawed
/// Infineon generator (CVE-2017-15361) is, modulo each of them, a power of 65537. A
/// sound random modulus passes all 38 by chance with odds far below 2^-100.
const ROCA_PRIMES: [u32; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109,
    113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

fn has_roca_fingerprint(n: &[u8]) -> bool {
    ROCA_PRIMES.iter().all(|&p| {
        let residue = n.iter().fold(0u32, |acc, b| (acc * 256 + u32::from(*b)) % p);
        is_power_of_65537(residue, p)
    })
}

/// Walks the cyclic subgroup that 65537 generates modulo `p` (at most p - 1 steps).
fn is_power_of_65537(residue: u32, p: u32) -> bool {
    let generator = 65537 % p;
    let mut power = 1;
    loop {
        if power == residue {
            return true;
        }
        power = power * generator % p;
        if power == 1 {
            return false;
        }
    }
}
