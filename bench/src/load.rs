//! The load generator: closed-loop HTTP/1.1 clients over keep-alive connections. Each connection
//! sends one request, reads the whole answer, and sends the next at once (no pacing, no
//! pipelining), cycling through its workload's pre-rendered requests from its own offset. The
//! generator runs on its own threads (`LoadSettings::threads`, one by default) so that how the
//! machine's cores were shared between it and the server can be measured and reported.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use crate::server::{CoreShare, CpuMark, CpuUse};

/// Requests to send, one after the other, by every connection of a load.
#[derive(Clone)]
pub struct Workload {
    requests: Arc<Vec<Vec<u8>>>,
}

impl Workload {
    pub fn new(requests: Vec<Vec<u8>>) -> anyhow::Result<Self> {
        if requests.is_empty() {
            bail!("a workload needs at least one request");
        }
        Ok(Self {
            requests: Arc::new(requests),
        })
    }

    /// The `n`th request, cycling.
    pub fn request(&self, n: usize) -> &[u8] {
        &self.requests[n % self.requests.len()]
    }

    /// `GET path` with `Authorization: Bearer <credential>`, one request per credential.
    pub fn get_with(addr: SocketAddr, path: &str, credentials: &[String]) -> anyhow::Result<Self> {
        Self::new(
            credentials
                .iter()
                .map(|c| get_request(addr, path, Some(c)))
                .collect(),
        )
    }

    /// `POST path` with each JSON body.
    pub fn post_json(addr: SocketAddr, path: &str, bodies: &[String]) -> anyhow::Result<Self> {
        Self::new(
            bodies
                .iter()
                .map(|b| post_request(addr, path, None, b))
                .collect(),
        )
    }
}

