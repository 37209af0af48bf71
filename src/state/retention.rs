//! How much of an append-only log the state dir keeps, so an agent can run for a year: when a
//! log grows past its cap, its oldest records are dropped, keeping the newest half of the cap.
//! Compacting to half (not to just under the cap) means a log is rewritten once per half-cap of
//! new records, not on every append.

use std::path::Path;

use super::file::StateError;

/// A log's size cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Past this many bytes, the log is compacted to the newest records within half of it.
    pub max_bytes: u64,
}

/// `history.jsonl`: 8 MiB, about ten thousand runs at the usual record size.
pub const HISTORY: Retention = Retention {
    max_bytes: 8 * 1024 * 1024,
};

/// `alerts.jsonl`: 8 MiB, tens of thousands of alerts.
pub const ALERTS: Retention = Retention {
    max_bytes: 8 * 1024 * 1024,
};

impl Retention {
    /// Drops the oldest whole lines of the log at `path` when it is longer than the cap, keeping
    /// the newest lines that fit in half of it (always at least the last one). The caller holds
    /// the log's lock, so no append is lost in between.
    ///
    /// # Guarantees
    /// The log is replaced atomically (see [`crate::util::fs::write_atomic_private`]): a crash
    /// leaves the old log or the compacted one, never a mix; kept records are byte for byte
    /// the same, in the same order.
    ///
    /// # Errors
    /// [`StateError::Io`] naming the log, when it cannot be read or replaced.
    pub(super) fn compact(self, path: &Path, len: u64) -> Result<bool, StateError> {
        if len <= self.max_bytes {
            return Ok(false);
        }
        let bytes = std::fs::read(path).map_err(StateError::io("read", path))?;
        let keep = (self.max_bytes / 2) as usize;
        let cut = cut_point(&bytes, keep);
        if cut == 0 {
            return Ok(false);
        }
        crate::util::fs::write_atomic_private(path, &bytes[cut..])
            .map_err(StateError::io("compact", path))?;
        tracing::info!(
            "compacted {}: dropped its oldest {} bytes, kept the newest {}",
            path.display(),
            cut,
            bytes.len() - cut
        );
        Ok(true)
    }
}

/// The offset of the first line to keep so that at most `keep` bytes remain, cutting only at a
/// line start; the last line is always kept.
fn cut_point(bytes: &[u8], keep: usize) -> usize {
    let from = bytes.len().saturating_sub(keep);
    // The body without its final newline, so the last record counts as one line.
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let last_start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if from == 0 {
        return 0;
    }
    let at_line = if bytes[from - 1] == b'\n' {
        from
    } else {
        match bytes[from..].iter().position(|&b| b == b'\n') {
            Some(i) => from + i + 1,
            None => bytes.len(),
        }
    };
    at_line.min(last_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cut_is_at_a_line_start_and_keeps_the_last_line() {
        let log = b"aaaa\nbbbb\ncccc\n";
        assert_eq!(cut_point(log, 100), 0);
        assert_eq!(cut_point(log, 10), 5, "exactly two lines fit");
        assert_eq!(cut_point(log, 8), 10, "one line fits, the partial one goes");
        assert_eq!(
            cut_point(log, 1),
            10,
            "the last line stays even when too long"
        );
        assert_eq!(cut_point(b"torn-last", 2), 0);
    }
}
