//! Worker processes: the tool re-executes itself as `switchboard-bench worker --json-config
//! SPEC` to hold more connections than one process may open (one socket per file descriptor).
//!
//! Owns both ends of the control path. The parent writes one JSON [`Command`] per line to the
//! worker's stdin; the worker answers each with one JSON [`Event`] line on stdout (its stderr is
//! the parent's). A worker whose stdin closes (the parent is gone) closes its connections and
//! exits; a worker that outlives its own deadline exits too. Children are killed if the parent
//! drops them.

use std::process::Stdio;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command as Process};

use crate::pool::{Closed, Opened, Pool, PoolSpec};
use crate::shared::Tally;

/// Parent to worker.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub(crate) enum Command {
    /// Open the connections of the spec; answered with `Opened`.
    Open,
    /// Measure latency of messages stamped in `[start_ns, end_ns)`; answered with `Ack`.
    Window {
        /// Window start, ns since the epoch.
        start_ns: u64,
        /// Window end, ns since the epoch.
        end_ns: u64,
    },
    /// Report the counters; answered with `Tally`.
    Tally,
    /// Close every connection and exit; answered with `Closed`.
    Close,
}

/// Worker to parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// The pool is open.
    Opened(Opened),
    /// A command was carried out.
    Ack,
    /// The counters.
    Tally(Tally),
    /// The pool is closed; the worker exits.
    Closed(Closed),
    /// The command could not be carried out.
    Failed {
        /// Why.
        error: String,
    },
}

