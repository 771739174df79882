//! Human units in workload files: sizes (`100`, `64KiB`, `1MB`), durations (`30s`, `500ms`)
//! and rates (`max`, `100000 msg/s`, `50 MB/s`). KB/MB/GB are powers of 10, KiB/MiB/GiB of 2.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// A byte count, written as an integer or with a unit suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 100, 64KiB, 1MB)"))?;
    let mult: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use B, KB, MB, GB, KiB, MiB, GiB)"
            ))
        }
    };
    Ok((num * mult).round() as u64)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "us" => num / 1e6,
        "ms" => num / 1e3,
        "s" => num,
        "m" | "min" => num * 60.0,
        "h" => num * 3600.0,
        "" => return Err(format!("duration `{s}` needs a unit (us, ms, s, m, h)")),
        other => return Err(format!("unknown duration unit `{other}` in `{s}`")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// Target send rate: as fast as possible, or open loop at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    Max,
    MessagesPerSec(f64),
    BytesPerSec(f64),
}

impl Rate {
    /// Messages per second for records of `mean_size` bytes; `None` means as fast as possible.
    pub fn messages_per_sec(&self, mean_size: f64) -> Option<f64> {
        match *self {
            Rate::Max => None,
            Rate::MessagesPerSec(r) => Some(r),
            Rate::BytesPerSec(b) => Some(b / mean_size),
        }
    }
}

pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let t = s.trim();
    if t == "max" {
        return Ok(Rate::Max);
    }
    let Some(per) = t.strip_suffix("/s") else {
        return Err(format!(
            "rate `{t}` must be `max`, `N msg/s` or a size per second like `50 MB/s`"
        ));
    };
    let per = per.trim();
    let rate = if let Some(n) = per.strip_suffix("msg").or_else(|| per.strip_suffix("msgs")) {
        Rate::MessagesPerSec(
            n.trim()
                .parse()
                .map_err(|_| format!("`{t}`: `{n}` is not a number"))?,
        )
    } else if per.chars().all(|c| c.is_ascii_digit() || c == '.') {
        Rate::MessagesPerSec(per.parse().map_err(|_| format!("`{t}` is not a rate"))?)
    } else {
        Rate::BytesPerSec(parse_size(per)? as f64)
    };
    match rate {
        Rate::MessagesPerSec(r) | Rate::BytesPerSec(r) if !(r > 0.0 && r.is_finite()) => {
            Err(format!("rate `{t}` must be positive"))
        }
        r => Ok(r),
    }
}

struct StrOrInt(&'static str);

impl Visitor<'_> for StrOrInt {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_any(StrOrInt("a size such as 100 or 64KiB"))?;
        parse_size(&s).map(ByteSize).map_err(de::Error::custom)
    }
}

/// A duration written with a unit (`30s`, `500ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_any(StrOrInt("a duration such as 30s or 500ms"))?;
        parse_duration(&s).map(Dur).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = d.deserialize_any(StrOrInt("`max`, `N msg/s` or `N MB/s`"))?;
        parse_rate(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1 KB"), Ok(1000));
        assert_eq!(parse_size("1.5MiB"), Ok(1572864));
        assert!(parse_size("12 parsecs").unwrap_err().contains("parsecs"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("30").is_err());
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("max"), Ok(Rate::Max));
        assert_eq!(parse_rate("1000 msg/s"), Ok(Rate::MessagesPerSec(1000.0)));
        assert_eq!(parse_rate("2500/s"), Ok(Rate::MessagesPerSec(2500.0)));
        assert_eq!(parse_rate("50 MB/s"), Ok(Rate::BytesPerSec(50e6)));
        let r = parse_rate("50 MB/s").unwrap().messages_per_sec(1000.0);
        assert_eq!(r, Some(50_000.0));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0 msg/s").is_err());
    }
}
