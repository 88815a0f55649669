//! The soak run (`--soak MINUTES`): a long, paced load, as production sees it, rather than the
//! closed loops of the scenarios. It measures the login capacity first (closed loop), then sends
//! logins at `--soak-share` of it (80 %) with validations and renewals beside them, each at a
//! fixed rate. Requests are scheduled on a clock, not sent as answers come back: a request that
//! waits for a free connection counts its wait in its latency. Every 10 s it reads the server's
//! resident memory; the report gives the slope of a least-squares line through those samples
//! (after the first tenth, the warm-up). Any answer but 2xx, or a broken connection, is an error,
//! and a run with errors fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::load::{self, Load, LoadSettings, Workload};
use crate::server::Server;
use crate::{Args, backend_of, commit, login_bodies, machine, now_text, say, seed, small_database};

/// Validations and renewals sent per login in the soak: a signed-in user's client checks its
/// token on every call it makes and renews it every few minutes.
const SOAK_VALIDATIONS_PER_LOGIN: f64 = 20.0;
const SOAK_RENEWALS_PER_LOGIN: f64 = 2.0;

pub async fn soak_run(
    args: &Args,
    coreauth: &Path,
    workdir: &Path,
    minutes: f64,
) -> anyhow::Result<Soak> {
    let backend = backend_of(args);
    let database = backend.describe().await?;
    say(&format!("database: {database}"));
    let hash = seed::password_hash()?;
    let small = small_database(args, &backend, coreauth, workdir, &hash).await?;
    let addr = small.server.addr;
    let login = Workload::post_json(addr, "/user/authenticate", &login_bodies(&small.users))?;
    say("login capacity: 16 connections, 10 s");
    let capacity = login_capacity(&small.server, &login, args.generator_threads)?;
    let logins = capacity * args.soak_share;
    say(&format!(
        "  {capacity:.1} logins/s; soaking {minutes} min at {logins:.1} logins/s"
    ));
    let streams = vec![
        Stream {
            name: "login",
            workload: login,
            per_second: logins,
            connections: 64,
        },
        Stream {
            name: "validate",
            workload: Workload::get_with(addr, "/user/me", &small.tokens)?,
            per_second: logins * SOAK_VALIDATIONS_PER_LOGIN,
            connections: 16,
        },
        Stream {
            name: "renew",
            workload: Workload::get_with(addr, "/user/authenticate", &small.tokens)?,
            per_second: logins * SOAK_RENEWALS_PER_LOGIN,
            connections: 16,
        },
    ];
    let mut soaked = run(
        &small.server,
        streams,
        Duration::from_secs_f64(minutes * 60.0),
    )
    .await?;
    small.server.stop()?;
    backend.remove("coreauth_bench_small").await?;
    soaked.markdown = format!(
        "## {} — commit `{}` — {database} — soak, {minutes} min\n\n{}\n\n\
         Login capacity measured first: {capacity:.1} logins/s (16 connections, 10 s); the soak \
         logs in at {:.0} % of it, with {SOAK_VALIDATIONS_PER_LOGIN} validations and \
         {SOAK_RENEWALS_PER_LOGIN} renewals per login, on a database of {} users. Latency runs \
         from each request's scheduled time.\n\n{}\n",
        now_text()?,
        commit(),
        machine(std::thread::available_parallelism().map_or(1, usize::from)),
        args.soak_share * 100.0,
        args.small_users,
        soaked.markdown
    );
    Ok(soaked)
}

/// One kind of request of the soak, and how often it is sent.
pub struct Stream {
    pub name: &'static str,
    pub workload: Workload,
    pub per_second: f64,
    /// Connections it may use at once (more only add waiting, counted as latency).
    pub connections: usize,
}

#[derive(Default)]
struct Tally {
    ok: u64,
    refused: BTreeMap<u16, u64>,
    io_errors: u64,
    /// From the request's scheduled time to its whole answer, in microseconds.
    latencies_us: Vec<u32>,
}

impl Tally {
    fn errors(&self) -> u64 {
        self.refused.values().sum::<u64>() + self.io_errors
    }

    fn errors_text(&self) -> String {
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

    fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let last = self.latencies_us.len() - 1;
        let index = ((last as f64) * q).round() as usize;
        f64::from(self.latencies_us[index.min(last)]) / 1000.0
    }
}

/// What the soak saw, as a Markdown section.
pub struct Soak {
    pub markdown: String,
    pub errors: u64,
}

/// Logins per second of `login` on 16 connections over 10 s, after 2 s of warm-up.
pub fn login_capacity(server: &Server, login: &Workload, threads: usize) -> anyhow::Result<f64> {
    let settings = LoadSettings {
        warmup: Duration::from_secs(2),
        duration: Duration::from_secs(10),
        threads,
    };
    let load = Load {
        workload: login.clone(),
        connections: 16,
    };
    let measured = load::run(server.addr, vec![load], settings)?;
    Ok(measured.first().map_or(0.0, load::Measurement::throughput))
}