pub fn get_request(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Vec<u8> {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n").into_bytes()
}

pub fn post_request(addr: SocketAddr, path: &str, bearer: Option<&str>, body: &str) -> Vec<u8> {
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Work the harness does itself in an interleaved run's phases while no connection sends:
/// called with the phase's length, it works for at least that long and returns how many units
/// it finished, counted as that half's answers over the phase's real time. (The login
/// scenario's limit, argon2id hashing on every core, takes turns with the logins this way.)
pub type LocalWork = Arc<dyn Fn(Duration) -> anyhow::Result<u64> + Send + Sync>;

/// One side of an interleaved run.
#[derive(Clone)]
pub enum Turn {
    /// Requests every connection sends; the warm-up phase sends each at least once.
    Requests(Workload),
    /// Requests whose every answer costs the same work, so no warm-up pass over them is
    /// needed (a login hashes whoever it is for; a pass over 1,000 logins would take seconds).
    Uncached(Workload),
    /// Work of the harness's own, while the connections wait.
    Local(LocalWork),
}

impl Turn {
    fn requests(&self) -> &[Vec<u8>] {
        match self {
            Self::Requests(workload) | Self::Uncached(workload) => &workload.requests,
            Self::Local(_) => &[],
        }
    }

    /// Requests each connection sends in a warm-up phase at least, besides its time.
    fn warm_up_pass(&self, connections: usize) -> usize {
        match self {
            Self::Requests(workload) => workload.requests.len().div_ceil(connections),
            Self::Uncached(_) | Self::Local(_) => 0,
        }
    }
}

/// One load: a workload on `connections` connections.
#[derive(Clone)]
pub struct Load {
    pub workload: Workload,
    pub connections: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadSettings {
    pub warmup: Duration,
    pub duration: Duration,
    pub threads: usize,
}

/// What one load did in the measured window.
#[derive(Debug, Clone, Default)]
pub struct Measurement {
    /// Answers completed in the window (any status).
    pub completed: u64,
    pub seconds: f64,
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Other statuses, by status.
    pub refused: BTreeMap<u16, u64>,
    pub io_errors: u64,
    /// Latencies of the 2xx answers, in microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl Measurement {
    /// `ok` answers in one second, each in a millisecond, for the report's tests.
    #[cfg(test)]
    pub fn per_second(ok: u64) -> Self {
        Self {
            completed: ok,
            seconds: 1.0,
            ok,
            latencies_us: vec![1_000],
            ..Self::default()
        }
    }

    /// 2xx answers per second.
    pub fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) of 2xx latencies, in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let last = self.latencies_us.len() - 1;
        let index = ((last as f64) * q).round() as usize;
        f64::from(self.latencies_us[index.min(last)]) / 1000.0
    }

    pub fn p50_ms(&self) -> f64 {
        self.quantile_ms(0.50)
    }

    pub fn p99_ms(&self) -> f64 {
        self.quantile_ms(0.99)
    }

    /// `503×12 429×3 io×1`, or `0`.
    pub fn errors_text(&self) -> String {
        let mut parts: Vec<String> = self
            .refused
            .iter()
            .map(|(status, n)| format!("{status}×{n}"))
            .collect();
        if self.io_errors > 0 {
            parts.push(format!("io×{}", self.io_errors));
        }
        if parts.is_empty() {
            "0".into()
        } else {
            parts.join(" ")
        }
    }

    fn merge(&mut self, other: ConnectionTally) {
        self.completed += other.completed;
        self.ok += other.ok;
        self.io_errors += other.io_errors;
        for (status, n) in other.refused {
            *self.refused.entry(status).or_default() += n;
        }
        self.latencies_us.extend(other.latencies_us);
    }
}

#[derive(Default)]
struct ConnectionTally {
    completed: u64,
    ok: u64,
    refused: BTreeMap<u16, u64>,
    io_errors: u64,
    latencies_us: Vec<u32>,
}

/// Runs every load at once against `addr` for warmup + duration, on the generator's own
/// threads, and measures each over the window after the warmup.
pub fn run(
    addr: SocketAddr,
    loads: Vec<Load>,
    settings: LoadSettings,
) -> anyhow::Result<Vec<Measurement>> {
    on_generator_thread(settings.threads, move || run_loads(addr, loads, settings))
}

/// What one workload of an interleaved run did in its phases, and how the cores were used
/// during them.
pub struct Half {
    pub measurement: Measurement,
    pub cores: CoreShare,
}

/// Two workloads on the same `connections` connections, taking turns in phases of `phase`
/// (either may be work of the harness's own instead, `Turn::Local`, done while no connection
/// sends):
/// A B B A, A B B A, … (each pair of turns mirrors the one before, so drift that is steady over
/// a few phases reaches both alike). Every connection sends the current phase's workload; when
/// the phase's time is up no connection sends again until every answer of the phase is in, and
/// the phase lasts until then, so no request crosses from one workload's phases into the
/// other's. `settings.warmup` is split between one unmeasured phase of each workload first
/// (connecting included), each also lasting until every request of its workload has been sent
/// once; then each workload is measured for `settings.duration` in all.
/// `server_pid` is the server process, whose CPU time is read at the edges of every phase.
///
/// Why: on these shared machines what the cores give moves from second to second (a window of
/// the same scenario reads ±0.1 of its ceiling from one round to the next), and two windows
/// measured one after the other see different seconds. Interleaved in tenths of a second (the
/// harness's default phase), the ratio of the two workloads' throughputs compares them over the
/// same seconds.
pub fn run_interleaved(
    addr: SocketAddr,
    workloads: [Turn; 2],
    connections: usize,
    settings: LoadSettings,
    phase: Duration,
    server_pid: u32,
) -> anyhow::Result<[Half; 2]> {
    on_generator_thread(settings.threads, move || {
        take_turns(addr, workloads, connections, settings, phase, server_pid)
    })
}

/// Runs `work` on a thread of its own with a runtime of `threads` threads (one: a
/// current-thread runtime), so that the generator's CPU time is its own.
fn on_generator_thread<T, F, W>(threads: usize, work: W) -> anyhow::Result<T>
where
    W: FnOnce() -> F + Send + 'static,
    F: Future<Output = anyhow::Result<T>>,
    T: Send + 'static,
{
    let handle = std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || -> anyhow::Result<T> {
            let runtime = if threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .enable_all()
                    .build()?
            };
            runtime.block_on(work())
        })
        .context("starting the load generator thread")?;
    match handle.join() {
        Ok(result) => result,
        Err(_) => bail!("the load generator thread panicked"),
    }
}

/// The phase every connection of an interleaved run is in.
#[derive(Debug, Clone, Copy)]
struct Phase {
    workload: usize,
    measured: bool,
    /// No request is sent from then on.
    end: Instant,
    /// The run is over: connections close.
    stop: bool,
}

/// How many connections have sent their last request of the phase and read its answer.
#[derive(Default)]
struct Drained {
    count: AtomicUsize,
    notify: Notify,
}

impl Drained {
    fn one_more(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_one();
    }

