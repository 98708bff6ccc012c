//! Values with units, as written in flags, env vars and TOML: durations (`30s`, `500ms`, `5m`,
//! or a bare number of seconds) and byte sizes (`1MiB`, `64KiB`, `1MB`, or a bare number).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A duration setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl FromStr for DurationArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(seconds) = s.parse::<u64>() {
            return Ok(Self(Duration::from_secs(seconds)));
        }
        humantime::parse_duration(s)
            .map(Self)
            .map_err(|e| format!("{e} (expected e.g. 30s, 500ms, 5m or a number of seconds)"))
    }
}

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{s:?} is not a size (expected e.g. 1MiB, 64KiB or 1048576)"))?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use B, KiB, MiB, GiB)"
                ));
            }
        };
        number
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// A TOML value that is either a string (parsed with `FromStr`) or an integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrInt {
    Int(u64),
    Str(String),
}

fn deserialize_unit<'de, D, T>(deserializer: D, from_int: fn(u64) -> T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr<Err = String>,
{
    match StringOrInt::deserialize(deserializer)? {
        StringOrInt::Int(n) => Ok(from_int(n)),
        StringOrInt::Str(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

impl<'de> Deserialize<'de> for DurationArg {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_unit(deserializer, |n| Self(Duration::from_secs(n)))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_unit(deserializer, Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_units_or_seconds() {
        assert_eq!("30".parse(), Ok(DurationArg(Duration::from_secs(30))));
        assert_eq!("30s".parse(), Ok(DurationArg(Duration::from_secs(30))));
        assert_eq!("250ms".parse(), Ok(DurationArg(Duration::from_millis(250))));
        assert_eq!("5m".parse(), Ok(DurationArg(Duration::from_secs(300))));
        assert!("soon".parse::<DurationArg>().is_err());
        assert!("-1s".parse::<DurationArg>().is_err());
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!("1048576".parse(), Ok(ByteSize(1 << 20)));
        assert_eq!("1MiB".parse(), Ok(ByteSize(1 << 20)));
        assert_eq!("64 KiB".parse(), Ok(ByteSize(64 << 10)));
        assert_eq!("2mb".parse(), Ok(ByteSize(2_000_000)));
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("1 parsec".parse::<ByteSize>().is_err());
        assert!("99999999999999999999GiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn toml_accepts_strings_and_integers() {
        #[derive(Deserialize)]
        struct T {
            d: DurationArg,
            s: ByteSize,
        }
        let t: T = toml::from_str("d = 45\ns = \"1MiB\"").unwrap();
        assert_eq!(t.d.0, Duration::from_secs(45));
        assert_eq!(t.s.0, 1 << 20);
        let t: T = toml::from_str("d = \"2m\"\ns = 4096").unwrap();
        assert_eq!(t.d.0, Duration::from_secs(120));
        assert_eq!(t.s.0, 4096);
    }
}
