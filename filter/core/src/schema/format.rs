//! `format`: the four the original gateway checked, asserted (not just annotated).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RFC 9562 textual form, any version: 8-4-4-4-12 hex digits.
    Uuid,
    /// A pragmatic address check (what Joi's `email()` refuses in practice): one `@`, a
    /// local part and a dotted domain, no whitespace or control characters, at most 254.
    Email,
    /// RFC 3339 `date-time`: `2026-12-01T15:04:05Z`, fraction and offset optional forms.
    DateTime,
    /// The original's phone pattern `^\+?[1-9]\d{1,14}$` (E.164, the `+` optional).
    E164,
}

impl Format {
    pub const NAMES: [&'static str; 4] = ["uuid", "email", "date-time", "e164"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "uuid" => Some(Self::Uuid),
            "email" => Some(Self::Email),
            "date-time" => Some(Self::DateTime),
            "e164" => Some(Self::E164),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Uuid => "uuid",
            Self::Email => "email",
            Self::DateTime => "date-time",
            Self::E164 => "e164",
        }
    }

    pub fn is_valid(self, s: &str) -> bool {
        match self {
            Self::Uuid => is_uuid(s),
            Self::Email => is_email(s),
            Self::DateTime => is_date_time(s),
            Self::E164 => is_e164(s),
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    let clean = |part: &str| !part.is_empty() && !part.chars().any(|c| c.is_whitespace() || c.is_control() || c == '@');
    let labels_ok = domain.split('.').all(|label| {
        !label.is_empty() && !label.starts_with('-') && !label.ends_with('-')
    });
    s.len() <= 254 && local.len() <= 64 && clean(local) && clean(domain) && domain.contains('.') && labels_ok
}

fn is_e164(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s).as_bytes();
    matches!(digits.first(), Some(b'1'..=b'9')) && (2..=15).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, `T`/`Z` in either case, each field
/// in range (the day for its month and leap year; second 60 for a leap second).
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') || b[13] != b':' || b[16] != b':' {
        return false;
    }
    let (Some(year), Some(month), Some(day)) = (digits(&b[0..4]), digits(&b[5..7]), digits(&b[8..10])) else { return false };
    let (Some(hour), Some(minute), Some(second)) = (digits(&b[11..13]), digits(&b[14..16]), digits(&b[17..19])) else {
        return false;
    };
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 60 {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &fraction[n..];
    }
    match rest {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            matches!((digits(&[*h1, *h2]), digits(&[*m1, *m2])), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    b.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}