    async fn all(&self, connections: usize) {
        loop {
            let notified = self.notify.notified();
            if self.count.load(Ordering::SeqCst) >= connections {
                return;
            }
            notified.await;
        }
    }
}

/// The phases of an interleaved run: two unmeasured (one of each workload, `warmup` between
/// them), then at least `duration` of each workload in turns of `phase`, A B B A.
fn schedule(warmup: Duration, duration: Duration, phase: Duration) -> Vec<(usize, bool, Duration)> {
    let phase = phase.max(Duration::from_millis(10));
    let per_workload = (duration.as_secs_f64() / phase.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    let mut phases = vec![(0, false, warmup / 2), (1, false, warmup / 2)];
    phases
        .extend((0..2 * per_workload).map(|i| (usize::from(matches!(i % 4, 1 | 2)), true, phase)));
    phases
}

async fn take_turns(
    addr: SocketAddr,
    workloads: [Turn; 2],
    connections: usize,
    settings: LoadSettings,
    phase_length: Duration,
    server_pid: u32,
) -> anyhow::Result<[Half; 2]> {
    let connections = connections.max(1);
    let first = Phase {
        workload: 0,
        measured: false,
        end: Instant::now(),
        stop: false,
    };
    let (phases, watching) = watch::channel(first);
    let drained = Arc::new(Drained::default());
    let tasks: Vec<_> = (0..connections)
        .map(|connection| {
            let offsets = workloads
                .each_ref()
                .map(|w| connection * w.requests().len() / connections);
            tokio::spawn(in_turns(
                addr,
                workloads.clone(),
                connections,
                offsets,
                watching.clone(),
                drained.clone(),
            ))
        })
        .collect();
    let mut seconds = [0.0; 2];
    let mut done_locally = [0; 2];
    let mut cpu = [CpuUse::default(); 2];
    // The mark that ends one phase starts the next.
    let mut mark = CpuMark::of(server_pid);
    for (workload, measured, length) in schedule(settings.warmup, settings.duration, phase_length) {
        drained.count.store(0, Ordering::SeqCst);
        let started = Instant::now();
        phases.send_replace(Phase {
            workload,
            measured,
            end: started + length,
            stop: false,
        });
        let done = match &workloads[workload] {
            Turn::Requests(_) | Turn::Uncached(_) => 0,
            Turn::Local(work) => {
                let work = work.clone();
                tokio::task::spawn_blocking(move || work(length))
                    .await
                    .context("the harness's own work panicked")??
            }
        };
        drained.all(connections).await;
        let ended = Instant::now();
        let ended_mark = CpuMark::of(server_pid);
        if measured {
            seconds[workload] += ended.duration_since(started).as_secs_f64();
            done_locally[workload] += done;
            cpu[workload].add(CpuUse::between(&mark, &ended_mark));
        }
        mark = ended_mark;
    }
    phases.send_replace(Phase {
        stop: true,
        ..first
    });
    let mut measurements = [Measurement::default(), Measurement::default()];
    for task in tasks {
        let tallies = task.await.context("a connection task failed")?;
        for (m, tally) in measurements.iter_mut().zip(tallies) {
            m.merge(tally);
        }
    }
    let halves = [0, 1].map(|w| {
        let mut measurement = std::mem::take(&mut measurements[w]);
        measurement.seconds = seconds[w];
        measurement.completed += done_locally[w];
        measurement.ok += done_locally[w];
        measurement.latencies_us.sort_unstable();
        Half {
            measurement,
            cores: cpu[w].share(),
        }
    });
    Ok(halves)
}

/// One connection (of `connections`, at least one) of an interleaved run: each phase, the
/// phase's workload until its end.
async fn in_turns(
    addr: SocketAddr,
    workloads: [Turn; 2],
    connections: usize,
    offsets: [usize; 2],
    mut phases: watch::Receiver<Phase>,
    drained: Arc<Drained>,
) -> [ConnectionTally; 2] {
    let mut tallies = [ConnectionTally::default(), ConnectionTally::default()];
    let mut next = offsets;
    let pass = workloads.each_ref().map(|w| w.warm_up_pass(connections));
    let mut connection = Connection::new(addr);
    while phases.changed().await.is_ok() {
        let phase = *phases.borrow_and_update();
        if phase.stop {
            break;
        }
        let w = phase.workload;
        let requests = workloads[w].requests();
        if requests.is_empty() {
            // The harness's own work: this connection waits for the next phase.
            drained.one_more();
            continue;
        }
        // A warm-up phase lasts until this connection has also sent its share of one pass over
        // the workload (the connections start at offsets spread over it), so that the measured
        // phases find what a steady load would: every session read once, not the cache's first
        // fill. (On PostgreSQL at one connection, 1,000 sessions and their profiles take about
        // half a second to read, longer than the warm-up's half.) Bounded, for a server that
        // stops answering.
        let share = if phase.measured { 0 } else { pass[w] };
        let give_up = phase.end + Duration::from_secs(30);
        let mut sent = 0;
        loop {
            let now = Instant::now();
            if now >= phase.end && (sent >= share || now >= give_up) {
                break;
            }
            let request = &requests[next[w] % requests.len()];
            if connection
                .exchange(request, &mut tallies[w], phase.measured)
                .await
            {
                next[w] = next[w].wrapping_add(1);
                sent += 1;
            }
        }
        drained.one_more();
    }
    tallies
}

async fn run_loads(
    addr: SocketAddr,
    loads: Vec<Load>,
    settings: LoadSettings,
) -> anyhow::Result<Vec<Measurement>> {
    let start = Instant::now();
    let measure_from = start + settings.warmup;
    let end = measure_from + settings.duration;
    let mut tasks = Vec::new();
    for (index, load) in loads.iter().enumerate() {
        let count = load.workload.requests.len();
        for connection in 0..load.connections {
            let workload = load.workload.clone();
            // Spread the connections over the workload so they do not send the same request.
            let offset = connection * count / load.connections.max(1);
            tasks.push((
                index,
                tokio::spawn(drive(addr, workload, offset, measure_from, end)),
            ));
        }
    }
    let mut measurements = vec![Measurement::default(); loads.len()];
    for (index, task) in tasks {
        let tally = task.await.context("a connection task failed")?;
        measurements[index].merge(tally);
    }
    for m in &mut measurements {
        m.seconds = settings.duration.as_secs_f64();
        m.latencies_us.sort_unstable();
    }
    Ok(measurements)
}

/// One connection's closed loop.
async fn drive(
    addr: SocketAddr,
    workload: Workload,
    offset: usize,
    measure_from: Instant,
    end: Instant,
) -> ConnectionTally {
    let mut tally = ConnectionTally::default();
    let requests = workload.requests;
    let mut next = offset;
    let mut connection = Connection::new(addr);
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let request = &requests[next % requests.len()];
        // Counted by when it completed, as wrk does: counting only requests that both started
        // and ended inside the window would leave out a latency's worth of them at its edges
        // (a quarter of the logins at 64 connections, whose answers take half a second).
        let counted = |done: Instant| done >= measure_from && done <= end;
        if connection
            .exchange_counted(request, &mut tally, counted)
            .await
        {
            next = next.wrapping_add(1);
        }
    }
    tally
}

