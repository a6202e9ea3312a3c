//! The edge's identity, kept in the data directory, whatever the store.
//!
//! - `edge-id`: a random id made on first start and kept for good. The Redis
//!   store names this edge's field in every ledger hash and its batch claims
//!   with it.
//! - `edge-boots`: how many times an edge started on this directory. The
//!   count goes into the high bits of every delta's sequence number
//!   ([`sequence`]), so sequences keep increasing across restarts although
//!   each run numbers its own deltas from 1, and a delta replayed from the
//!   write-ahead log keeps the number of the run that made it.
//! - `edge.lock`: held (flock) while the edge runs, so two edges can never
//!   share an identity (or a write-ahead log) by sharing a directory.
//!
//! Losing the directory is safe: the next start makes a new id, whose steps
//! no ledger has seen. Copying it to a second machine is not (both would use
//! one identity): the docs say so. Restoring an older copy turns `edge-boots`
//! back, so sequence numbers would repeat: the Redis store records every
//! boot of an id and refuses one at or below it (`redis/boot.lua`).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use super::StoreError;

const ID_FILE: &str = "edge-id";
const BOOTS_FILE: &str = "edge-boots";
const LOCK_FILE: &str = "edge.lock";

/// Lua numbers are doubles: sequences stay below 2^53 so the Redis store's
/// script compares them exactly.
pub const MAX_SEQUENCE: u64 = (1 << 53) - 1;

/// The sequence number of a run's `delta_seq`-th delta: the boot number in
/// the high bits and the delta's number within that run in the low 32 bits,
/// so it increases across restarts of an edge that keeps its directory.
pub fn sequence(boot: u32, delta_seq: u64) -> Option<u64> {
    if delta_seq >= 1 << 32 {
        return None;
    }
    let seq = (u64::from(boot) << 32) | delta_seq;
    (seq <= MAX_SEQUENCE).then_some(seq)
}

/// This run's identity; the directory stays locked while it lives.
#[derive(Debug)]
pub struct EdgeIdentity {
    pub id: String,
    /// 1 on the first start on this directory, then increasing.
    pub boot: u32,
    _lock: File,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("{what} {}: {e}", path.display()))
}

/// Writes `contents` to `path` through a temporary file and a rename, synced,
/// so a crash leaves either the old or the new contents.
fn write_atomically(path: &Path, contents: &str) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| io_error("creating", &tmp, e))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_error("writing", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| io_error("renaming", &tmp, e))?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable; failing to is not fatal.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn read_to_string(path: &Path) -> Result<Option<String>, StoreError> {
    match File::open(path) {
        Ok(mut f) => {
            let mut s = String::new();
            f.read_to_string(&mut s)
                .map_err(|e| io_error("reading", path, e))?;
            Ok(Some(s.trim().to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("opening", path, e)),
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl EdgeIdentity {
    /// Locks `data_dir`, reads (or makes) the id and counts this start.
    pub fn load(data_dir: &Path) -> Result<EdgeIdentity, StoreError> {
        fs::create_dir_all(data_dir).map_err(|e| io_error("creating", data_dir, e))?;
        let lock_path = data_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("opening", &lock_path, e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |e| {
                StoreError::Unavailable(format!(
                    "the data directory {} is in use by another edge ({e}); \
                     every edge needs a directory of its own",
                    data_dir.display()
                ))
            },
        )?;

        let id_path = data_dir.join(ID_FILE);
        let id = match read_to_string(&id_path)? {
            Some(id) if valid_id(&id) => id,
            Some(bad) => {
                return Err(StoreError::Corrupt(format!(
                    "{} holds {bad:?}, not an edge id",
                    id_path.display()
                )))
            }
            None => {
                let id = format!("e-{:016x}", rand::random::<u64>());
                write_atomically(&id_path, &id)?;
                id
            }
        };

        let boots_path = data_dir.join(BOOTS_FILE);
        let previous: u32 = match read_to_string(&boots_path)? {
            None => 0,
            Some(s) => s.parse().map_err(|_| {
                StoreError::Corrupt(format!(
                    "{} holds {s:?}, not a number",
                    boots_path.display()
                ))
            })?,
        };
        let boot = previous
            .checked_add(1)
            .filter(|b| sequence(*b, u64::from(u32::MAX)).is_some())
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "{} is exhausted; delete {} to start under a new edge id",
                    boots_path.display(),
                    id_path.display()
                ))
            })?;
        write_atomically(&boots_path, &boot.to_string())?;
        Ok(EdgeIdentity {
            id,
            boot,
            _lock: lock,
        })
    }

    /// The number of this run's first delta; every earlier run's are below.
    pub fn first_sequence(&self) -> u64 {
        sequence(self.boot, 1).expect("load checked that this boot's sequences fit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_survives_restarts_and_boots_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let first = EdgeIdentity::load(dir.path()).unwrap();
        assert_eq!(first.boot, 1);
        assert!(valid_id(&first.id), "{}", first.id);
        // Locked while the first lives.
        let err = EdgeIdentity::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        let id = first.id.clone();
        drop(first);
        let second = EdgeIdentity::load(dir.path()).unwrap();
        assert_eq!((second.id.as_str(), second.boot), (id.as_str(), 2));
    }

    #[test]
    fn sequences_grow_across_boots_and_fit_a_double() {
        assert_eq!(sequence(0, 1), Some(1));
        assert!(sequence(1, 1).unwrap() > sequence(0, u32::MAX as u64).unwrap());
        assert_eq!(sequence(1, 1 << 32), None);
        assert!(sequence((1 << 21) - 1, u32::MAX as u64).is_some());
        assert_eq!(sequence(1 << 21, 0), None);
        let dir = tempfile::tempdir().unwrap();
        let first = EdgeIdentity::load(dir.path()).unwrap().first_sequence();
        let second = EdgeIdentity::load(dir.path()).unwrap().first_sequence();
        assert_eq!((first, second), ((1 << 32) | 1, (2 << 32) | 1));
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_new_identity() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(BOOTS_FILE), "many").unwrap();
        assert!(matches!(
            EdgeIdentity::load(dir.path()),
            Err(StoreError::Corrupt(_))
        ));
    }
}
