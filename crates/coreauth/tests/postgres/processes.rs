//! Real processes for the tests that need them: the `coreauth` binary, a round-robin balancer of
//! the test's own in front of several instances, and a PostgreSQL cluster of the test's own (one
//! it may stop and start without disturbing the tests sharing `COREAUTH_TEST_POSTGRES_URL`).

use std::path::PathBuf;
use std::sync::Mutex;

use tokio::net::{TcpListener, TcpStream};

use super::*;

const BIN: &str = env!("CARGO_BIN_EXE_coreauth");

/// `coreauth <args>` with no COREAUTH_* variable from the test's environment but `env`.
pub fn coreauth(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command.args(args).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("COREAUTH_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// Starts `coreauth serve` and waits for its "listening" log line; the address it names.
pub async fn serve(mut command: Command) -> (Child, String) {
    command.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut child = command.spawn().expect("coreauth starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
            if let (true, Some(address)) = (
                line.contains("coreauth listening"),
                json["address"].as_str(),
            ) {
                return address.to_owned();
            }
        }
        panic!("coreauth exited without listening");
    })
    .await
    .expect("the server says where it listens");
    // Keep reading so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{address}"))
}

pub async fn sigterm_and_wait(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().unwrap().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap()
}

/// A TCP balancer on loopback: each connection goes to the next backend in turn, or on to the
/// one after when that one refuses it (an instance that was killed and not yet replaced), the
/// way a load balancer's passive health check behaves.
pub struct RoundRobin {
    pub url: String,
    backends: Arc<Mutex<Vec<String>>>,
    accepting: tokio::task::JoinHandle<()>,
}

impl RoundRobin {
    /// Balances over `backends` (`http://host:port` URLs).
    pub async fn start(backends: &[String]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let backends = Arc::new(Mutex::new(
            backends.iter().map(|b| socket_of(b)).collect::<Vec<_>>(),
        ));
        let shared = backends.clone();
        let accepting = tokio::spawn(async move {
            for turn in 0_usize.. {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let candidates = shared.lock().unwrap().clone();
                tokio::spawn(async move {
                    for n in 0..candidates.len() {
                        let backend = &candidates[(turn + n) % candidates.len()];
                        if let Ok(mut server) = TcpStream::connect(backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                });
            }
        });
        Self {
            url,
            backends,
            accepting,
        }
    }

    /// Sends new connections for backend `index` to `url` from now on.
    pub fn replace(&self, index: usize, url: &str) {
        self.backends.lock().unwrap()[index] = socket_of(url);
    }
}

impl Drop for RoundRobin {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

fn socket_of(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

/// A PostgreSQL cluster of the test's own, made with the binaries `scripts/test` installed
/// (Debian's `postgresql`), on a free loopback port; removed when dropped.
pub struct PrivateCluster {
    pub url: String,
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// As root the cluster belongs to `postgres` (the server refuses to run as root).
    root: bool,
    dir: tempfile::TempDir,
}

impl PrivateCluster {
    pub async fn start() -> Self {
        let id = Command::new("id").arg("-u").output().await.unwrap();
        let root = String::from_utf8_lossy(&id.stdout).trim() == "0";
        let dir = tempfile::tempdir().unwrap();
        if root {
            let owned = Command::new("chown")
                .arg("postgres")
                .arg(dir.path())
                .status()
                .await
                .unwrap();
            assert!(owned.success());
        }
        let port = crate::helpers::free_port();
        let cluster = Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            bin: postgres_binaries(),
            data: dir.path().join("data"),
            port,
            root,
            dir,
        };
        let mut initdb = cluster.as_owner("initdb");
        initdb
            .arg("-D")
            .arg(&cluster.data)
            .args(["-U", "postgres", "--auth=trust", "--no-sync"])
            .stdout(Stdio::null());
        let made = Command::from(initdb).status().await.unwrap();
        assert!(made.success(), "initdb");
        cluster.resume().await;
        cluster
    }

    /// Stops the server the way a crash or a failover does: at once, without a checkpoint
    /// (`-m immediate`), every connection cut.
    pub async fn stop(&self) {
        let stopped = Command::from(self.pg_ctl(&["stop", "-m", "immediate", "-w"]))
            .status()
            .await
            .unwrap();
        assert!(stopped.success(), "pg_ctl stop");
    }

    /// Starts the server again on the same port, waiting until it accepts connections.
    pub async fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let mut start = self.pg_ctl(&["start", "-w", "-t", "60", "-o", &options, "-l"]);
        start.arg(&log);
        let started = Command::from(start).status().await.unwrap();
        assert!(
            started.success(),
            "pg_ctl start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Command {
        let mut command = self.as_owner("pg_ctl");
        command
            .arg("-D")
            .arg(&self.data)
            .args(args)
            .stdout(Stdio::null());
        command
    }

    /// One of the server's programs, run as the cluster's owner.
    fn as_owner(&self, program: &str) -> std::process::Command {
        let program = self.bin.join(program);
        if self.root {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            std::process::Command::new(program)
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = self
            .pg_ctl(&["stop", "-m", "immediate"])
            .stderr(Stdio::null())
            .status();
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` (the Debian layout `scripts/postgres.sh` uses).
fn postgres_binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's binaries in /usr/lib/postgresql (./scripts/test installs them)")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().expect("a PostgreSQL version with initdb").1
}
