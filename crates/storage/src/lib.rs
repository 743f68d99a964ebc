//! Revisioned key-value storage in etcd's model, so that Kubernetes semantics fall out of it:
//! `resourceVersion` is a revision, watches resume from a revision, updates are compare-and-swap on
//! a revision, and lists page through one snapshot.
//!
//! - [`Store`]: the one narrow interface every backend implements (see
//!   `../shared/reference/k8s-api-compat.md` §3.8 for why it is exactly this narrow).
//! - [`sqlite::SqliteStore`]: the embedded default — one file, group commit, in-process watch.
//! - [`conformance`]: the behaviour suite every backend must pass, written once.
//!
//! Revisions are `i64` (as in etcd), start at 1 for the first write, and are dense: every write
//! takes the next one and none is skipped.

pub mod conformance;
pub mod sqlite;
mod watch;

use std::fmt;

pub use watch::{BackendWatch, WATCH_BUFFER, Watch};

/// A store revision (etcd's `mod_revision`, Kubernetes' `resourceVersion`).
pub type Revision = i64;

/// One key's value as of some revision.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// The revision that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// The revision of the last write to the key.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    // Values may be large (or secret); show their size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value", &format_args!("<{} bytes>", self.value.len()))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What a list asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Keys starting with this; empty for all.
    pub prefix: String,
    /// At most this many items; `None` for all.
    pub limit: Option<usize>,
    /// Read as of this revision; `None` for the current one.
    pub at_revision: Option<Revision>,
    /// Start after this key (exclusive): the last key of the previous page.
    pub continue_after: Option<String>,
}

/// One page of a list, and the revision it was read at (pass it back to read the next page from
/// the same snapshot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListResult {
    pub items: Vec<KeyValue>,
    pub revision: Revision,
    /// More keys follow the last item.
    pub more: bool,
}

/// A successful delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The value the key had.
    pub prev: KeyValue,
    /// The revision of the delete.
    pub revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new value; for a delete, the key with an empty value, `mod_revision` the
    /// delete's revision and `create_revision` the deleted value's.
    pub kv: KeyValue,
    /// The value before this change (absent for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("key {key:?} already exists")]
    KeyExists { key: String, current: Box<KeyValue> },
    /// The key changed since the caller read it; `current` is what it is now (`None`: deleted).
    #[error("key {key:?} is not at revision {expected}")]
    RevisionMismatch {
        key: String,
        expected: Revision,
        current: Option<Box<KeyValue>>,
    },
    #[error("key {key:?} not found")]
    NotFound { key: String },
    /// The requested revision is older than the oldest kept.
    #[error("revision {requested} has been compacted (compact revision {compact_revision})")]
    Compacted {
        requested: Revision,
        compact_revision: Revision,
    },
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },
    /// A watcher fell too far behind and was dropped; the client should re-list.
    #[error("watch closed: {reason}")]
    WatchClosed { reason: String },
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store refuses a value this large (etcd's `--max-request-bytes`, 1.5 MiB by default).
    #[error("value too large for the store: {0}")]
    TooLarge(String),
}

/// The storage interface: etcd's model, narrowed to what a Kubernetes API server uses.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The key's current value.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError>;

    /// Keys under a prefix, in key order, at a revision, paged.
    async fn list(&self, options: &ListOptions) -> Result<ListResult, StorageError>;

    /// How many keys exist under a prefix now.
    async fn count(&self, prefix: &str) -> Result<u64, StorageError>;

    /// Creates the key only if it does not exist.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StorageError>;

    /// Replaces the value only if the key's `mod_revision` is `expected`.
    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StorageError>;

    /// Deletes the key only if its `mod_revision` is `expected`.
    async fn delete(&self, key: &str, expected: Revision) -> Result<Deleted, StorageError>;

    /// Changes under a prefix from `from_revision` (inclusive) on, in revision order, with no gap
    /// and no duplicate; `from_revision` 0 means "from now".
    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StorageError>;

    /// Forgets history before `revision`: reads and watches below it fail with
    /// [`StorageError::Compacted`]. Compacting to an already compacted revision is a no-op.
    async fn compact(&self, revision: Revision) -> Result<(), StorageError>;

    /// The latest revision (0 for an empty store).
    async fn current_revision(&self) -> Result<Revision, StorageError>;

    /// The oldest revision still readable is `compact_revision()` (0 when never compacted).
    async fn compact_revision(&self) -> Result<Revision, StorageError>;
}

/// The end of a prefix range: the smallest byte string greater than every key starting with
/// `prefix` (`None` when there is none, i.e. the prefix is empty or all `0xff`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_bound_exactly_the_prefixed_keys() {
        assert_eq!(prefix_end(b"/a/"), Some(b"/a0".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b""), None);
    }
}