/// A keep-alive connection of the generator, opened again when the server closes it.
struct Connection {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buffer: Vec<u8>,
}

impl Connection {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            buffer: Vec::with_capacity(16 * 1024),
        }
    }

    /// `exchange_counted`, counting the answer in `tally` when `measured`.
    async fn exchange(
        &mut self,
        request: &[u8],
        tally: &mut ConnectionTally,
        measured: bool,
    ) -> bool {
        self.exchange_counted(request, tally, |_| measured).await
    }

    /// Sends `request` and reads its answer, connecting first if needed, and counts the answer
    /// (or the failure) in `tally` when `counted` says so of the moment it completed. False when
    /// the request was not sent: the server refused the connection.
    async fn exchange_counted(
        &mut self,
        request: &[u8],
        tally: &mut ConnectionTally,
        counted: impl Fn(Instant) -> bool,
    ) -> bool {
        let started = Instant::now();
        let conn = match self.stream.as_mut() {
            Some(conn) => conn,
            None => match TcpStream::connect(self.addr).await {
                Ok(conn) => {
                    let _ = conn.set_nodelay(true);
                    self.stream.insert(conn)
                }
                Err(_) => {
                    if counted(started) {
                        tally.io_errors += 1;
                    }
                    // Not pacing: the server refused a connection; give it a moment.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    return false;
                }
            },
        };
        let answer = exchange(conn, request, &mut self.buffer).await;
        let done = Instant::now();
        let counted = counted(done);
        match answer {
            Ok((status, close)) => {
                if counted {
                    tally.completed += 1;
                    if (200..300).contains(&status) {
                        tally.ok += 1;
                        let micros = done.duration_since(started).as_micros();
                        tally
                            .latencies_us
                            .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    } else {
                        *tally.refused.entry(status).or_default() += 1;
                    }
                }
                if close {
                    self.stream = None;
                }
            }
            Err(_) => {
                if counted {
                    tally.io_errors += 1;
                }
                self.stream = None;
            }
        }
        true
    }
}

