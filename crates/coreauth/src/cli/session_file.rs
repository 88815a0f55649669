//! Where `coreauth login` keeps its session: `$XDG_CONFIG_HOME/coreauth/session.json` (or
//! `~/.config/coreauth/session.json`), readable by its owner only — the directory 0700, the
//! file 0600, written to a private temporary file first and renamed, so no other user can read
//! the token even for a moment, and a crash never leaves half a file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use coreauth_proto::SecretText;
use serde::{Deserialize, Serialize};

/// `{server, token, expiresAt}`; `Debug` does not show the token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredSession {
    pub server: String,
    pub token: SecretText,
    /// Unix epoch milliseconds, as coreauth sent it.
    pub expires_at: i64,
}

pub struct SessionFile {
    path: PathBuf,
}

impl SessionFile {
    /// The file in the user's configuration directory.
    pub fn in_config_dir() -> anyhow::Result<Self> {
        let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let config = match (non_empty("XDG_CONFIG_HOME"), non_empty("HOME")) {
            (Some(xdg), _) if Path::new(&xdg).is_absolute() => PathBuf::from(xdg),
            (_, Some(home)) => PathBuf::from(home).join(".config"),
            _ => bail!("neither XDG_CONFIG_HOME nor HOME is set: nowhere to keep the session"),
        };
        Ok(Self {
            path: config.join("coreauth").join("session.json"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn load(&self) -> anyhow::Result<Option<StoredSession>> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", self.path.display())),
        };
        restrict(&self.path, 0o600)?;
        let session = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a coreauth session (line {}, column {}): log in again",
                self.path.display(),
                e.line(),
                e.column()
            )
        })?;
        Ok(Some(session))
    }

    pub fn save(&self, session: &StoredSession) -> anyhow::Result<()> {
        let dir = self
            .path
            .parent()
            .context("the session file has no directory")?;
        create_private_dir(dir)?;
        let json = serde_json::to_vec_pretty(session)?;
        let temporary = dir.join(".session.json.tmp");
        let _ = fs::remove_file(&temporary);
        let mut file = private_file(&temporary)
            .with_context(|| format!("creating {}", temporary.display()))?;
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&temporary, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }

    /// Deletes the file; a missing file is fine.
    pub fn remove(&self) -> anyhow::Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("deleting {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    restrict(dir, 0o700)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Takes away any permission beyond `mode` (a directory or file made by hand, or by an older
/// version, may have more).
#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(current & mode))
            .with_context(|| format!("restricting the permissions of {}", path.display()))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> anyhow::Result<()> {
    Ok(())
}
