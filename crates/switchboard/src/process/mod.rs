//! What the server asks of its own process and reads about it: the open-file limit it raises
//! at start ([`open_files`]). Nothing here knows about connections or the hub; the binary
//! passes in the numbers it needs.

pub mod open_files;
