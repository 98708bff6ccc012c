//! The process's resident memory, read cheaply for `--max-memory`: one read of
//! `/proc/self/statm` (a single line of page counts) per call, Linux only. The hub's memory
//! sweep calls it periodically; nothing on the message path does.

use std::io;

/// The process's resident set size, in bytes.
pub fn resident_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages = parse_resident_pages(&statm).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "unexpected contents of /proc/self/statm",
        )
    })?;
    Ok(pages.saturating_mul(super::sys::page_size()?))
}

/// The second field of `/proc/PID/statm`: resident pages.
fn parse_resident_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_pages_are_the_second_field() {
        assert_eq!(
            parse_resident_pages("2466 1021 512 180 0 300 0\n"),
            Some(1021)
        );
        assert_eq!(parse_resident_pages("2466"), None);
        assert_eq!(parse_resident_pages("2466 x 512"), None);
    }

    #[test]
    fn this_process_is_resident_and_agrees_with_the_metrics_reading() {
        let statm = resident_bytes().unwrap();
        let status = super::super::stats::read().unwrap().resident_memory_bytes;
        assert!(statm > 0);
        // Two readings a few allocations apart: equal to within a few MiB.
        assert!(
            statm.abs_diff(status) < 8 << 20,
            "statm {statm}, status {status}"
        );
    }
}
