//! What `/proc` says about processes: CPU time, resident memory, the open-files limit.
//!
//! Owns reading `/proc/PID/stat` (utime and stime, fields 14 and 15, in clock ticks),
//! `/proc/PID/status` (`VmRSS`) and `/proc/self/limits`. The tick length comes from
//! `getconf CLK_TCK`, asked once; when that fails 100 is assumed and reports say so.

use std::io;
use std::process::Command;

/// Converts clock ticks to seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    /// Ticks per second.
    pub(crate) ticks_per_sec: u64,
    /// Whether `ticks_per_sec` came from `getconf` (else it is the usual Linux value, assumed).
    pub(crate) from_getconf: bool,
}

impl Clock {
    /// Asks `getconf CLK_TCK`; assumes 100 when it cannot.
    pub(crate) fn detect() -> Self {
        let asked = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse::<u64>().ok())
            .filter(|&t| t > 0);
        Self {
            ticks_per_sec: asked.unwrap_or(100),
            from_getconf: asked.is_some(),
        }
    }

    /// CPU time a process has used so far, in seconds.
    pub(crate) fn cpu_times(&self, pid: u32) -> io::Result<CpuTimes> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let (user, system) = parse_cpu_ticks(&stat).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/PID/stat")
        })?;
        let seconds = |ticks: u64| ticks as f64 / self.ticks_per_sec as f64;
        Ok(CpuTimes {
            user: seconds(user),
            system: seconds(system),
        })
    }
}

/// A process's CPU time, in seconds: in user space and in the kernel on its behalf (its system
/// calls, and on loopback much of the TCP work of both ends).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuTimes {
    pub(crate) user: f64,
    pub(crate) system: f64,
}

impl CpuTimes {
    /// User and system time together.
    pub(crate) fn total(self) -> f64 {
        self.user + self.system
    }
}

/// utime and stime, in ticks, from the text of `/proc/PID/stat`.
fn parse_cpu_ticks(stat: &str) -> Option<(u64, u64)> {
    // The command name (field 2) is in parentheses and may hold spaces or parentheses itself,
    // so fields are counted after its last `)`: there, field 3 is the first.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// Resident set size of a process, in bytes.
pub(crate) fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_rss(&status)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc/PID/status"))
}

fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The soft limit on open files of this process, when `/proc/self/limits` tells it.
pub(crate) fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// How many ephemeral ports the kernel hands out (`ip_local_port_range`).
pub(crate) fn ephemeral_ports() -> Option<u64> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = range.split_whitespace().map(|n| n.parse::<u64>().ok());
    let (low, high) = (bounds.next()??, bounds.next()??);
    Some(high.saturating_sub(low) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_fields_fourteen_and_fifteen() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1500 0 0 0 \
                    731 129 0 0 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat), Some((731, 129)));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn rss_is_read_in_kib() {
        let status = "Name:\tswitchboard\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(status), Some(2 << 20));
    }

    #[test]
    fn this_process_can_be_measured() {
        let clock = Clock::detect();
        assert!(clock.ticks_per_sec > 0);
        let me = std::process::id();
        assert!(clock.cpu_times(me).unwrap().total() >= 0.0);
        assert!(rss_bytes(me).unwrap() > 0);
        assert!(open_files_limit().unwrap() > 0);
        assert!(ephemeral_ports().unwrap() > 1000);
    }
}
