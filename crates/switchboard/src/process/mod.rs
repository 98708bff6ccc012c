//! What the server asks of its own process and reads about it: the open-file limit it raises
//! at start ([`open_files`]), its resource use for `/metrics` ([`stats`], Linux only) and its
//! resident memory for `--max-memory` ([`memory`], Linux only).
//! Nothing here knows about connections or the hub; callers pass in the numbers they need.
//! The system calls behind both are in `sys`, the crate's only `unsafe` code.

#[cfg(target_os = "linux")]
pub mod memory;
pub mod open_files;
#[cfg(target_os = "linux")]
pub mod stats;
#[cfg(unix)]
mod sys;
