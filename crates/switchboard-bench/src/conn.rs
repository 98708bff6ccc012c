//! One client connection: open it (TCP connect from an optional source address, upgrade, wait
//! for `connect`, optionally join a room), then receive until told to stop, counting deliveries,
//! sampling their stamps, answering pings and, for a publisher, sending on an absolute schedule;
//! then close politely.
//!
//! Owns the per-connection state, kept small because an idle run holds 100 000 connections: no
//! read buffer of its own (reads go into the runtime thread's [`READ_BUF`]), only the unfinished
//! tail of a frame. What a group of connections saw is added up in a shared [`Shared`].

use std::cell::RefCell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use switchboard_protocol::{CloseCode, ServerKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::histogram::AtomicHistogram;
use crate::payload::{self, Format, Stamped};
use crate::shared::Shared;
use crate::target::Target;
use crate::ws::{self, FrameError, Scanner};

/// How long a closing connection waits for the server to finish the closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Reads per wake-up before yielding to other connections.
const READS_PER_WAKE: usize = 4;

thread_local! {
    /// The read buffer of a runtime thread. A connection borrows it only between two awaits,
    /// so one 64 KiB buffer per thread serves every connection the thread runs.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; 64 << 10]);
}

/// Why a connection could not be opened or ended abnormally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    /// `bind()` to the source address failed.
    #[error("cannot bind to source address {ip}")]
    Bind {
        /// The source address.
        ip: IpAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Any other socket error.
    #[error("socket error")]
    Io(#[from] io::Error),
    /// The server answered the upgrade with another status than 101.
    #[error("upgrade refused with HTTP status {0}")]
    Refused(u16),
    /// The response head did not end within [`ws::MAX_HEAD`] bytes.
    #[error("no end of the HTTP response head within {} bytes", ws::MAX_HEAD)]
    HeadTooLong,
    /// The server sent a close frame while we waited for a reply.
    #[error("the server closed the WebSocket with code {0}")]
    Closed(u16),
    /// The server closed TCP while we waited for a reply.
    #[error("the server closed the TCP connection")]
    Eof,
    /// The server's byte stream is not valid WebSocket framing.
    #[error("bad framing from the server")]
    Frame(#[from] FrameError),
    /// The server answered with an `error` frame (its start is kept, it is data, not a cause).
    #[error("the server answered with an error: {0}")]
    Server(String),
}

/// What one read step saw.
#[derive(Debug, Default)]
struct Batch {
    delivered: u64,
    other: u64,
    /// A frame of the awaited type arrived.
    awaited: bool,
    /// The start of an `error` frame that arrived while waiting.
    error: Option<String>,
    /// The server's close code, when it sent a close frame.
    close: Option<u16>,
    /// The server closed TCP.
    eof: bool,
}

/// How the receive loop ended.
enum Ended {
    Stopped,
    ClosedByServer(u16),
}

/// An open connection.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    state: State,
}

/// Everything of a connection but its socket.
#[derive(Debug)]
struct State {
    scanner: Scanner,
    mask: [u8; 4],
    /// Which connection of its group this is; offsets which frames it samples.
    index: u64,
    /// How it encodes its frames (its group's format; kept here for its publisher).
    format: Format,
    /// Deliveries seen so far.
    seen: u64,
    /// Control frames to write (pongs, the close echo); unallocated when there are none.
    replies: Vec<u8>,
    /// A close frame was sent (by us first, or as the echo of the server's).
    closing: bool,
}

/// Where a connection goes and as whom.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dial<'a> {
    /// The server.
    pub(crate) target: &'a Target,
    /// The local address to bind before connecting, if any.
    pub(crate) source: Option<IpAddr>,
    /// The `userId`.
    pub(crate) user: &'a str,
    /// The connection's index in its group.
    pub(crate) index: u64,
}

impl State {
    /// Handles the frames completed by `data`, received at `now_ns`.
    fn process(
        &mut self,
        data: &[u8],
        shared: &Shared,
        awaited: Option<ServerKind>,
        now_ns: u64,
        batch: &mut Batch,
    ) -> Result<(), FrameError> {
        let Self {
            scanner,
            mask,
            index,
            seen,
            replies,
            closing,
            ..
        } = self;
        scanner.feed(data, &mut |frame| match frame.opcode {
            ws::OP_TEXT | ws::OP_BINARY | ws::OP_CONTINUATION => {
                if shared.is_delivery(frame.payload) {
                    batch.delivered += 1;
                    *seen += 1;
                    if shared.samples(*seen + *index) {
                        shared.record_stamp(frame.payload, now_ns);
                    }
                    return;
                }
                batch.other += 1;
                let Some(want) = awaited else { return };
                if shared.format().has_type(frame.payload, want) {
                    batch.awaited = true;
                } else if shared.format().has_type(frame.payload, ServerKind::Error)
                    && batch.error.is_none()
                {
                    let start = &frame.payload[..frame.payload.len().min(200)];
                    batch.error = Some(String::from_utf8_lossy(start).into_owned());
                }
            }
            ws::OP_PING => {
                shared.add_ping();
                ws::encode_client_frame(replies, ws::OP_PONG, frame.payload, *mask);
            }
            ws::OP_CLOSE => {
                let code = ws::close_code(frame.payload);
                batch.close = Some(code);
                if !*closing {
                    *closing = true;
                    let echo = if code == 1005 {
                        &[][..]
                    } else {
                        &frame.payload[..2]
                    };
                    ws::encode_client_frame(replies, ws::OP_CLOSE, echo, *mask);
                }
            }
            _ => batch.other += 1,
        })
    }
}

impl Conn {
    /// Connects, upgrades and waits for the `connect` frame.
    pub(crate) async fn open(dial: Dial<'_>, shared: &Shared) -> Result<Self, ConnError> {
        let addr = dial.target.addr();
        let socket = match addr {
            SocketAddr::V4(_) => TcpSocket::new_v4()?,
            SocketAddr::V6(_) => TcpSocket::new_v6()?,
        };
        if let Some(ip) = dial.source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|source| ConnError::Bind { ip, source })?;
        }
        let mut stream = socket
            .connect(addr)
            .await
            .map_err(|source| ConnError::Connect { addr, source })?;
        stream.set_nodelay(true)?;
        let mut request = ws::upgrade_request(
            dial.target.host(),
            &dial.target.path_for(dial.user),
            &ws::random_key(),
        );
        // Before the blank line that ends the head.
        request.insert_str(request.len() - 2, &shared.format().protocol_header());
        stream.write_all(request.as_bytes()).await?;
        let mut head = Vec::with_capacity(1024);
        let parsed = loop {
            if stream.read_buf(&mut head).await? == 0 {
                return Err(ConnError::Eof);
            }
            if let Some(parsed) = ws::response_head(&head) {
                break parsed;
            }
            if head.len() > ws::MAX_HEAD {
                return Err(ConnError::HeadTooLong);
            }
        };
        if parsed.status != 101 {
            return Err(ConnError::Refused(parsed.status));
        }
        let mut conn = Self {
            stream,
            state: State {
                scanner: Scanner::default(),
                mask: ws::random_mask(),
                index: dial.index,
                format: shared.format(),
                seen: 0,
                replies: Vec::new(),
                closing: false,
            },
        };
        let mut batch = Batch::default();
        conn.state.process(
            &head[parsed.len..],
            shared,
            Some(ServerKind::Connect),
            payload::now_ns(),
            &mut batch,
        )?;
        drop(head);
        conn.wait_for(ServerKind::Connect, shared, batch)
            .await
            .map(|()| conn)
    }

    /// Joins `room` and waits for `room_joined`.
    pub(crate) async fn join(&mut self, room: &str, shared: &Shared) -> Result<(), ConnError> {
        let mut frame = Vec::new();
        let join = payload::join_room(room);
        let (opcode, join) = self.state.format.client_payload(join.as_bytes());
        ws::encode_client_frame(&mut frame, opcode, &join, self.state.mask);
        self.stream.write_all(&frame).await?;
        self.wait_for(ServerKind::RoomJoined, shared, Batch::default())
            .await
    }

    async fn wait_for(
        &mut self,
        want: ServerKind,
        shared: &Shared,
        mut batch: Batch,
    ) -> Result<(), ConnError> {
        loop {
            shared.add(batch.delivered, batch.other);
            if batch.awaited {
                return Ok(());
            }
            if let Some(error) = batch.error {
                return Err(ConnError::Server(error));
            }
            if let Some(code) = batch.close {
                return Err(ConnError::Closed(code));
            }
            if batch.eof {
                return Err(ConnError::Eof);
            }
            batch = self.read_step(shared, Some(want)).await?;
        }
    }

    /// Waits for data, reads what is there (up to a few 64 KiB reads) and handles its frames.
    async fn read_step(
        &mut self,
        shared: &Shared,
        awaited: Option<ServerKind>,
    ) -> Result<Batch, ConnError> {
        self.stream.readable().await?;
        let mut batch = Batch::default();
        let Self { stream, state } = self;
        let read = READ_BUF.with_borrow_mut(|buf| -> Result<(), ConnError> {
            for _ in 0..READS_PER_WAKE {
                let n = match stream.try_read(buf) {
                    Ok(0) => {
                        batch.eof = true;
                        return Ok(());
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e.into()),
                };
                shared.add_bytes(n);
                state.process(&buf[..n], shared, awaited, payload::now_ns(), &mut batch)?;
                if n < buf.len() {
                    return Ok(());
                }
            }
            Ok(())
        });
        if !state.replies.is_empty() {
            let replies = std::mem::take(&mut state.replies);
            stream.write_all(&replies).await?;
        }
        read.map(|()| batch)
    }

    /// Receives (and publishes, with a `publisher`) until `stop` turns true or the server
    /// closes, then closes the connection.
    pub(crate) async fn run(
        mut self,
        shared: Arc<Shared>,
        mut stop: watch::Receiver<bool>,
        mut publisher: Option<Publisher>,
    ) {
        match self.serve(&shared, &mut stop, publisher.as_mut()).await {
            Ok(Ended::Stopped) => {}
            Ok(Ended::ClosedByServer(code)) => shared.add_close(code),
            Err(ConnError::Eof) => shared.add_close(1006),
            Err(_) => shared.add_error(),
        }
        self.close(&shared).await;
    }

    async fn serve(
        &mut self,
        shared: &Shared,
        stop: &mut watch::Receiver<bool>,
        mut publisher: Option<&mut Publisher>,
    ) -> Result<Ended, ConnError> {
        enum Wake {
            Stop,
            Readable,
            Due,
        }
        loop {
            let due = publisher.as_ref().and_then(|p| p.due());
            let wake = tokio::select! {
                biased;
                _ = stop.wait_for(|&stopped| stopped) => Wake::Stop,
                ready = self.stream.readable() => {
                    ready?;
                    Wake::Readable
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                    Wake::Due
                }
            };
            match wake {
                Wake::Stop => return Ok(Ended::Stopped),
                Wake::Readable => {
                    let batch = self.read_step(shared, None).await?;
                    shared.add(batch.delivered, batch.other);
                    if let Some(code) = batch.close {
                        return Ok(Ended::ClosedByServer(code));
                    }
                    if batch.eof {
                        return Err(ConnError::Eof);
                    }
                }
                Wake::Due => {
                    if let Some(publisher) = publisher.as_deref_mut() {
                        publisher.send(self).await?;
                    }
                }
            }
        }
    }

    /// Sends our close frame (unless one was sent) and waits for the server to close TCP, so
    /// the TIME_WAIT state lands on the server's side and our source ports are free at once.
    pub(crate) async fn close(mut self, shared: &Shared) {
        if !self.state.closing {
            self.state.closing = true;
            let normal = CloseCode::Normal.as_u16();
            ws::encode_client_close(&mut self.state.replies, normal, "", self.state.mask);
        }
        let replies = std::mem::take(&mut self.state.replies);
        if self.stream.write_all(&replies).await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Ok(batch) = self.read_step(shared, None).await {
                if batch.eof {
                    break;
                }
            }
        })
        .await;
    }
}

