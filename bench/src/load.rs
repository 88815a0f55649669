//! The load generator: closed-loop HTTP/1.1 clients over keep-alive connections. Each connection
//! sends one request, reads the whole answer, and sends the next at once (no pacing, no
//! pipelining), cycling through its workload's pre-rendered requests from its own offset. The
//! generator runs on its own threads (`LoadSettings::threads`, one by default) so that how the
//! machine's cores were shared between it and the server can be measured and reported.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    /// `ok` answers in one second, for the report's tests.
    #[cfg(test)]
    pub fn per_second(ok: u64) -> Self {
        Self {
            completed: ok,
            seconds: 1.0,
            ok,
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
    let handle = std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || -> anyhow::Result<Vec<Measurement>> {
            let runtime = if settings.threads <= 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(settings.threads)
                    .enable_all()
                    .build()?
            };
            runtime.block_on(run_loads(addr, loads, settings))
        })
        .context("starting the load generator thread")?;
    match handle.join() {
        Ok(result) => result,
        Err(_) => bail!("the load generator thread panicked"),
    }
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
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut stream: Option<TcpStream> = None;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let conn = match stream.as_mut() {
            Some(conn) => conn,
            None => match TcpStream::connect(addr).await {
                Ok(conn) => {
                    let _ = conn.set_nodelay(true);
                    stream.insert(conn)
                }
                Err(_) => {
                    if started >= measure_from {
                        tally.io_errors += 1;
                    }
                    // Not pacing: the server refused a connection; give it a moment.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
        };
        let request = &requests[next % requests.len()];
        next = next.wrapping_add(1);
        let answer = exchange(conn, request, &mut buffer).await;
        let done = Instant::now();
        // Counted by when it completed, as wrk does: counting only requests that both started
        // and ended inside the window would leave out a latency's worth of them at its edges
        // (a quarter of the logins at 64 connections, whose answers take half a second).
        let in_window = done >= measure_from && done <= end;
        match answer {
            Ok((status, close)) => {
                if in_window {
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
                    stream = None;
                }
            }
            Err(_) => {
                if in_window {
                    tally.io_errors += 1;
                }
                stream = None;
            }
        }
    }
    tally
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
