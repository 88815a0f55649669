//! Connections: the accept loop in place of `axum::serve`. A client gets a deadline to send a
//! request head and a deadline to idle between requests; connections are capped, and past the
//! cap the one idle the longest is closed to make room, so that idle sockets cannot keep a new
//! caller (a health check) out; accept errors (out of file descriptors) back off and never end
//! the listener; shutdown stops accepting and lets requests in flight finish.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection settings.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections open at once (lowered to what the open-file limit allows).
    pub max_connections: usize,
    /// From its opening, or from the first byte of a later request, a connection has this long
    /// to deliver a complete request head.
    pub header_timeout: Duration,
    /// How long a connection may wait, silent, for its next request.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// File descriptors kept for everything but client connections: the database pool (SQLite
/// opens three files a connection), the runtime, outbound calls to identity providers, the
/// audit export.
const RESERVED_FILES: u64 = 128;
/// Pause after an accept error that is not the client's doing, such as EMFILE: retrying at
/// once would spin on the same error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// How often, over the cap, the loop looks again for an idle connection to close.
const OVER_CAP_RECHECK: Duration = Duration::from_millis(100);

/// Raises the soft limit on open files to the hard limit and returns the soft limit now in
/// force. Distributions start services with a soft limit of 1024, which a few hundred slow
/// clients exhaust, while the hard limit, which any process may raise its soft limit to, is
/// usually far higher.
#[cfg(unix)]
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` through the pointer, which points to a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the `rlimit` the pointer points to, a live local.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// The soft limit on open files, if it can be read.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `raise_open_file_limit`: one write into a live local.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0).then_some(limit.rlim_cur)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// The cap in force: the setting, lowered so that connections alone cannot exhaust the
/// process's file descriptors (accept would then fail instead of closing an idle connection).
fn effective_cap(configured: usize) -> usize {
    let allowed = open_file_limit()
        .map(|files| files.saturating_sub(RESERVED_FILES))
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(usize::MAX);
    if allowed < configured {
        tracing::warn!(
            configured,
            allowed,
            "COREAUTH_MAX_CONNECTIONS lowered to what the open-file limit (ulimit -n) allows"
        );
    }
    configured.min(allowed).max(1)
}

/// What the accept loop and a connection's task know of one connection. Times are
/// milliseconds since the registry's epoch; 0 in `head_started` means no head is pending.
struct Connection {
    id: u64,
    in_flight: AtomicU32,
    last_done: AtomicU64,
    head_started: AtomicU64,
    evicting: AtomicBool,
    evict: Notify,
    /// Told when a request's answer is ready: the connection's next deadline moves.
    answered: Notify,
}

impl Connection {
    fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

struct Registry {
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    /// The number open, for waiting until it drops.
    count: watch::Sender<usize>,
}

impl Registry {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            count: watch::Sender::new(0),
        }
    }

    /// Never 0, which stands for "not set".
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms.saturating_sub(1))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        // The map stays consistent whatever a panicking holder did: each step is one insert
        // or remove.
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn add(&self) -> Arc<Connection> {
        let now = self.now_ms();
        let connection = Arc::new(Connection {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            in_flight: AtomicU32::new(0),
            last_done: AtomicU64::new(now),
            // The first head is due from the opening, whether or not a byte has come.
            head_started: AtomicU64::new(now),
            evicting: AtomicBool::new(false),
            evict: Notify::new(),
            answered: Notify::new(),
        });
        let mut open = self.lock();
        open.insert(connection.id, connection.clone());
        self.count.send_replace(open.len());
        connection
    }

    fn remove(&self, id: u64) {
        let mut open = self.lock();
        open.remove(&id);
        self.count.send_replace(open.len());
    }

    /// Asks the connection that has been idle longest to close; false when none is idle.
    fn evict_longest_idle(&self) -> bool {
        let victim = self
            .lock()
            .values()
            .filter(|c| c.idle() && !c.evicting.load(Ordering::Acquire))
            .min_by_key(|c| c.last_done.load(Ordering::Acquire))
            .cloned();
        let Some(victim) = victim else {
            return false;
        };
        victim.evicting.store(true, Ordering::Release);
        victim.evict.notify_one();
        true
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits
/// for the open connections to finish their requests and close.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let cap = effective_cap(limits.max_connections);
    let registry = Arc::new(Registry::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    let mut count = registry.count.subscribe();
    let mut last_error_logged: Option<Instant> = None;
    'accepting: loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Answers are written whole; Nagle would only hold back their last segment.
                let _ = stream.set_nodelay(true);
                let connection = registry.add();
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    connection,
                    registry.clone(),
                    limits.clone(),
                    stop_rx.clone(),
                ));
                // Over the cap, make room before taking anyone else: the waiting callers stay
                // in the kernel's backlog meanwhile.
                while *count.borrow_and_update() > cap {
                    registry.evict_longest_idle();
                    tokio::select! {
                        () = &mut shutdown => break 'accepting,
                        _ = tokio::time::timeout(OVER_CAP_RECHECK, count.wait_for(|n| *n <= cap)) => {}
                    }
                }
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                // Out of descriptors: an idle connection closed frees one for the next caller.
                registry.evict_longest_idle();
                let now = Instant::now();
                if last_error_logged.is_none_or(|at| now - at >= Duration::from_secs(1)) {
                    tracing::error!("accept error (retrying): {e}");
                    last_error_logged = Some(now);
                }
                tokio::select! {
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = count.wait_for(|n| *n == 0).await;
    Ok(())
}

/// Errors of one connection that died before it was accepted, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Marks a request in flight on its connection, until its answer is ready (or it is dropped).
struct InFlight {
    connection: Arc<Connection>,
    registry: Arc<Registry>,
}

impl InFlight {
    fn begin(connection: Arc<Connection>, registry: Arc<Registry>) -> Self {
        connection.in_flight.fetch_add(1, Ordering::AcqRel);
        connection.head_started.store(0, Ordering::Release);
        Self {
            connection,
            registry,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.connection
            .last_done
            .store(self.registry.now_ms(), Ordering::Release);
        self.connection.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.connection.answered.notify_one();
    }
}

/// What a connection's task does next when nothing else happens first.
enum Due {
    /// A request is in flight, bounded by its own deadlines: look again later.
    Recheck,
    /// A head is overdue: drop the connection (nothing is owed to the client).
    Drop,
    /// Idle too long: close it between requests.
    Close,
}

fn next_due(
    connection: &Connection,
    registry: &Registry,
    limits: &ConnectionLimits,
) -> (Instant, Due) {
    let recheck = limits.header_timeout.min(limits.idle_timeout);
    if !connection.idle() {
        return (Instant::now() + recheck, Due::Recheck);
    }
    match connection.head_started.load(Ordering::Acquire) {
        0 => {
            let done = connection.last_done.load(Ordering::Acquire);
            (registry.at(done) + limits.idle_timeout, Due::Close)
        }
        started => (registry.at(started) + limits.header_timeout, Due::Drop),
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    connection: Arc<Connection>,
    registry: Arc<Registry>,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Watched {
        stream,
        connection: connection.clone(),
        registry: registry.clone(),
    });
    let service = {
        let (connection, registry) = (connection.clone(), registry.clone());
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            let in_flight = InFlight::begin(connection.clone(), registry.clone());
            request.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                drop(in_flight);
                response
            }
        })
    };
    let mut http = pin!(http1::Builder::new().serve_connection(io, service));
    let mut stopping = false;
    // Set once the connection was asked to close: if it has not within a header timeout of
    // its last request (a client not reading its answer), it is dropped.
    let mut closing_since: Option<Instant> = None;
    // One timer, moved rather than made anew at every answer.
    let mut wake = pin!(tokio::time::sleep_until(Instant::now()));
    loop {
        // Once asked to close, only the limit on closing counts.
        let at = match closing_since {
            Some(since) => since + limits.header_timeout,
            None => next_due(&connection, &registry, &limits).0,
        };
        if wake.deadline() != at {
            wake.as_mut().reset(at);
        }
        tokio::select! {
            served = http.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!("connection from {peer}: {e}");
                }
                break;
            }
            () = connection.evict.notified() => {
                if connection.head_started.load(Ordering::Acquire) != 0 {
                    break;
                }
                http.as_mut().graceful_shutdown();
                closing_since.get_or_insert_with(Instant::now);
            }
            _ = stop.wait_for(|stop| *stop), if !stopping => {
                stopping = true;
                http.as_mut().graceful_shutdown();
            }
            () = connection.answered.notified() => {}
            () = wake.as_mut() => {
                let now = Instant::now();
                if closing_since.is_some() {
                    if connection.idle() {
                        break;
                    }
                    // A request taken in before the close finishes under its own deadlines.
                    closing_since = Some(now);
                    continue;
                }
                // Read again: a request may have begun since the sleep was set.
                let (at, due) = next_due(&connection, &registry, &limits);
                if at > now {
                    continue;
                }
                match due {
                    Due::Recheck => {}
                    Due::Drop => break,
                    Due::Close => {
                        http.as_mut().graceful_shutdown();
                        closing_since.get_or_insert(now);
                    }
                }
            }
        }
    }
    registry.remove(connection.id);
}

/// The socket, noting when the first byte of a request head arrives between requests.
struct Watched {
    stream: TcpStream,
    connection: Arc<Connection>,
    registry: Arc<Registry>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.stream).poll_read(cx, buf);
        if buf.filled().len() > before
            && this.connection.idle()
            && this.connection.head_started.load(Ordering::Acquire) == 0
        {
            this.connection
                .head_started
                .store(this.registry.now_ms(), Ordering::Release);
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
