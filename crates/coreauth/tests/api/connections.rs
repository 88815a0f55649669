//! Connections (audit item 6): a deadline for request heads and for idling between requests,
//! and a cap past which the connection idle the longest makes room, so that `/healthz` still
//! answers a new caller.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection or `within` passes; true when it closed.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn healthz_over(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: coreauth\r\n\r\n")
        .await
        .unwrap();
    answer_on(stream).await
}

async fn answer_on(stream: &mut TcpStream) -> String {
    let mut buffer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("the server answers")
        .unwrap();
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

/// Three times the cap in silent sockets: the server keeps at most the cap open, closing the
/// oldest, and a new caller's `/healthz` is answered.
#[tokio::test]
async fn past_the_connection_cap_the_longest_idle_make_room_for_healthz() {
    const CAP: usize = 20;
    let app = TestApp::spawn_with(|s| {
        s.max_connections = CAP;
        s.header_timeout = Duration::from_secs(30);
        s.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let mut idle = Vec::with_capacity(3 * CAP);
    for _ in 0..3 * CAP {
        idle.push(connect(&app).await);
    }
    let started = Instant::now();
    let fresh = reqwest::Client::new();
    let health = fresh.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut closed = 0;
    for stream in &mut idle {
        if closed_within(stream, Duration::from_millis(20)).await {
            closed += 1;
        }
    }
    // Everything past the cap was closed, the test app's own client's connection included
    // or not: at least 3 × CAP + 1 (healthz) + 1 (the app's client) − CAP − 1.
    assert!(closed >= 2 * CAP, "{closed} of {} closed", idle.len());
    // The newest are the ones kept, and they are served.
    let last = idle.last_mut().unwrap();
    assert!(healthz_over(last).await.starts_with("HTTP/1.1 200"));
}

/// A socket that sends nothing, and one that sends half a head, are closed at the header
/// timeout; a whole request is answered however slowly its bytes came within it.
#[tokio::test]
async fn heads_must_arrive_within_the_header_timeout() {
    let app = TestApp::spawn_with(|s| {
        s.header_timeout = Duration::from_millis(400);
        s.idle_timeout = Duration::from_secs(30);
    })
    .await;
    let started = Instant::now();
    let mut silent = connect(&app).await;
    let mut partial = connect(&app).await;
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(closed_within(&mut partial, Duration::from_secs(3)).await);
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(350) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );

    let mut slow = connect(&app).await;
    for part in ["GET /healthz HTTP/1.1\r\n", "Host: coreauth\r\n"] {
        slow.write_all(part.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    slow.write_all(b"\r\n").await.unwrap();
    assert!(answer_on(&mut slow).await.starts_with("HTTP/1.1 200"));
}

/// Between requests a connection may stay silent for the idle timeout, no longer; one that
/// keeps asking stays open past it.
#[tokio::test]
async fn a_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let app = TestApp::spawn_with(|s| {
        s.header_timeout = Duration::from_secs(30);
        s.idle_timeout = Duration::from_millis(400);
    })
    .await;
    let mut busy = connect(&app).await;
    let mut quiet = connect(&app).await;
    assert!(healthz_over(&mut quiet).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    // Six requests 150 ms apart: 900 ms on one connection, none of its gaps idle for long.
    for _ in 0..6 {
        assert!(healthz_over(&mut busy).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(closed_within(&mut quiet, Duration::from_secs(3)).await);
    let elapsed = answered.elapsed();
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(healthz_over(&mut busy).await.starts_with("HTTP/1.1 200"));
}
