//! On-disk layout of one throwaway instance and the file helpers around it.
//!
//! Owns the temporary directory (`pgtest-XXXXXX/` with `data/`, `sock/` and
//! `postgres.log`), its ownership when running as root, and reading the tail
//! of the server log for error messages.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::error::{Error, Result};
use crate::exec::{hand_over, running_as_root};

/// Longest base directory we accept before falling back to `/tmp`: unix socket
/// paths (`<base>/pgtest-XXXXXX/sock/.s.PGSQL.NNNNN`) must stay under 107 bytes.
const MAX_BASE_LEN: usize = 60;

/// Paths of one instance; the directory is removed when `tmp` is dropped.
#[derive(Debug)]
pub(crate) struct Layout {
    /// Owner of the whole directory tree (None once kept).
    pub tmp: Option<TempDir>,
    /// `pgtest-XXXXXX/`.
    pub root: PathBuf,
    /// `pgtest-XXXXXX/data`, the PGDATA (created by initdb / pg_basebackup).
    pub data_dir: PathBuf,
    /// `pgtest-XXXXXX/sock`, this instance's private unix socket directory.
    pub socket_dir: PathBuf,
    /// `pgtest-XXXXXX/postgres.log`, the server log written by `pg_ctl -l`.
    pub log_file: PathBuf,
}

impl Layout {
    /// Creates a fresh, private (0700) directory tree, owned by the `postgres`
    /// OS user when we are root.
    pub(crate) fn create() -> Result<Layout> {
        let env_tmp = std::env::temp_dir();
        let base = if running_as_root() || env_tmp.as_os_str().len() > MAX_BASE_LEN {
            // Root: the postgres user must be able to traverse the parent,
            // and /tmp is world-traversable; also keeps socket paths short.
            PathBuf::from("/tmp")
        } else {
            env_tmp
        };
        let tmp = tempfile::Builder::new()
            .prefix("pgtest-")
            .tempdir_in(&base)
            .map_err(|e| Error::io("creating a temporary directory in", &base, e))?;
        let root = tmp.path().to_owned();
        set_private(&root)?;
        let socket_dir = root.join("sock");
        fs::create_dir(&socket_dir).map_err(|e| Error::io("creating", &socket_dir, e))?;
        set_private(&socket_dir)?;
        hand_over(&root)?;
        Ok(Layout {
            tmp: Some(tmp),
            data_dir: root.join("data"),
            log_file: root.join("postgres.log"),
            socket_dir,
            root,
        })
    }

    /// Writes `contents` to `name` inside the data directory (replacing it),
    /// readable by the server.
    pub(crate) fn write_data_file(&self, name: &str, contents: &str) -> Result<()> {
        let path = self.data_dir.join(name);
        fs::write(&path, contents).map_err(|e| Error::io("writing", &path, e))?;
        hand_over(&path)
    }

    /// Appends `contents` to `name` inside the data directory.
    pub(crate) fn append_data_file(&self, name: &str, contents: &str) -> Result<()> {
        use std::io::Write;
        let path = self.data_dir.join(name);
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        file.write_all(contents.as_bytes())
            .map_err(|e| Error::io("appending to", &path, e))
    }

    /// Current size of the server log (0 if it does not exist yet).
    pub(crate) fn log_len(&self) -> u64 {
        fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0)
    }

    /// Server log text written after byte `offset`.
    pub(crate) fn log_since(&self, offset: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&self.log_file) {
            if f.seek(SeekFrom::Start(offset)).is_ok() {
                let mut bytes = Vec::new();
                if f.read_to_end(&mut bytes).is_ok() {
                    text = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
        }
        text
    }

    /// The last `n` lines of the server log, for error messages.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        last_lines(&self.log_since(0), n)
    }
}

/// Sets mode 0700 on `path`.
fn set_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io("setting permissions of", path, e))
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(last_lines("a", 5), "a");
        assert_eq!(last_lines("", 5), "");
    }
}
