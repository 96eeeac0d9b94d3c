//! Small shared helpers: digests and RFC 3339 timestamps.

use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_lower(&Sha256::digest(bytes))
}

/// `bytes` as lowercase hex. What `hex::encode` writes, a table lookup per nibble instead of
/// a `char` iterator collected into a `String` (a tenth of a host call went there).
pub fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    text
}

/// Lowercase hex sha256 of `value`'s compact JSON, hashed as it is written (no text kept).
pub fn sha256_json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(Sha256::new());
    // A value that fails to serialize hashes what was written before the failure; the
    // callers hash WIT arguments, which always serialize.
    let _ = serde_json::to_writer(&mut h, value);
    hex_lower(&h.0.finalize())
}

/// Lowercase hex sha256 of several parts, each length-prefixed so parts cannot run together.
pub fn sha256_parts(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    hex_lower(&h.finalize())
}

/// The current time, RFC 3339 UTC with microseconds (`2026-11-25T10:04:05.123456Z`).
pub fn now_rfc3339() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_rfc3339(since.as_secs() as i64, since.subsec_micros())
}

/// Formats seconds since the epoch (UTC) as RFC 3339 with microseconds.
pub fn format_rfc3339(secs: i64, micros: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds since the epoch of a UTC timestamp in the form [`format_rfc3339`] writes
/// (`YYYY-MM-DDTHH:MM:SS[.fraction]Z`); `None` for anything else.
pub fn parse_rfc3339_secs(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || !text.ends_with('Z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Howard Hinnant's civil date → days algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

// Howard Hinnant's days → civil date algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A new time-ordered id with a prefix, e.g. `run_0193a6f0c2e47d8c9b1f2e3a4b5c6d7e`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_what_the_hex_crate_writes() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(hex_lower(&bytes), hex::encode(&bytes));
        assert_eq!(hex_lower(&[]), "");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn timestamps_parse_back_to_their_seconds() {
        for secs in [0_i64, 951_782_400, 1_796_169_600, 4_102_444_799] {
            assert_eq!(
                parse_rfc3339_secs(&format_rfc3339(secs, 123_456)),
                Some(secs)
            );
        }
        assert_eq!(parse_rfc3339_secs("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339_secs("yesterday"), None);
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(format_rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_rfc3339(951_782_400, 5),
            "2000-02-29T00:00:00.000005Z"
        );
        assert_eq!(
            format_rfc3339(1_795_000_000, 0),
            "2026-11-18T11:06:40.000000Z"
        );
    }

    #[test]
    fn json_digest_is_the_digest_of_the_json_text() {
        let v = serde_json::json!({"query": "refund \"late\" ü", "limit": 5, "ids": [1, 2]});
        let text = serde_json::to_vec(&v).unwrap_or_default();
        assert_eq!(sha256_json(&v), sha256_hex(&text));
        assert_ne!(
            sha256_json(&v),
            sha256_json(&serde_json::json!({"query": "refund"}))
        );
    }

    #[test]
    fn parts_are_unambiguous() {
        assert_ne!(sha256_parts(&[b"ab", b"c"]), sha256_parts(&[b"a", b"bc"]));
        assert_eq!(sha256_hex(b"").len(), 64);
    }
}
