//! The units of the cache's limits and reports: `--older-than 30d`, `--max-size 20GiB`, and
//! sizes as people read them (`1.5 KiB`). Shared by every command that prints a size, and by
//! the local and remote `cache prune`.

use std::time::Duration;

/// A duration or size that does not parse (a user's input: exit 1).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum UnitError {
    /// No number before the unit.
    #[error("Invalid duration `{text}`: expected a number and a unit, e.g. `30d`, `12h`")]
    Duration {
        /// The text given.
        text: String,
    },
    /// A unit that is not one of s, m, h, d, w.
    #[error("Invalid duration unit `{unit}` in `{text}`: use s, m, h, d or w")]
    DurationUnit {
        /// The unit given.
        unit: String,
        /// The text given.
        text: String,
    },
    /// No number before the unit.
    #[error("Invalid size `{text}`: expected e.g. `500MB` or `20GiB`")]
    Size {
        /// The text given.
        text: String,
    },
    /// A unit that is not a byte multiple.
    #[error("Invalid size unit `{unit}` in `{text}`")]
    SizeUnit {
        /// The unit given.
        unit: String,
        /// The text given.
        text: String,
    },
}

/// Parses `90s`, `15m`, `12h`, `30d`, `2w` (a bare number is days).
///
/// # Errors
/// [`UnitError::Duration`] or [`UnitError::DurationUnit`].
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| UnitError::Duration {
        text: text.to_string(),
    })?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(UnitError::DurationUnit {
                unit: other.to_string(),
                text: text.to_string(),
            });
        }
    };
    Ok(Duration::from_secs(number * seconds))
}

/// Parses `500MB`, `20GiB`, `1.5G`, `1048576`.
///
/// # Errors
/// [`UnitError::Size`] or [`UnitError::SizeUnit`].
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| UnitError::Size {
        text: text.to_string(),
    })?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0_f64.powi(4),
        other => {
            return Err(UnitError::SizeUnit {
                unit: other.to_string(),
                text: text.to_string(),
            });
        }
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "sizes are positive and far below 2^64"
    )]
    Ok((number * factor) as u64)
}

/// `1.2 GiB`.
#[must_use]
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `2026-01-02 03:04:05` (UTC, to the second), or `-` for a time not recorded: the
/// `CREATED` and `LAST USED` columns of `cache list`.
#[must_use]
pub fn human_time(unix_seconds: Option<u64>) -> String {
    unix_seconds.map_or_else(
        || "-".to_string(),
        |seconds| {
            humantime::format_rfc3339_seconds(
                std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            )
            .to_string()
            .replace('T', " ")
            .trim_end_matches('Z')
            .to_string()
        },
    )
}

impl UnitError {
    /// Always the caller's input (exit code 1).
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        let _ = self;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_to_the_second() {
        assert_eq!(human_time(None), "-");
        assert_eq!(human_time(Some(0)), "1970-01-01 00:00:00");
        assert_eq!(human_time(Some(1_767_323_045)), "2026-01-02 03:04:05");
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 12 * 3600);
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err());
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
