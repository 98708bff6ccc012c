//! The system calls of this module, the crate's only `unsafe` code: `getrlimit`, `setrlimit`
//! and `sysconf` (clock ticks, page size). Each passes plain values, or a pointer to a local `rlimit` that lives across
//! the call, and a valid resource or name.

#![allow(unsafe_code)]

use std::io;

use super::open_files::Limit;

/// The open-file limits.
pub(super) fn nofile() -> io::Result<Limit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` for the duration of the call.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Limit {
        soft: from_rlim(limit.rlim_cur),
        hard: from_rlim(limit.rlim_max),
    })
}

/// Sets the open-file limits.
pub(super) fn set_nofile(limit: Limit) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: to_rlim(limit.soft),
        rlim_max: to_rlim(limit.hard),
    };
    // SAFETY: `limit` is a valid `rlimit` for the duration of the call, which only reads it.
    let result = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Clock ticks per second, the unit of the CPU times in `/proc/PID/stat`.
#[cfg(target_os = "linux")]
pub(super) fn clock_ticks_per_second() -> io::Result<u64> {
    // SAFETY: `sysconf` takes a plain integer and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .ok_or_else(io::Error::last_os_error)
}

/// The size of a memory page, the unit of `/proc/PID/statm`.
#[cfg(target_os = "linux")]
pub(super) fn page_size() -> io::Result<u64> {
    // SAFETY: `sysconf` takes a plain integer and touches no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|&size| size > 0)
        .ok_or_else(io::Error::last_os_error)
}

/// `rlim_t` is 64 bits on 64-bit targets and 32 on some 32-bit ones, where the conversions
/// are not the identity.
#[allow(clippy::useless_conversion)]
fn from_rlim(value: libc::rlim_t) -> u64 {
    if value == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        u64::from(value)
    }
}

#[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
fn to_rlim(value: u64) -> libc::rlim_t {
    libc::rlim_t::try_from(value).unwrap_or(libc::RLIM_INFINITY)
}
