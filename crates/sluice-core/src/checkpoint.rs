//! Durable source checkpoints in `data_dir/checkpoints/<source>.json`,
//! written atomically (temp file, fsync, rename, fsync of the directory) so
//! that a kill -9 at any instant leaves either the old or the new one.
//! Touches only its own files under the data directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A checkpoint file that cannot be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {reason}")]
pub struct CheckpointError {
    pub path: PathBuf,
    pub reason: String,
}

/// One source's checkpoint file.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    path: PathBuf,
}

impl Checkpoints {
    pub fn new(data_dir: &Path, source: &str) -> Checkpoints {
        Checkpoints {
            path: data_dir.join("checkpoints").join(format!("{source}.json")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved checkpoint, `None` when there is none yet.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<T>, CheckpointError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CheckpointError {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CheckpointError {
                path: self.path.clone(),
                reason: format!("damaged ({e})"),
            })
    }

    /// Writes the checkpoint atomically (blocking; see [`save`](Self::save)).
    pub fn save_blocking<T: Serialize>(&self, value: &T) -> std::io::Result<()> {
        let dir = self.path.parent().expect("checkpoint path has a parent");
        std::fs::create_dir_all(dir)?;
        let tmp = self.path.with_extension("json.tmp");
        let mut bytes = serde_json::to_vec(value)?;
        bytes.push(b'\n');
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// Writes the checkpoint atomically off the async worker threads.
    pub async fn save<T: Serialize + Send + Sync + 'static + Clone>(
        &self,
        value: &T,
    ) -> std::io::Result<()> {
        let this = self.clone();
        let value = value.clone();
        tokio::task::spawn_blocking(move || this.save_blocking(&value))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Says when the next periodic checkpoint write is due.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Instant,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: Instant::now(),
        }
    }

    /// True at most once per interval.
    pub fn due(&mut self) -> bool {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reports_damage() {
        let dir = tempfile::tempdir().unwrap();
        let c = Checkpoints::new(dir.path(), "src");
        assert_eq!(c.load::<u64>().unwrap(), None);
        c.save_blocking(&42u64).unwrap();
        assert_eq!(c.load::<u64>().unwrap(), Some(42));
        std::fs::write(c.path(), b"{not json").unwrap();
        let e = c.load::<u64>().unwrap_err();
        assert!(e.to_string().contains("damaged"), "{e}");
    }
}
