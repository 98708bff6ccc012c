//! The `switchboard` binary: load the configuration, set up logging, run the server until
//! SIGTERM or Ctrl-C; or run a subcommand (`switchboard::cli`).

use std::process::ExitCode;

use switchboard::Server;
use switchboard::config::{ConfigError, Invocation, LogConfig, LogFormat};
use switchboard::reload::Reloader;
use tracing_subscriber::EnvFilter;

/// jemalloc: smaller idle connections than glibc malloc and memory returned to the OS after
/// load (BENCHMARKS.md, "Idle memory").
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once when it initialises (`_RJEM_MALLOC_CONF` in the environment
/// still overrides them). `background_thread`: freed memory is returned to the OS after the
/// decay time by jemalloc's own threads, in every arena. Without them an arena purges only when
/// its own threads allocate, so memory freed by a burst on a worker that then sleeps stays
/// resident indefinitely: `--max-memory` would never see the node recover, and idle nodes keep
/// their peak (BENCHMARKS.md, "Idle memory"). `dirty_decay_ms:1000` (jemalloc's default is
/// 10 s): pages a join burst left dirty were still resident 30 s later with the default,
/// ≈ 130 B per idle connection; purged within a second they are not, at no measured cost on
/// the fan-out or the handshake (BENCHMARKS.md, "jemalloc's decay time").
#[cfg(not(target_env = "msvc"))]
#[allow(unsafe_code)]
// SAFETY: jemalloc reads this symbol as a `const char *`: a thin pointer to a NUL-terminated,
// immutable string with static lifetime, which a `&'static [u8; N]` ending in `\0` is.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 43] = b"background_thread:true,dirty_decay_ms:1000\0";

fn main() -> ExitCode {
    // tokio's default runtime, plus the park hook that submits each worker's batched writes
    // (`--io-uring`; with it off the hook finds nothing queued and returns).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(switchboard::uring::on_thread_park)
        .build();
    match runtime {
        // The server runs as a task on the workers, not on this thread in `block_on`: the
        // accept loop is then woken by the worker that polls the sockets without a thread
        // switch, and the connection tasks it spawns go to that worker's own queue instead
        // of the runtime's shared one (a wake-up of another thread per accepted connection).
        Ok(runtime) => match runtime.block_on(runtime.spawn(run())) {
            Ok(code) => code,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => ExitCode::FAILURE,
        },
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let invocation = match Invocation::from_env() {
        Ok(invocation) => invocation,
        Err(ConfigError::Cli(error)) => error.exit(),
        Err(error) => return config_error(&error),
    };
    if let Some(command) = &invocation.command {
        return switchboard::cli::run(command, &invocation).await;
    }
    let config = match invocation.config() {
        Ok(config) => config,
        Err(error) => return config_error(&error),
    };
    if let Err(error) = init_logging(&config.log) {
        return config_error(&error);
    }
    for old in &invocation.sources.deprecated() {
        tracing::warn!(
            variable = %old.variable,
            instead = %old.instead,
            "deprecated environment variable"
        );
    }
    raise_open_file_limit(config.hub.limits.max_connections);
    // Registered before the server listens: the default action of SIGTERM and SIGINT would end
    // the process at once, without the graceful shutdown.
    let shutdown = shutdown_signal();
    let server = match Server::bind(config).await {
        Ok(server) => server,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    // Registered before the server listens: SIGHUP's default action would end the process.
    let reloads = reload_on_hangup(server.reloader());
    // A shutdown that hit its deadline is logged as a warning; the exit is still the
    // requested one, so supervisors do not treat it as a crash.
    tokio::select! {
        _ = server.run_until(shutdown) => {}
        () = reloads => {}
    }
    ExitCode::SUCCESS
}

/// Raises the open-file limit to what `max_connections` needs, as far as the hard limit
/// allows, and logs the outcome; a failure is a warning, not a reason not to start.
fn raise_open_file_limit(max_connections: usize) {
    #[cfg(unix)]
    match switchboard::process::open_files::raise(max_connections) {
        Ok(outcome) => outcome.log(max_connections),
        Err(error) => tracing::warn!(%error, max_connections, "open-file limit unchanged"),
    }
    #[cfg(not(unix))]
    let _ = max_connections;
}

/// Prints a configuration error; exit code 2.
fn config_error(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("switchboard: {error}");
    ExitCode::from(2)
}

/// Logs to stderr with the configured filter, or `RUST_LOG` when set, which must parse too.
/// Colours only on a terminal: escape codes garble files, journald and log collectors.
fn init_logging(config: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => {
            EnvFilter::try_new(&filter).map_err(|e| format!("invalid RUST_LOG {filter:?}: {e}"))?
        }
        _ => EnvFilter::try_new(&config.filter)
            .map_err(|e| format!("invalid log_level {:?}: {e}", config.filter))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Reloads the TLS and JWT key files on every SIGHUP; never completes. The handler is
/// installed now, before the future is first polled.
fn reload_on_hangup(reloader: Reloader) -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        match hangups {
            Ok(mut hangups) => {
                while hangups.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading the key files");
                    reloader.reload();
                }
            }
            Err(error) => tracing::warn!(%error, "no reloads on SIGHUP"),
        }
        #[cfg(not(unix))]
        let _ = reloader;
        std::future::pending::<()>().await;
    }
}

/// Registers for SIGTERM and Ctrl-C (SIGINT) now; the future completes on either.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let next = |stream: std::io::Result<tokio::signal::unix::Signal>| async move {
                match stream {
                    Ok(mut stream) => {
                        stream.recv().await;
                    }
                    Err(_) => std::future::pending().await,
                }
            };
            tokio::select! {
                () = next(terminate) => {}
                () = next(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
