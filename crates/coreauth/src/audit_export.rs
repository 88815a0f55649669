//! Exporting the audit trail as JSON lines (to stdout or a file) for log shippers. It follows
//! the table by id, so it needs no hook in the code that records events and never misses one
//! written by this or another instance; it starts at the newest event when the process starts.

use std::io::Write;
use std::path::PathBuf;

use crate::domain::audit::Audit;
use crate::http::audit::event_answer;

const BATCH: i64 = 500;

#[derive(Debug, Clone)]
pub enum ExportTarget {
    Stdout,
    File(PathBuf),
}

impl ExportTarget {
    pub fn parse(setting: &str) -> Self {
        match setting.trim() {
            "stdout" | "-" => Self::Stdout,
            path => Self::File(PathBuf::from(path)),
        }
    }
}

pub struct AuditExport {
    target: ExportTarget,
    last_id: i64,
}

impl AuditExport {
    /// Starts after the newest event now recorded.
    pub async fn start(target: ExportTarget, audit: &Audit) -> Result<Self, String> {
        let last_id = audit.newest_id().await.map_err(|e| e.to_string())?;
        Ok(Self { target, last_id })
    }

    /// Writes the events recorded since the last call; answers how many.
    pub async fn run_once(&mut self, audit: &Audit) -> Result<usize, String> {
        let mut written = 0;
        loop {
            let batch = audit
                .after(self.last_id, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = batch.last().map(|r| r.id) else {
                return Ok(written);
            };
            let mut lines = String::new();
            for record in batch {
                let line =
                    serde_json::to_string(&event_answer(record)).map_err(|e| e.to_string())?;
                lines.push_str(&line);
                lines.push('\n');
                written += 1;
            }
            self.write(lines.as_bytes()).map_err(|e| e.to_string())?;
            self.last_id = last;
        }
    }

    fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        match &self.target {
            ExportTarget::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes)?;
                out.flush()
            }
            ExportTarget::File(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                file.write_all(bytes)
            }
        }
    }
}
