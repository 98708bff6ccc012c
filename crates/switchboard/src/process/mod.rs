//! What the server asks of its own process and reads about it: the open-file limit it raises
//! at start ([`open_files`]) and its resource use for `/metrics` ([`stats`], Linux only).
//! Nothing here knows about connections or the hub; callers pass in the numbers they need.
//! The system calls behind both are in `sys`, the crate's only `unsafe` code.

pub mod open_files;
#[cfg(target_os = "linux")]
pub mod stats;
#[cfg(unix)]
mod sys;
