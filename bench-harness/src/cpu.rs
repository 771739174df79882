//! Broker CPU time from /proc/<pid>/stat (user + system), for CPU-seconds per million messages.

use crate::error::{io_err, protocol};
use crate::Result;

/// CPU seconds the process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(io_err(format!(
        "cannot read /proc/{pid}/stat (is --broker-pid right?)"
    )))?;
    parse_stat(&stat).map(|ticks| ticks as f64 / clock_ticks_per_sec())
}

/// CPU seconds the calling thread has used so far.
pub fn thread_cpu_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat")
        .map_err(io_err("cannot read /proc/thread-self/stat"))?;
    parse_stat(&stat).map(|ticks| ticks as f64 / clock_ticks_per_sec())
}

/// utime + stime, in clock ticks. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last ')'.
fn parse_stat(stat: &str) -> Result<u64> {
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| protocol("/proc stat has no command field"))?;
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| protocol(format!("/proc stat field {n} is missing")))
    };
    Ok(field(14)? + field(15)?)
}

/// Linux reports these fields in USER_HZ, which the kernel ABI fixes at 100 on every
/// architecture it exports /proc for (sysconf(_SC_CLK_TCK) returns this same constant).
fn clock_ticks_per_sec() -> f64 {
    100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(stat).unwrap(), 300);
    }

    #[test]
    fn own_process_has_cpu_time() {
        let s = cpu_seconds(std::process::id()).unwrap();
        assert!(s >= 0.0);
    }
}
