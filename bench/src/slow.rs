//! The slow clients of the slow-clients scenario: connections that send a request head and one
//! byte of a 1,000-byte body, then nothing (the audit's attack on the request permits). Each
//! opens again as soon as the server cuts it off, so that about `count` are open throughout a
//! window. They run on a thread of their own, beside the load generator's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

pub struct SlowClients {
    stop: watch::Sender<bool>,
    thread: std::thread::JoinHandle<()>,
    cut_off: Arc<AtomicU64>,
}

impl SlowClients {
    /// Opens `count` slow clients on `addr` and returns once they all are open (within 10 s).
    pub fn start(addr: SocketAddr, count: usize) -> anyhow::Result<Self> {
        let (stop, stopped) = watch::channel(false);
        let open = Arc::new(AtomicUsize::new(0));
        let cut_off = Arc::new(AtomicU64::new(0));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = {
            let (open, cut_off) = (open.clone(), cut_off.clone());
            std::thread::spawn(move || {
                runtime.block_on(async move {
                    let mut clients = tokio::task::JoinSet::new();
                    for _ in 0..count {
                        clients.spawn(slow_client(
                            addr,
                            stopped.clone(),
                            open.clone(),
                            cut_off.clone(),
                        ));
                    }
                    while clients.join_next().await.is_some() {}
                });
            })
        };
        let started = Instant::now();
        while open.load(Ordering::Relaxed) < count {
            if started.elapsed() > Duration::from_secs(10) {
                let _ = stop.send(true);
                bail!(
                    "only {} of {count} slow clients opened",
                    open.load(Ordering::Relaxed)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Self {
            stop,
            thread,
            cut_off,
        })
    }

    /// Closes them all; returns how many times the server cut one off meanwhile.
    pub fn stop(self) -> anyhow::Result<u64> {
        let _ = self.stop.send(true);
        self.thread
            .join()
            .ok()
            .context("the slow clients' thread panicked")?;
        Ok(self.cut_off.load(Ordering::Relaxed))
    }
}

async fn slow_client(
    addr: SocketAddr,
    mut stop: watch::Receiver<bool>,
    open: Arc<AtomicUsize>,
    cut_off: Arc<AtomicU64>,
) {
    let head = format!(
        "POST /user/authenticate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{"
    );
    while !*stop.borrow() {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if stream.write_all(head.as_bytes()).await.is_err() {
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let mut answer = [0u8; 512];
        tokio::select! {
            // The server's 408 (or its closing the connection): open again.
            _ = stream.read(&mut answer) => {
                cut_off.fetch_add(1, Ordering::Relaxed);
            }
            _ = stop.wait_for(|stop| *stop) => {}
        }
        open.fetch_sub(1, Ordering::Relaxed);
    }
}
