//! The open-file limit (`RLIMIT_NOFILE`). Every connection is a file descriptor, and the usual
//! soft limit (1024) is far below the default `--max-connections` (10 000): past it `accept`
//! fails and clients see refused connections long before the server is busy. So at start the
//! binary raises the soft limit to what `max_connections` [needs](needed), as far as the hard
//! limit allows (an unprivileged process may not raise the hard limit), and says what it did
//! ([`OpenFiles::log`]): raised, already enough, or short of the need, with how to fix it.
//!
//! The limit is only read and set here, once, before the listener is bound; nothing else in the
//! crate touches it. A library user's process is left alone: only the binary calls [`raise`].

use std::io;

/// Descriptors kept free beyond the connections: the listeners, Redis connections (publisher,
/// subscriber, reads), the data directory's files, plain HTTP requests (`/metrics`, `/api`,
/// refused upgrades) and the runtime's own (epoll, eventfds, stdio).
pub const MARGIN: u64 = 256;

/// The soft limit `max_connections` needs: one descriptor per connection and [`MARGIN`].
pub fn needed(max_connections: usize) -> u64 {
    u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(MARGIN)
}

/// The process's open-file limits; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The limit in force, which the process may raise up to `hard`.
    pub soft: u64,
    /// The ceiling of `soft`.
    pub hard: u64,
}

/// The soft limit to set for `needed` descriptors: `needed` when the hard limit allows it,
/// else the hard limit; never lower than the current soft limit.
pub fn target(current: Limit, needed: u64) -> u64 {
    if current.soft >= needed {
        return current.soft;
    }
    needed.min(current.hard).max(current.soft)
}

/// What [`raise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The limits before.
    pub before: Limit,
    /// The soft limit now.
    pub soft: u64,
    /// What the configuration needs.
    pub needed: u64,
}

impl OpenFiles {
    /// Whether the soft limit now covers the need.
    pub fn is_enough(&self) -> bool {
        self.soft >= self.needed
    }

    /// Logs the outcome: a warning, with the remedy, when the limit stays short of the need.
    pub fn log(&self, max_connections: usize) {
        let Self {
            before,
            soft,
            needed,
        } = *self;
        if !self.is_enough() {
            tracing::warn!(
                limit = soft,
                hard_limit = before.hard,
                needed,
                max_connections,
                "the open-file limit is below what max_connections needs: connections past it \
                 will be refused; raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd, \
                 --ulimit nofile= in Docker) or lower --max-connections"
            );
        } else if soft > before.soft {
            tracing::info!(
                from = before.soft,
                to = soft,
                needed,
                max_connections,
                "raised the open-file limit"
            );
        } else {
            tracing::info!(limit = soft, needed, "the open-file limit is enough");
        }
    }
}

/// Why the limit could not be read or set.
#[derive(Debug, thiserror::Error)]
pub enum OpenFilesError {
    /// `getrlimit` failed.
    #[error("cannot read the open-file limit: {0}")]
    Read(#[source] io::Error),
    /// `setrlimit` failed.
    #[error("cannot raise the open-file limit to {to}: {source}")]
    Raise {
        /// The soft limit asked for.
        to: u64,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The process's open-file limits now.
#[cfg(unix)]
pub fn current() -> io::Result<Limit> {
    super::sys::nofile()
}

/// Raises the soft open-file limit towards what `max_connections` needs (see [`target`]).
#[cfg(unix)]
pub fn raise(max_connections: usize) -> Result<OpenFiles, OpenFilesError> {
    let needed = needed(max_connections);
    let before = current().map_err(OpenFilesError::Read)?;
    let soft = target(before, needed);
    if soft != before.soft {
        super::sys::set_nofile(Limit { soft, ..before })
            .map_err(|source| OpenFilesError::Raise { to: soft, source })?;
    }
    Ok(OpenFiles {
        before,
        soft,
        needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_need_is_one_per_connection_and_the_margin() {
        assert_eq!(needed(10_000), 10_000 + MARGIN);
        assert_eq!(needed(1), 1 + MARGIN);
        assert_eq!(needed(usize::MAX), u64::MAX);
    }

    #[test]
    fn the_soft_limit_rises_to_the_need_within_the_hard_limit() {
        let limit = |soft, hard| Limit { soft, hard };
        // Enough already: unchanged, even far above the need.
        assert_eq!(target(limit(20_000, 20_000), 10_256), 20_000);
        assert_eq!(target(limit(10_256, 20_000), 10_256), 10_256);
        // One short: raised to exactly the need, not to the hard limit.
        assert_eq!(target(limit(10_255, 1 << 20), 10_256), 10_256);
        assert_eq!(target(limit(1024, u64::MAX), 10_256), 10_256);
        // The hard limit stops it: as far as it goes.
        assert_eq!(target(limit(1024, 4096), 10_256), 4096);
        assert_eq!(target(limit(1024, 10_255), 10_256), 10_255);
        assert_eq!(target(limit(1024, 10_256), 10_256), 10_256);
        // Nowhere to go.
        assert_eq!(target(limit(1024, 1024), 10_256), 1024);
        // A soft limit above a lower hard one (only root can make that) is never lowered.
        assert_eq!(target(limit(2048, 1024), 10_256), 2048);
    }

    #[test]
    fn enough_means_the_soft_limit_covers_the_need() {
        let outcome = |soft| OpenFiles {
            before: Limit {
                soft: 1024,
                hard: 4096,
            },
            soft,
            needed: 4096,
        };
        assert!(outcome(4096).is_enough());
        assert!(!outcome(4095).is_enough());
    }

    #[cfg(unix)]
    #[test]
    fn raising_to_what_the_process_has_changes_nothing() {
        let before = current().unwrap();
        let outcome = raise(0).unwrap();
        assert_eq!(outcome.before, before);
        assert_eq!(outcome.needed, MARGIN);
        assert_eq!(current().unwrap().soft, before.soft.max(outcome.soft));
    }
}