/// What the publishers of a run share: messages sent and how late each send was.
#[derive(Debug, Default)]
pub(crate) struct PublishStats {
    /// Messages sent.
    pub(crate) sent: AtomicU64,
    /// Send time minus scheduled time, in ns.
    pub(crate) lag: AtomicHistogram,
}

/// Sends stamped messages on an absolute schedule: message `k` is due at `start + k / rate`,
/// so a late send does not push back the ones after it.
#[derive(Debug)]
pub(crate) struct Publisher {
    stamped: Stamped,
    start: Instant,
    rate: f64,
    total: u64,
    next: u64,
    json: Vec<u8>,
    frame: Vec<u8>,
    stats: Arc<PublishStats>,
}

impl Publisher {
    /// `total` messages at `rate` per second from `start`.
    pub(crate) fn new(
        stamped: Stamped,
        start: Instant,
        rate: f64,
        total: u64,
        stats: Arc<PublishStats>,
    ) -> Self {
        Self {
            stamped,
            start,
            rate,
            total,
            next: 0,
            json: Vec::new(),
            frame: Vec::new(),
            stats,
        }
    }

    fn due(&self) -> Option<Instant> {
        (self.next < self.total)
            .then(|| self.start + Duration::from_secs_f64(self.next as f64 / self.rate))
    }

    async fn send(&mut self, conn: &mut Conn) -> Result<(), ConnError> {
        let Some(scheduled) = self.due() else {
            return Ok(());
        };
        let lag = Instant::now().saturating_duration_since(scheduled);
        self.stamped.write(&mut self.json, payload::now_ns());
        self.frame.clear();
        let (opcode, payload) = conn.state.format.client_payload(&self.json);
        ws::encode_client_frame(&mut self.frame, opcode, &payload, conn.state.mask);
        conn.stream.write_all(&self.frame).await?;
        self.next += 1;
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        self.stats
            .lag
            .record(u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX));
        Ok(())
    }
}
