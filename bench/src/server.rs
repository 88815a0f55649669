//! Starting and stopping the release `coreauth` binary, and what the kernel says about it and
//! about the machine: CPU time (to report how the cores were shared) and peak resident memory.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::load;

/// A running `coreauth serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub pid: u32,
    log: PathBuf,
}

/// Settings every bench server gets, besides the database and the address.
pub fn base_env(workdir: &Path) -> Vec<(String, String)> {
    [
        ("COREAUTH_LOG", "warn".to_owned()),
        (
            "COREAUTH_SECRET_KEY_FILE",
            workdir.join("secret.key").display().to_string(),
        ),
        // Every bench request comes from 127.0.0.1: the throttle must not count them.
        ("COREAUTH_LOGIN_ATTEMPTS_PER_ACCOUNT", "1000000000".into()),
        ("COREAUTH_LOGIN_ATTEMPTS_PER_ADDRESS", "1000000000".into()),
        ("COREAUTH_LOGIN_TRAFFIC_PER_ADDRESS", "1000000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Server {
    pub async fn start(
        binary: &Path,
        database_url: &str,
        workdir: &Path,
        extra_env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = workdir.join(format!("server-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .current_dir(workdir)
            .env("COREAUTH_LISTEN", addr.to_string())
            .env("COREAUTH_DATABASE_URL", database_url)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        for (k, v) in base_env(workdir).iter().chain(extra_env) {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id();
        let mut server = Self {
            child: Some(child),
            addr,
            pid,
            log,
        };
        server.wait_healthy().await?;
        Ok(server)
    }

    async fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let request = load::get_request(self.addr, "/healthz", None);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("coreauth exited with {status} at start:\n{log}");
            }
            if let Ok((200, _)) = load::call(self.addr, &request).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("coreauth did not answer /healthz within 60 s")
    }

    /// The server's peak resident set (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// SIGTERM (a graceful drain), then SIGKILL after 30 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.kill()?;
        child.wait()?;
        bail!("coreauth (pid {}) ignored SIGTERM for 30 s", self.pid)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn clock_ticks() -> f64 {
    // The USER_HZ of every Linux architecture this runs on.
    100.0
}

/// utime + stime of a `/proc/<pid>/stat` file, in seconds.
fn process_cpu_seconds(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// CPU seconds used by this process (the load generator and the idle orchestrator).
pub fn own_cpu_seconds() -> f64 {
    process_cpu_seconds("/proc/self/stat").unwrap_or(0.0)
}

/// Busy CPU seconds of the whole machine, all cores added (from `/proc/stat`).
pub fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
    let busy: f64 = values
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, v)| v)
        .sum();
    busy / clock_ticks()
}

/// How the cores were used during a measured window, in cores (1.0 = one core busy).
#[derive(Debug, Clone, Copy, Default)]
pub struct CoreShare {
    pub server: f64,
    pub generator: f64,
    pub other: f64,
}

impl CoreShare {
    pub fn text(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.2}",
            self.server, self.generator, self.other
        )
    }
}

/// Readings taken at the start of a window, turned into a `CoreShare` at its end.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    at: Instant,
    server: f64,
    own: f64,
    machine: f64,
}

impl CpuMark {
    pub fn now(server: &Server) -> Self {
        Self::of(server.pid)
    }

    /// The CPU time used so far by the server process `pid`, by this process and by the
    /// machine; readable from any thread (the load generator marks its phases with it).
    pub fn of(pid: u32) -> Self {
        Self {
            at: Instant::now(),
            // utime + stime of the server: CPU seconds it has used so far.
            server: process_cpu_seconds(&format!("/proc/{pid}/stat")).unwrap_or(0.0),
            own: own_cpu_seconds(),
            machine: machine_busy_seconds(),
        }
    }

    pub fn share(&self, server: &Server) -> CoreShare {
        CpuUse::between(self, &CpuMark::now(server)).share()
    }
}

/// CPU time and wall time added up over several stretches (the phases of one workload in an
/// interleaved run), in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    wall: f64,
    server: f64,
    own: f64,
    machine: f64,
}

impl CpuUse {
    pub fn between(from: &CpuMark, to: &CpuMark) -> Self {
        Self {
            wall: to.at.saturating_duration_since(from.at).as_secs_f64(),
            server: to.server - from.server,
            own: to.own - from.own,
            machine: to.machine - from.machine,
        }
    }

    pub fn add(&mut self, other: CpuUse) {
        self.wall += other.wall;
        self.server += other.server;
        self.own += other.own;
        self.machine += other.machine;
    }

    /// In cores: CPU time over wall time.
    pub fn share(&self) -> CoreShare {
        let wall = self.wall.max(1e-6);
        let (s, g, m) = (self.server / wall, self.own / wall, self.machine / wall);
        CoreShare {
            server: s,
            generator: g,
            other: (m - s - g).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu() {
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(own_cpu_seconds() >= 0.0);
        assert!(machine_busy_seconds() > 0.0);
    }
}