/// A failure of the control path.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WorkerError {
    /// The worker could not be started.
    #[error("cannot start a worker process")]
    Spawn(#[source] std::io::Error),
    /// Reading or writing a control pipe failed.
    #[error("control pipe of worker {pid}")]
    Pipe {
        /// The worker.
        pid: u32,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The worker exited without answering.
    #[error("worker {0} exited without answering (see its messages above)")]
    Gone(u32),
    /// A line that is not the expected JSON.
    #[error("worker {pid} sent an unexpected line: {line}")]
    Unexpected {
        /// The worker.
        pid: u32,
        /// The line.
        line: String,
    },
    /// The worker reported a failure.
    #[error("worker {pid} failed: {error}")]
    Failed {
        /// The worker.
        pid: u32,
        /// Its message.
        error: String,
    },
}

/// The worker side: serves commands from stdin until `Close` or the end of stdin.
pub(crate) async fn serve(spec: PoolSpec) -> std::io::Result<()> {
    let mut commands = BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    let mut pool: Option<Pool> = None;
    while let Some(line) = commands.next_line().await? {
        let event = match serde_json::from_str::<Command>(&line) {
            Err(error) => Event::Failed {
                error: format!("bad command {line:?}: {error}"),
            },
            Ok(Command::Open) => match Pool::open(&spec).await {
                Ok((opened_pool, opened)) => {
                    pool = Some(opened_pool);
                    Event::Opened(opened)
                }
                Err(error) => Event::Failed {
                    error: crate::error_chain(&error),
                },
            },
            Ok(Command::Window { start_ns, end_ns }) => {
                if let Some(pool) = &pool {
                    pool.set_window(start_ns, end_ns);
                }
                Event::Ack
            }
            Ok(Command::Tally) => Event::Tally(pool.as_ref().map(Pool::tally).unwrap_or_default()),
            Ok(Command::Close) => {
                let closed = match pool.take() {
                    Some(pool) => pool.close().await,
                    None => Closed::default(),
                };
                write_line(&mut stdout, &Event::Closed(closed)).await?;
                return Ok(());
            }
        };
        write_line(&mut stdout, &event).await?;
    }
    if let Some(pool) = pool {
        pool.close().await;
    }
    Ok(())
}

async fn write_line(out: &mut tokio::io::Stdout, event: &Event) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(event).map_err(std::io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}

/// A running worker, seen from the parent.
#[derive(Debug)]
struct Worker {
    pid: u32,
    /// Killed on drop, so a parent that gives up leaves no worker behind.
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    async fn spawn(spec: &PoolSpec, deadline_s: f64) -> Result<Self, WorkerError> {
        let exe = std::env::current_exe().map_err(WorkerError::Spawn)?;
        let config = serde_json::to_string(spec).map_err(|e| WorkerError::Spawn(e.into()))?;
        let mut child = Process::new(exe)
            .arg("worker")
            .arg("--json-config")
            .arg(config)
            .arg("--deadline")
            .arg(deadline_s.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(WorkerError::Spawn)?;
        let pid = child.id().unwrap_or_default();
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(WorkerError::Gone(pid));
        };
        Ok(Self {
            pid,
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }

    async fn send(&mut self, command: Command) -> Result<(), WorkerError> {
        let pipe = |source| WorkerError::Pipe {
            pid: self.pid,
            source,
        };
        let mut line = serde_json::to_vec(&command).map_err(|e| pipe(e.into()))?;
        line.push(b'\n');
        self.stdin.write_all(&line).await.map_err(pipe)?;
        self.stdin.flush().await.map_err(pipe)
    }

    async fn receive(&mut self) -> Result<Event, WorkerError> {
        let pid = self.pid;
        let line = self
            .stdout
            .next_line()
            .await
            .map_err(|source| WorkerError::Pipe { pid, source })?
            .ok_or(WorkerError::Gone(pid))?;
        match serde_json::from_str(&line) {
            Ok(Event::Failed { error }) => Err(WorkerError::Failed { pid, error }),
            Ok(event) => Ok(event),
            Err(_) => Err(WorkerError::Unexpected { pid, line }),
        }
    }
}

/// All worker processes of a run; commands go to every worker, which work in parallel.
#[derive(Debug)]
pub(crate) struct Workers {
    workers: Vec<Worker>,
}

impl Workers {
    /// Starts one worker per spec; each exits by itself after `deadline_s` seconds.
    pub(crate) async fn spawn(specs: &[PoolSpec], deadline_s: f64) -> Result<Self, WorkerError> {
        let mut workers = Vec::with_capacity(specs.len());
        for spec in specs {
            workers.push(Worker::spawn(spec, deadline_s).await?);
        }
        Ok(Self { workers })
    }

    /// The workers' process ids.
    pub(crate) fn pids(&self) -> Vec<u32> {
        self.workers.iter().map(|w| w.pid).collect()
    }

    async fn all(&mut self, command: Command) -> Result<Vec<Event>, WorkerError> {
        for worker in &mut self.workers {
            worker.send(command).await?;
        }
        let mut events = Vec::with_capacity(self.workers.len());
        for worker in &mut self.workers {
            events.push(worker.receive().await?);
        }
        Ok(events)
    }

    /// Opens every pool.
    pub(crate) async fn open(&mut self) -> Result<Opened, WorkerError> {
        let mut total = Opened::default();
        for event in self.all(Command::Open).await? {
            match event {
                Event::Opened(opened) => total.add(&opened),
                other => return Err(self.unexpected(&other)),
            }
        }
        Ok(total)
    }

    /// Sets the latency window of every pool.
    pub(crate) async fn window(&mut self, start_ns: u64, end_ns: u64) -> Result<(), WorkerError> {
        self.all(Command::Window { start_ns, end_ns }).await?;
        Ok(())
    }

    /// The counters of all pools, added up.
    pub(crate) async fn tally(&mut self) -> Result<Tally, WorkerError> {
        let mut total = Tally::default();
        for event in self.all(Command::Tally).await? {
            match event {
                Event::Tally(tally) => total.add(&tally),
                other => return Err(self.unexpected(&other)),
            }
        }
        Ok(total)
    }

    /// Closes every pool and lets the workers exit.
    pub(crate) async fn close(mut self) -> Result<Closed, WorkerError> {
        let mut total = Closed::default();
        for event in self.all(Command::Close).await? {
            match event {
                Event::Closed(closed) => total.add(&closed),
                other => return Err(self.unexpected(&other)),
            }
        }
        for worker in &mut self.workers {
            let _ = worker.child.wait().await;
        }
        Ok(total)
    }

    fn unexpected(&self, event: &Event) -> WorkerError {
        WorkerError::Unexpected {
            pid: self.workers.first().map_or(0, |w| w.pid),
            line: format!("{event:?}"),
        }
    }
}