/// Sends one request and reads its answer: the status and whether the server closes.
pub async fn exchange(
    conn: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> anyhow::Result<(u16, bool)> {
    let (status, close, _) = exchange_body(conn, request, buffer, false).await?;
    Ok((status, close))
}

/// Like `exchange`, keeping the body when `keep_body`.
pub async fn exchange_body(
    conn: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
    keep_body: bool,
) -> anyhow::Result<(u16, bool, Vec<u8>)> {
    conn.write_all(request).await?;
    buffer.clear();
    loop {
        if let Some(head_end) = find(buffer, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..head_end]).context("answer head")?;
            let head = Head::parse(head)?;
            let total = head_end + 4 + head.content_length;
            while buffer.len() < total {
                if conn.read_buf(buffer).await? == 0 {
                    bail!("connection closed mid-answer");
                }
            }
            let body = if keep_body {
                buffer[head_end + 4..total].to_vec()
            } else {
                Vec::new()
            };
            return Ok((head.status, head.close, body));
        }
        if buffer.len() > 64 * 1024 {
            bail!("answer head too long");
        }
        if conn.read_buf(buffer).await? == 0 {
            bail!("connection closed before an answer");
        }
    }
}

struct Head {
    status: u16,
    content_length: usize,
    close: bool,
}

