//! The controller's memory of its own recent writes, kept until its caches show them.
//!
//! The watch delivers a write some milliseconds after the API server has answered it. A reconcile
//! that runs in between (another event of the same job triggered it) would decide from the older
//! copy: its conditional status write or task cancel can only fail with 409 (a wasted request, a
//! retry with backoff, a warning), and a task the cache has not seen yet would be created again
//! (another 409). Measured before this existed: about one such conflict per job under load.
//!
//! Only equality of resourceVersions is used (Kubernetes makes no promise about their order): a
//! write is remembered with the version it replaced, and the cache is behind for as long as it
//! still holds exactly that version. A memory older than [`GRACE`] is not trusted (the watch may
//! have lost the event; the object may have been deleted and recreated), so the worst a stale
//! entry does is what happened without this memory: one conflicting request.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a write is remembered while the cache does not show it.
pub const GRACE: Duration = Duration::from_secs(15);

/// From this many entries on, expired ones are dropped on the next write (the map holds at most
/// the writes of the last [`GRACE`], which at the API server's rate is a few thousand). After a
/// prune the next one waits until the map has doubled, so a burst of fresh writes does not scan
/// the whole map on every write.
const PRUNE_ABOVE: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A job's status, by namespace, name and uid.
    JobStatus(String, String, String),
    /// A task object, by namespace, object name and the uid of the job that owns it.
    Task(String, String, String),
    /// A task's batch Job (the task runner), by namespace, name and the uid of the task.
    BatchJob(String, String, String),
}

#[derive(Debug)]
struct Written {
    /// The resourceVersion the write replaced; `None` for an object the write created.
    over: Option<String>,
    at: Instant,
}

#[derive(Debug)]
pub struct OwnWrites {
    written: HashMap<Key, Written>,
    /// The size at which the next prune runs.
    prune_at: usize,
}

impl Default for OwnWrites {
    fn default() -> Self {
        OwnWrites {
            written: HashMap::new(),
            prune_at: PRUNE_ABOVE,
        }
    }
}

impl OwnWrites {
    /// Remembers a successful write of `key` that replaced version `over` (`None`: created).
    pub fn record(&mut self, key: Key, over: Option<&str>, now: Instant) {
        if self.written.len() >= self.prune_at {
            self.written
                .retain(|_, w| now.saturating_duration_since(w.at) < GRACE);
            self.prune_at = self.written.len().saturating_mul(2).max(PRUNE_ABOVE);
        }
        self.written.insert(
            key,
            Written {
                over: over.map(str::to_owned),
                at: now,
            },
        );
    }

    /// Whether the cached copy of `key` (its resourceVersion; `None` when the cache has none)
    /// still predates this controller's last write of it. Once the cache has caught up, or the
    /// memory has expired, it is forgotten.
    pub fn cache_is_behind(&mut self, key: &Key, cached: Option<&str>, now: Instant) -> bool {
        let Some(w) = self.written.get(key) else {
            return false;
        };
        if now.saturating_duration_since(w.at) < GRACE && w.over.as_deref() == cached {
            return true;
        }
        self.written.remove(key);
        false
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.written.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.written.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str) -> Key {
        Key::JobStatus("ns".into(), name.into(), format!("uid-{name}"))
    }

    #[test]
    fn behind_until_the_cache_shows_another_version() {
        let (mut own, t) = (OwnWrites::default(), Instant::now());
        own.record(job("a"), Some("10"), t);
        assert!(own.cache_is_behind(&job("a"), Some("10"), t));
        assert!(own.cache_is_behind(&job("a"), Some("10"), t + Duration::from_secs(1)));
        // Another job, or the same name with another uid, is not concerned.
        assert!(!own.cache_is_behind(&job("b"), Some("10"), t));
        let other_uid = Key::JobStatus("ns".into(), "a".into(), "uid-other".into());
        assert!(!own.cache_is_behind(&other_uid, Some("10"), t));
        // Caught up (our write, or anything newer): forgotten.
        assert!(!own.cache_is_behind(&job("a"), Some("11"), t));
        assert!(own.is_empty());
        assert!(!own.cache_is_behind(&job("a"), Some("10"), t));
    }

    #[test]
    fn a_created_object_is_behind_while_the_cache_has_none() {
        let (mut own, t) = (OwnWrites::default(), Instant::now());
        let task = Key::Task("ns".into(), "job.t1".into(), "uid-job".into());
        own.record(task.clone(), None, t);
        assert!(own.cache_is_behind(&task, None, t));
        assert!(!own.cache_is_behind(&task, Some("5"), t));
        assert!(!own.cache_is_behind(&task, None, t));
    }

    #[test]
    fn memory_expires_after_the_grace() {
        let (mut own, t) = (OwnWrites::default(), Instant::now());
        own.record(job("a"), Some("10"), t);
        assert!(own.cache_is_behind(&job("a"), Some("10"), t + GRACE - Duration::from_millis(1)));
        assert!(!own.cache_is_behind(&job("a"), Some("10"), t + GRACE));
        assert!(own.is_empty());
    }

    #[test]
    fn the_map_is_pruned_of_expired_entries() {
        let (mut own, t) = (OwnWrites::default(), Instant::now());
        for i in 0..PRUNE_ABOVE {
            own.record(job(&i.to_string()), Some("1"), t);
        }
        assert_eq!(own.len(), PRUNE_ABOVE);
        own.record(job("late"), Some("1"), t + GRACE);
        assert_eq!(own.len(), 1);
    }

    /// A burst of fresh writes is not rescanned on every write: after a prune that dropped nothing,
    /// the next waits until the map has doubled, and expired entries still go then.
    #[test]
    fn a_burst_of_fresh_writes_prunes_at_doubling_sizes() {
        let (mut own, t) = (OwnWrites::default(), Instant::now());
        for i in 0..=PRUNE_ABOVE {
            own.record(job(&i.to_string()), Some("1"), t);
        }
        assert_eq!(own.len(), PRUNE_ABOVE + 1);
        assert_eq!(own.prune_at, PRUNE_ABOVE * 2);
        for i in PRUNE_ABOVE + 1..PRUNE_ABOVE * 2 {
            own.record(job(&i.to_string()), Some("1"), t);
        }
        assert_eq!(own.len(), PRUNE_ABOVE * 2);
        own.record(job("late"), Some("1"), t + GRACE);
        assert_eq!(own.len(), 1);
        assert_eq!(own.prune_at, PRUNE_ABOVE);
    }
}