/// Runs `streams` against `server` for `length`, sampling its memory.
pub async fn run(server: &Server, streams: Vec<Stream>, length: Duration) -> anyhow::Result<Soak> {
    let start = Instant::now();
    let until = start + length;
    let mut tallies = Vec::new();
    let mut senders = Vec::new();
    for stream in &streams {
        let tally = Arc::new(Mutex::new(Tally::default()));
        tallies.push(tally.clone());
        senders.push(tokio::spawn(paced(
            server.addr,
            stream.workload.clone(),
            stream.per_second,
            stream.connections,
            until,
            tally,
        )));
    }
    let mut memory = Vec::new();
    let mut every = tokio::time::interval(Duration::from_secs(10));
    while Instant::now() < until {
        every.tick().await;
        if let Some(mib) = resident_mib(server.pid) {
            memory.push((start.elapsed().as_secs_f64(), mib));
        }
    }
    for sender in senders {
        sender.await??;
    }
    let seconds = start.elapsed().as_secs_f64();

    let mut lines = vec![
        "| load | planned /s | achieved /s | answered | errors | p50 ms | p99 ms | max ms |"
            .to_owned(),
        "|---|---:|---:|---:|---|---:|---:|---:|".to_owned(),
    ];
    let mut errors = 0;
    for (stream, tally) in streams.iter().zip(&tallies) {
        let mut tally = std::mem::take(&mut *tally.lock().map_err(|_| poisoned())?);
        errors += tally.errors();
        let answered = tally.ok + tally.errors();
        lines.push(format!(
            "| {} | {:.1} | {:.1} | {answered} | {} | {:.1} | {:.1} | {:.1} |",
            stream.name,
            stream.per_second,
            tally.ok as f64 / seconds,
            tally.errors_text(),
            tally.quantile_ms(0.5),
            tally.quantile_ms(0.99),
            tally.quantile_ms(1.0),
        ));
    }
    lines.push(String::new());
    lines.push(memory_line(&memory));
    Ok(Soak {
        markdown: lines.join("\n"),
        errors,
    })
}

/// Sends `workload`'s requests at `per_second` on up to `connections` connections until
/// `until`, tallying the answers.
async fn paced(
    addr: SocketAddr,
    workload: Workload,
    per_second: f64,
    connections: usize,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) -> anyhow::Result<()> {
    // A ticket is a request's number and the time it was due.
    let (tickets, received) = mpsc::channel::<(usize, Instant)>(connections.max(1) * 4);
    let received = Arc::new(tokio::sync::Mutex::new(received));
    let mut workers = Vec::new();
    for _ in 0..connections.max(1) {
        let (received, workload, tally) = (received.clone(), workload.clone(), tally.clone());
        workers.push(tokio::spawn(async move {
            let mut conn: Option<TcpStream> = None;
            let mut buffer = Vec::new();
            loop {
                let Some((n, due)) = received.lock().await.recv().await else {
                    return;
                };
                let answer = match conn.as_mut() {
                    Some(c) => load::exchange(c, workload.request(n), &mut buffer).await,
                    None => match TcpStream::connect(addr).await {
                        Ok(c) => {
                            let c = conn.insert(c);
                            load::exchange(c, workload.request(n), &mut buffer).await
                        }
                        Err(e) => Err(e.into()),
                    },
                };
                let micros = u32::try_from(due.elapsed().as_micros()).unwrap_or(u32::MAX);
                let Ok(mut tally) = tally.lock() else {
                    return;
                };
                match answer {
                    Ok((status, close)) => {
                        if (200..300).contains(&status) {
                            tally.ok += 1;
                        } else {
                            *tally.refused.entry(status).or_default() += 1;
                        }
                        tally.latencies_us.push(micros);
                        if close {
                            conn = None;
                        }
                    }
                    Err(_) => {
                        tally.io_errors += 1;
                        conn = None;
                    }
                }
            }
        }));
    }
    let interval = Duration::from_secs_f64(1.0 / per_second.max(0.001));
    let start = Instant::now();
    for n in 0_usize.. {
        let due = start + interval.mul_f64(n as f64);
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        if tickets.send((n, due)).await.is_err() {
            break;
        }
    }
    drop(tickets);
    for worker in workers {
        worker.await?;
    }
    Ok(())
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("a soak tally was poisoned")
}

/// The server's resident memory now (VmRSS), in MiB.
fn resident_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// First, last and highest sample, and the slope after the first tenth of the run.
fn memory_line(samples: &[(f64, f64)]) -> String {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return "Resident memory: no samples.".into();
    };
    let highest = samples.iter().map(|s| s.1).fold(f64::MIN, f64::max);
    let skip = samples.len() / 10;
    let slope = slope_per_hour(&samples[skip..]);
    format!(
        "Resident memory (VmRSS, every 10 s): {:.1} MiB at {:.0} s, {:.1} MiB at the end, \
         {highest:.1} MiB at most; slope after the first tenth: {slope:+.2} MiB per hour \
         ({} samples).",
        first.1,
        first.0,
        last.1,
        samples.len() - skip
    )
}

/// The least-squares slope of (seconds, MiB) samples, in MiB per hour.
fn slope_per_hour(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if samples.len() < 2 {
        return f64::NAN;
    }
    let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
    let mean_m = samples.iter().map(|s| s.1).sum::<f64>() / n;
    let covariance: f64 = samples
        .iter()
        .map(|s| (s.0 - mean_t) * (s.1 - mean_m))
        .sum();
    let variance: f64 = samples.iter().map(|s| (s.0 - mean_t).powi(2)).sum();
    if variance == 0.0 {
        return f64::NAN;
    }
    covariance / variance * 3600.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_of_a_line_is_found_and_a_flat_series_is_flat() {
        let rising: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i) * 10.0, 50.0 + f64::from(i) * 0.5))
            .collect();
        // 0.5 MiB per 10 s is 180 MiB per hour.
        assert!((slope_per_hour(&rising) - 180.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 42.0)).collect();
        assert_eq!(slope_per_hour(&flat), 0.0);
        assert!(slope_per_hour(&flat[..1]).is_nan());
    }
}