impl Head {
    fn parse(head: &str) -> anyhow::Result<Self> {
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("status line {status_line:?}"))?;
        let mut content_length = 0;
        let mut close = false;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().context("content-length")?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                bail!("chunked answers are not supported by the generator");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        Ok(Self {
            status,
            content_length,
            close,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One request on a fresh connection, for set-up calls: status and body.
pub async fn call(addr: SocketAddr, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut conn = TcpStream::connect(addr).await?;
    let mut buffer = Vec::new();
    let (status, _, body) = exchange_body(&mut conn, request, &mut buffer, true).await?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed() -> anyhow::Result<()> {
        let head = Head::parse(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             Content-Length: 42\r\nconnection: close",
        )?;
        assert_eq!(head.status, 503);
        assert_eq!(head.content_length, 42);
        assert!(head.close);
        assert!(Head::parse("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked").is_err());
        Ok(())
    }

    #[test]
    fn phases_take_turns_a_b_b_a_after_one_warm_up_phase_of_each() {
        let ms = Duration::from_millis;
        let phases = schedule(ms(200), ms(400), ms(100));
        let order: Vec<usize> = phases.iter().map(|(w, _, _)| *w).collect();
        assert_eq!(order, [0, 1, 0, 1, 1, 0, 0, 1, 1, 0]);
        assert_eq!(phases[..2], [(0, false, ms(100)), (1, false, ms(100))]);
        assert!(
            phases[2..]
                .iter()
                .all(|(_, measured, length)| *measured && *length == ms(100))
        );
        // At least the duration of each, in whole phases.
        assert_eq!(schedule(ms(0), ms(250), ms(100)).len(), 2 + 6);
    }

    /// What the test server saw: requests per letter (`/a` is 0, `/b` is 1), requests being
    /// served per letter, and requests that arrived while one of the other letter was being
    /// served.
    #[derive(Default)]
    struct Seen {
        requests: [u64; 2],
        serving: [u64; 2],
        crossings: u64,
    }

    /// A server answering `200` with an empty body on every connection, after five
    /// milliseconds of service time (so that requests of all connections are in flight at once,
    /// each for a while), noting what it serves in `Seen`.
    fn letter_server() -> anyhow::Result<(SocketAddr, Arc<std::sync::Mutex<Seen>>)> {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(std::sync::Mutex::new(Seen::default()));
        let noted = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let noted = noted.clone();
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut head = Vec::new();
                    let mut byte = [0_u8; 1];
                    let note =
                        |change: &dyn Fn(&mut Seen)| noted.lock().map(|mut s| change(&mut s));
                    while stream.read_exact(&mut byte).is_ok() {
                        head.push(byte[0]);
                        if !head.ends_with(b"\r\n\r\n") {
                            continue;
                        }
                        // "GET /a HTTP/1.1": the letter is the sixth byte.
                        let letter = usize::from(head[5] == b'b');
                        head.clear();
                        let _ = note(&|s| {
                            s.requests[letter] += 1;
                            s.crossings += s.serving[1 - letter];
                            s.serving[letter] += 1;
                        });
                        std::thread::sleep(Duration::from_millis(5));
                        let _ = note(&|s| s.serving[letter] -= 1);
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                        if stream.write_all(answer).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok((addr, seen))
    }

    #[test]
    fn no_request_crosses_phases_and_the_warm_up_sends_every_request() -> anyhow::Result<()> {
        let (addr, seen) = letter_server()?;
        let settings = LoadSettings {
            warmup: Duration::from_millis(60),
            duration: Duration::from_millis(120),
            threads: 1,
        };
        let phase = Duration::from_millis(30);
        // A hundred requests each: more than four connections send in a warm-up phase's 30 ms
        // at 5 ms an answer (about 24).
        let workloads = [
            Turn::Requests(Workload::new(vec![get_request(addr, "/a", None); 100])?),
            Turn::Requests(Workload::new(vec![get_request(addr, "/b", None); 100])?),
        ];
        let [a, b] = run_interleaved(addr, workloads, 4, settings, phase, std::process::id())?;
        let seen = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for (half, served) in [(&a, seen.requests[0]), (&b, seen.requests[1])] {
            assert!(half.measurement.ok > 0);
            assert_eq!(half.measurement.ok, half.measurement.completed);
            assert_eq!(half.measurement.errors_text(), "0");
            // The warm-up phase's requests are served, not counted, and they are at least one
            // pass over the workload.
            assert!(served - half.measurement.ok >= 100);
            // Each phase lasts until its last answer is in: at least its length.
            assert!(half.measurement.seconds >= settings.duration.as_secs_f64());
        }
        // A phase of `/a` is over, every answer in, before the first `/b` of the next is sent.
        assert_eq!(seen.crossings, 0);
        Ok(())
    }

    /// The harness's own work takes its turns while no request is in flight, and what it
    /// finished is its half's count, over its phases' time.
    #[test]
    fn local_work_takes_turns_while_no_connection_sends() -> anyhow::Result<()> {
        let (addr, seen) = letter_server()?;
        let settings = LoadSettings {
            warmup: Duration::from_millis(60),
            duration: Duration::from_millis(120),
            threads: 1,
        };
        let finished = Arc::new(std::sync::Mutex::new((0_u64, 0_u64)));
        let (noted, watched) = (finished.clone(), seen.clone());
        // One unit a millisecond; notes units done while a request was served or sent.
        let work: LocalWork = Arc::new(move |length| {
            let served = || watched.lock().map(|s| (s.requests[0], s.serving[0]));
            let before = served().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let started = Instant::now();
            let mut units = 0;
            while started.elapsed() < length {
                std::thread::sleep(Duration::from_millis(1));
                units += 1;
            }
            let after = served().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let mut noted = noted.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            noted.0 += units;
            if before != after || before.1 != 0 {
                noted.1 += 1;
            }
            Ok(units)
        });
        let turns = [
            Turn::Local(work),
            Turn::Requests(Workload::new(vec![get_request(addr, "/a", None); 100])?),
        ];
        let phase = Duration::from_millis(30);
        let [local, requests] =
            run_interleaved(addr, turns, 4, settings, phase, std::process::id())?;
        let (units, overlapping) = *finished.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        assert_eq!(
            overlapping, 0,
            "a request was served during the harness's own turn"
        );
        // Every unit but the warm-up phase's is counted (a 30 ms warm-up phase does ~30).
        assert!(local.measurement.ok > 0 && local.measurement.ok < units);
        assert_eq!(local.measurement.ok, local.measurement.completed);
        assert!(local.measurement.seconds >= settings.duration.as_secs_f64());
        assert!(requests.measurement.ok > 0);
        assert_eq!(requests.measurement.errors_text(), "0");
        Ok(())
    }

    #[test]
    fn quantiles_come_from_sorted_latencies() {
        let mut m = Measurement {
            seconds: 2.0,
            ok: 100,
            ..Measurement::default()
        };
        m.latencies_us = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(m.throughput(), 50.0);
        assert_eq!(m.p50_ms(), 51.0);
        assert_eq!(m.p99_ms(), 99.0);
        m.refused.insert(503, 2);
        m.io_errors = 1;
        assert_eq!(m.errors_text(), "503×2 io×1");
    }
}
