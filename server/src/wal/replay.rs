//! Replay at start: every segment left by the previous run, read in order
//! and rebuilt into the deltas it logged, under their old numbers.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use anyhow::Context;

use super::{codec, list_segments};
use crate::aggregate::{Rebuild, Recovered};

/// Reads every segment in `dir` (created if missing), oldest first, and
/// rebuilds the delta of each that holds a batch. A torn tail is cut off the
/// file with a warning; a segment with no batch is deleted. Corruption in
/// the middle of a segment is an error naming the file and offset.
pub fn recover(dir: &Path) -> anyhow::Result<Vec<Recovered>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut recovered = Vec::new();
    for (seq, path) in list_segments(dir).with_context(|| format!("listing {}", dir.display()))? {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // Streamed: whatever the segment's size, only one read buffer and
        // one record are held besides the delta being rebuilt.
        let rebuild = Rebuild::new(seq);
        let mut batches = 0usize;
        let segment = codec::read_segment(file, |record| {
            batches += 1;
            rebuild.record(
                record.batch_id,
                record.received_ms,
                record.traffic,
                &record.events,
            );
        })
        .map_err(|e| match e {
            codec::ReadError::Io(e) => {
                anyhow::Error::new(e).context(format!("reading {}", path.display()))
            }
            codec::ReadError::Corrupt(e) => anyhow::anyhow!(
                "the write-ahead log segment {} is damaged {e}; move it aside to start \
                 without the batches it holds",
                path.display()
            ),
        })?;
        if let Some(header_seq) = segment.seq.filter(|s| *s != seq) {
            anyhow::bail!(
                "the write-ahead log segment {} says it is segment {header_seq}",
                path.display()
            );
        }
        if let Some(torn) = &segment.torn {
            tracing::warn!(
                file = %path.display(),
                offset = torn.offset,
                reason = torn.reason,
                "cutting a torn tail off the write-ahead log (a write the crash cut short, never acknowledged)"
            );
        }
        let torn_at = segment.torn.map(|t| t.offset);
        match rebuild.finish() {
            None => {
                fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
            }
            Some(delta) => {
                if let Some(offset) = torn_at {
                    // Cut for good, so the next start does not warn again
                    // and appends never follow garbage.
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(offset as u64).and(f.sync_all()))
                        .with_context(|| format!("truncating {}", path.display()));
                    file?;
                }
                tracing::info!(
                    file = %path.display(),
                    seq,
                    batches,
                    "replaying unsynced batches from the write-ahead log"
                );
                recovered.push(delta);
            }
        }
    }
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::tests::record;
    use super::super::{codec, list_segments, segment_path};
    use super::*;

    #[test]
    fn replay_cuts_a_torn_tail_and_refuses_damage_in_the_middle() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 3);
        let mut bytes = codec::header(3).to_vec();
        bytes.extend(record("b1", "u1"));
        let whole = bytes.len();
        bytes.extend(record("b2", "u2"));
        bytes.truncate(bytes.len() - 3);
        fs::write(&path, &bytes).unwrap();
        // A file cut inside its header, and one with a header only: no
        // batches, deleted.
        fs::write(segment_path(dir.path(), 1), &codec::header(1)[..5]).unwrap();
        fs::write(segment_path(dir.path(), 2), codec::header(2)).unwrap();
        let recovered = recover(dir.path()).unwrap();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].delta.batches.len(), 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), whole as u64);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);

        // A flipped byte in the first of two records.
        let mut bytes = codec::header(4).to_vec();
        bytes.extend(record("b1", "u1"));
        bytes.extend(record("b2", "u2"));
        bytes[codec::HEADER_LEN + 12] ^= 1;
        let bad = segment_path(dir.path(), 4);
        fs::write(&bad, &bytes).unwrap();
        let err = recover(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&bad.display().to_string()), "{err}");
        assert!(
            err.contains(&format!("offset {}", codec::HEADER_LEN)),
            "{err}"
        );
    }
}
