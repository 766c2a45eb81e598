//! Compressed static files kept in memory, so a stylesheet is compressed once
//! per version instead of once per request.
//!
//! Compressing an 8 KiB stylesheet at gzip level 6 costs more CPU than
//! everything else in serving it (bench/RESULTS.md, "gzip of small static
//! files"), and a site's static files are few and change only on deploy. So the
//! compressed bytes of a file are kept, keyed by the file's resolved path and
//! coding and tagged with its size and modification time: a changed file (new
//! size or mtime, the same facts its ETag is made of) is a miss and is
//! compressed afresh. The `files` handler marks a whole, plain file it sends
//! with a [`Source`]; other responses (proxied, ranges, precompressed siblings)
//! are never kept.
//!
//! Each worker thread has its own cache (a worker serves a request start to
//! end, so no lock is needed), bounded by [`BUDGET`] bytes, least recently used
//! out first. Only files up to [`MAX_SOURCE`] bytes are kept: larger ones are
//! rare, and streaming them through the compressor keeps memory flat.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use bytes::Bytes;

use crate::config::Encoding;

/// Compressed bytes one worker keeps at most. A few hundred typical
/// stylesheets and scripts; small next to the process's idle footprint.
pub(crate) const BUDGET: usize = 2 * 1024 * 1024;

/// Files larger than this (uncompressed) are compressed as they stream and not kept.
pub(crate) const MAX_SOURCE: u64 = 1024 * 1024;

/// Which version of which file a response carries: attached by the `files`
/// handler as a response extension to a whole 200 of the plain file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Source {
    /// The resolved path (symlinks followed), so two routes reaching one file share it.
    pub path: PathBuf,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, when the file system reports one.
    pub modified: Option<SystemTime>,
}

struct Entry {
    source: Source,
    bytes: Bytes,
    last_used: u64,
}

/// One kept form per coding of a path.
#[derive(Default)]
struct Slots {
    gzip: Option<Entry>,
    zstd: Option<Entry>,
}

impl Slots {
    fn get(&mut self, encoding: Encoding) -> &mut Option<Entry> {
        match encoding {
            Encoding::Gzip => &mut self.gzip,
            Encoding::Zstd => &mut self.zstd,
        }
    }

    fn entries(&self) -> impl Iterator<Item = (Encoding, &Entry)> {
        let gzip = self.gzip.as_ref().map(|e| (Encoding::Gzip, e));
        let zstd = self.zstd.as_ref().map(|e| (Encoding::Zstd, e));
        gzip.into_iter().chain(zstd)
    }
}

#[derive(Default)]
struct Cache {
    /// Keyed by path alone, so a lookup borrows the request's path instead of
    /// building a key.
    entries: HashMap<PathBuf, Slots>,
    /// Sum of the kept compressed bytes.
    size: usize,
    /// Use counter standing in for a clock: higher is more recent.
    tick: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The compressed bytes of exactly this version of the file, if kept.
pub(crate) fn lookup(source: &Source, encoding: Encoding) -> Option<Bytes> {
    CACHE
        .try_with(|cache| cache.borrow_mut().lookup(source, encoding))
        .ok()
        .flatten()
}

/// Keeps `bytes` as the compressed form of `source`, replacing an older version
/// and making room by dropping the least recently used entries.
pub(crate) fn store(source: Source, encoding: Encoding, bytes: Bytes) {
    // During thread teardown the cache may be gone; then nothing is kept.
    let _ = CACHE.try_with(|cache| cache.borrow_mut().store(source, encoding, bytes));
}

impl Cache {
    fn lookup(&mut self, source: &Source, encoding: Encoding) -> Option<Bytes> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&source.path)?.get(encoding).as_mut()?;
        if entry.source != *source {
            return None;
        }
        entry.last_used = tick;
        Some(entry.bytes.clone())
    }

    fn store(&mut self, source: Source, encoding: Encoding, bytes: Bytes) {
        if bytes.len() > BUDGET / 4 {
            return;
        }
        self.tick += 1;
        let slot = self
            .entries
            .entry(source.path.clone())
            .or_default()
            .get(encoding);
        self.size += bytes.len();
        let entry = Entry {
            source,
            bytes,
            last_used: self.tick,
        };
        if let Some(old) = slot.replace(entry) {
            self.size -= old.bytes.len();
        }
        while self.size > BUDGET {
            if !self.drop_oldest() {
                break;
            }
        }
    }

    /// Drops the least recently used entry; false when there is none. A scan:
    /// the cache holds at most a few hundred entries and this runs only when a
    /// new one pushes it over budget.
    fn drop_oldest(&mut self) -> bool {
        let oldest = self
            .entries
            .iter()
            .flat_map(|(path, slots)| slots.entries().map(move |(enc, e)| (path, enc, e)))
            .min_by_key(|(_, _, e)| e.last_used)
            .map(|(path, enc, _)| (path.clone(), enc));
        let Some((path, encoding)) = oldest else {
            return false;
        };
        let Some(slots) = self.entries.get_mut(&path) else {
            return false;
        };
        if let Some(gone) = slots.get(encoding).take() {
            self.size -= gone.bytes.len();
        }
        if slots.entries().next().is_none() {
            self.entries.remove(&path);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn source(name: &str, len: u64, secs: u64) -> Source {
        Source {
            path: PathBuf::from(name),
            len,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)),
        }
    }

    #[test]
    fn a_changed_file_is_a_miss_and_replaces_the_old_version() {
        let mut cache = Cache::default();
        cache.store(
            source("/a.css", 10, 1),
            Encoding::Gzip,
            Bytes::from_static(b"v1"),
        );
        assert_eq!(
            cache.lookup(&source("/a.css", 10, 1), Encoding::Gzip),
            Some(Bytes::from_static(b"v1"))
        );
        assert_eq!(cache.lookup(&source("/a.css", 10, 1), Encoding::Zstd), None);
        assert_eq!(cache.lookup(&source("/a.css", 10, 2), Encoding::Gzip), None);
        assert_eq!(cache.lookup(&source("/a.css", 11, 1), Encoding::Gzip), None);
        cache.store(
            source("/a.css", 11, 2),
            Encoding::Gzip,
            Bytes::from_static(b"v22"),
        );
        assert_eq!(cache.entries.len(), 1);
        assert_eq!(cache.size, 3);
    }

    #[test]
    fn the_least_recently_used_goes_first_when_over_budget() {
        let mut cache = Cache::default();
        let quarter = Bytes::from(vec![0u8; BUDGET / 4]);
        for name in ["/1", "/2", "/3", "/4"] {
            cache.store(source(name, 1, 1), Encoding::Gzip, quarter.clone());
        }
        assert_eq!(cache.size, BUDGET);
        // /1 is used, so /2 is now the oldest.
        assert!(cache.lookup(&source("/1", 1, 1), Encoding::Gzip).is_some());
        cache.store(source("/5", 1, 1), Encoding::Gzip, quarter.clone());
        assert!(cache.size <= BUDGET);
        assert!(cache.lookup(&source("/2", 1, 1), Encoding::Gzip).is_none());
        for name in ["/1", "/3", "/4", "/5"] {
            assert!(
                cache.lookup(&source(name, 1, 1), Encoding::Gzip).is_some(),
                "{name}"
            );
        }
        // Too big for a quarter of the budget: never kept.
        cache.store(
            source("/big", 1, 1),
            Encoding::Gzip,
            Bytes::from(vec![0u8; BUDGET / 4 + 1]),
        );
        assert!(cache
            .lookup(&source("/big", 1, 1), Encoding::Gzip)
            .is_none());
    }
}
