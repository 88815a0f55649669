//! The SMTP server process, queueing a message, and reading a MIME message back.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use coreauth::domain::clock::to_millis;
use coreauth::domain::mail::{MailContent, NewMail, queued};
use coreauth::domain::secrets::SecretBox;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;

pub const FROM: &str = "Acme Auth <auth@acme.example>";

/// A running aiosmtpd, killed when dropped, and the folder it writes messages to.
pub struct SmtpServer {
    pub port: u16,
    dir: TempDir,
    _child: Child,
}

fn python() -> String {
    std::env::var("COREAUTH_TEST_SMTP_PYTHON").expect(
        "COREAUTH_TEST_SMTP_PYTHON must name a python with aiosmtpd installed \
         (scripts/test sets up .venv)",
    )
}

impl SmtpServer {
    pub async fn start() -> Self {
        Self::start_on(free_port()).await
    }

    pub async fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(dir.path())
            // The server stops when this pipe closes, should the test die without killing it.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the SMTP server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
        assert!(
            matches!(&ready, Ok(Ok(Some(line))) if line == "ready"),
            "the SMTP server did not start on port {port}: {ready:?}"
        );
        Self {
            port,
            dir,
            _child: child,
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<String> {
        messages_in(self.dir.path())
    }

    /// Waits (briefly: the worker runs every second) until `count` messages have arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<String> {
        wait_for_files(self.dir.path(), count).await
    }
}

/// The `.eml` files in `dir`, oldest first (their names sort by time).
pub fn messages_in(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

pub async fn wait_for_files(dir: &Path, count: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let messages = messages_in(dir);
        if messages.len() >= count {
            return messages;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{} of {count} messages arrived in 20 s",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An app whose mail goes to `smtp_url`.
pub async fn app_sending_to(smtp_url: &str) -> TestApp {
    let url = smtp_url.to_owned();
    TestApp::spawn_with(move |s| {
        s.smtp_url = Some(url.into());
        s.email_from = FROM.into();
    })
    .await
}

/// The key the app seals with, read from its database's key file as the app does.
pub fn secrets(app: &TestApp) -> SecretBox {
    let key = std::fs::read_to_string(app.database.secret_key_file()).unwrap();
    SecretBox::from_base64(key.trim(), &[]).unwrap()
}

pub fn content(subject: &str, html: Option<&str>) -> MailContent {
    MailContent {
        subject: subject.into(),
        text: "Hello,\r\nfollow https://auth.example/accept#t0ken to join Acme.".into(),
        html: html.map(str::to_owned),
        link: Some("https://auth.example/accept#t0ken".into()),
        from_name: None,
        reply_to: None,
    }
}

/// Queues a message to `to` as the flows do, and answers it.
pub async fn queue(app: &TestApp, to: &str, content: &MailContent) -> NewMail {
    let mail = queued(
        &secrets(app),
        (Some(1), "invitation"),
        to,
        content,
        to_millis(app.clock_now()),
    )
    .unwrap();
    app.store.queue_mail(&mail).await.unwrap();
    mail
}

/// Polls the queue's counts until `done` holds them (the worker runs every second).
pub async fn wait_for_counts(
    app: &TestApp,
    done: impl Fn(&coreauth::domain::mail::MailQueueCounts) -> bool,
) -> coreauth::domain::mail::MailQueueCounts {
    let started = Instant::now();
    loop {
        let counts = app.store.mail_counts().await.unwrap();
        if done(&counts) {
            return counts;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the queue stayed at {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A message as read back: its headers (unfolded) and its body.
pub struct Parsed {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Parsed {
    pub fn new(text: &str) -> Self {
        let (head, body) = text
            .split_once("\r\n\r\n")
            .expect("a blank line after the head");
        let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
        let headers = unfolded
            .split("\r\n")
            .map(|line| {
                let (k, v) = line.split_once(':').expect("a header line");
                (k.to_owned(), v.trim().to_owned())
            })
            .collect();
        Self {
            headers,
            body: body.to_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }

    /// The parts of a multipart body, each parsed.
    pub fn parts(&self) -> Vec<Parsed> {
        let content_type = self.header("Content-Type").expect("a Content-Type");
        let boundary = content_type
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .expect("a boundary")
            .trim_matches('"');
        let delimiter = format!("--{boundary}");
        let closing = format!("{delimiter}--");
        let end = self.body.find(&closing).expect("the closing delimiter");
        self.body[..end]
            .split(&delimiter)
            .skip(1)
            .map(|part| Parsed::new(part.trim_start_matches("\r\n")))
            .collect()
    }
}
