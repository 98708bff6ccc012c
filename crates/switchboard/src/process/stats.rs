//! The process's resource use, as Prometheus's standard process metrics report it
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
//! `process_max_fds`, `process_start_time_seconds`), read from `/proc` when asked: Linux only,
//! and nothing is sampled in the background.

use std::io;
use std::path::PathBuf;

/// One reading of the process's resource use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident memory, in bytes.
    pub resident_memory_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// The soft open-file limit (`u64::MAX`: unlimited).
    pub max_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// Why the process's resource use could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProcessStatsError {
    /// A file or directory under `/proc` could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file under `/proc` did not have the expected form.
    #[error("unexpected contents of {0}")]
    Parse(&'static str),
    /// The clock tick rate or the open-file limit could not be read.
    #[error(transparent)]
    System(io::Error),
}

/// Reads the process's resource use now.
pub fn read() -> Result<ProcessStats, ProcessStatsError> {
    let stat = parse_stat(&read_file("/proc/self/stat")?)
        .ok_or(ProcessStatsError::Parse("/proc/self/stat"))?;
    let boot_time =
        parse_boot_time(&read_file("/proc/stat")?).ok_or(ProcessStatsError::Parse("/proc/stat"))?;
    let resident_memory_bytes = parse_resident_bytes(&read_file("/proc/self/status")?)
        .ok_or(ProcessStatsError::Parse("/proc/self/status"))?;
    let ticks = super::sys::clock_ticks_per_second().map_err(ProcessStatsError::System)? as f64;
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map_err(|source| ProcessStatsError::Read {
            path: "/proc/self/fd".into(),
            source,
        })?
        .count() as u64;
    Ok(ProcessStats {
        cpu_seconds: (stat.user_ticks + stat.system_ticks) as f64 / ticks,
        resident_memory_bytes,
        open_fds,
        max_fds: super::open_files::current()
            .map_err(ProcessStatsError::System)?
            .soft,
        start_time_seconds: boot_time as f64 + stat.start_ticks as f64 / ticks,
    })
}

fn read_file(path: &'static str) -> Result<String, ProcessStatsError> {
    std::fs::read_to_string(path).map_err(|source| ProcessStatsError::Read {
        path: path.into(),
        source,
    })
}

/// The fields of `/proc/PID/stat` used here, in clock ticks.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    user_ticks: u64,
    system_ticks: u64,
    /// Since boot.
    start_ticks: u64,
}

/// Parses `/proc/PID/stat`: fields 14 (utime), 15 (stime) and 22 (starttime), counted after
/// the command name, which is in parentheses and may itself hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, after_name) = text.rsplit_once(')')?;
    // The first field after the name is field 3 (state).
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3)?.parse().ok();
    Some(Stat {
        user_ticks: field(14)?,
        system_ticks: field(15)?,
        start_ticks: field(22)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) in `/proc/stat`.
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

/// The resident memory (`VmRSS`, in kB) in `/proc/PID/status`, in bytes.
fn parse_resident_bytes(text: &str) -> Option<u64> {
    let value = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_name_whatever_it_holds() {
        let stat = "4242 (sw itch) (board)) S 1 4242 4242 0 -1 4194560 1200 0 0 0 \
                    150 37 0 0 20 0 9 0 123456 1048576 2048 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                user_ticks: 150,
                system_ticks: 37,
                start_ticks: 123_456
            })
        );
        assert_eq!(parse_stat("4242 (short) S 1 2 3"), None);
        assert_eq!(parse_stat("no name at all"), None);
    }

    #[test]
    fn boot_time_and_resident_memory_are_found_by_their_keys() {
        let proc_stat = "cpu  1 2 3 4\nintr 5\nbtime 1764500000\nprocesses 9\n";
        assert_eq!(parse_boot_time(proc_stat), Some(1_764_500_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        let status = "Name:\tswitchboard\nVmHWM:\t   9000 kB\nVmRSS:\t   8192 kB\nThreads:\t3\n";
        assert_eq!(parse_resident_bytes(status), Some(8192 * 1024));
        assert_eq!(parse_resident_bytes("VmRSS:\t8192 MB\n"), None);
    }

    #[test]
    fn this_process_reads_as_alive() {
        let stats = read().unwrap();
        assert!(stats.resident_memory_bytes > 0);
        assert!(stats.open_fds >= 3, "stdin, stdout, stderr: {stats:?}");
        assert!(stats.max_fds >= stats.open_fds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(stats.start_time_seconds > 1.0e9 && stats.start_time_seconds <= now + 1.0);
        assert!(stats.cpu_seconds >= 0.0);
    }
}
