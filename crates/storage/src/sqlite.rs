//! The embedded store: one SQLite file in WAL mode, an append-only log whose row id is the
//! revision (kine's model, see `k8s-api-compat.md` §3.8).
//!
//! - **Writes** go to one writer thread that owns the write connection. It takes every request
//!   waiting (group commit), applies them in order inside one `IMMEDIATE` transaction, commits
//!   with `synchronous=FULL` (durable before anyone is answered), then publishes the events and
//!   answers. Revisions are assigned by the writer, so they are dense.
//! - **Reads** use a small pool of separate connections; WAL snapshots mean they never block the
//!   writer or each other, and one read transaction gives a list its consistent revision.
//! - **Watches** replay history from the log, then join the in-process fan-out ([`crate::watch`]).
//! - **Compaction** runs on a schedule (and on demand), deleting superseded rows and tombstones
//!   below the target, then truncates the WAL.
//! - A lock file next to the database keeps a second process out; a file that is not a healthy
//!   SQLite database is refused at open, untouched.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension as _, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::watch::Hub;
use crate::{
    Deleted, Event, EventKind, KeyValue, ListOptions, ListResult, Revision, StorageError, Store,
    Watch, prefix_end,
};

/// The schema version this code writes.
pub const SCHEMA_VERSION: i64 = 1;

/// When and how much history the background compactor removes.
#[derive(Debug, Clone)]
pub struct CompactionPolicy {
    /// How often to compact; each run compacts to the revision current one interval earlier.
    pub interval: Duration,
    /// Never compact the newest this many revisions.
    pub min_retain: Revision,
}

impl Default for CompactionPolicy {
    /// Kubernetes' own rhythm: every 5 minutes, keeping at least 1000 revisions.
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            min_retain: 1000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    /// `None` disables scheduled compaction (explicit [`Store::compact`] still works).
    pub compaction: Option<CompactionPolicy>,
    /// The most writes committed in one transaction.
    pub max_batch: usize,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            compaction: Some(CompactionPolicy::default()),
            max_batch: 2048,
        }
    }
}

/// Why the store could not open; nothing on disk was changed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: the data is in use by another process (lock file {lock} is held)")]
    InUse { path: String, lock: String },
    #[error("{path}: not a healthy SQLite database ({detail}); refusing to touch it")]
    Corrupt { path: String, detail: String },
    #[error(
        "{path}: written by a newer version (schema {found}, this build knows {SCHEMA_VERSION})"
    )]
    TooNew { path: String, found: i64 },
    #[error("{path}: {detail}")]
    Io { path: String, detail: String },
}

enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Revision,
    },
    Compact {
        revision: Revision,
    },
}

enum WriteOutcome {
    Put(KeyValue),
    Deleted(Deleted),
    Compacted,
}

struct WriteRequest {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome, StorageError>>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    readers: Mutex<Vec<Connection>>,
    hub: Arc<Hub>,
    /// The newest committed and published revision.
    current: AtomicI64,
    compact: AtomicI64,
    /// Committed transactions and the writes in them, for batch-size metrics.
    commits: AtomicI64,
    committed_writes: AtomicI64,
    _lock: File,
    /// Dropping it stops the compactor thread.
    _compactor_stop: Option<mpsc::Sender<()>>,
}

/// The embedded SQLite store. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn unavailable(error: impl std::fmt::Display) -> StorageError {
    StorageError::Unavailable(error.to_string())
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

const SCHEMA: &str = "
CREATE TABLE log (
    revision        INTEGER PRIMARY KEY,
    key             BLOB    NOT NULL,
    deleted         INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    value           BLOB,
    old_value       BLOB
);
CREATE INDEX log_key_revision ON log (key, revision);
CREATE TABLE meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta (name, value) VALUES ('compact_revision', 0);
";

impl SqliteStore {
    /// Opens (creating on first start) the store at `options.path`.
    pub fn open(options: SqliteOptions) -> Result<Self, OpenError> {
        let path = options.path.clone();
        let shown = path.display().to_string();
        let io = |detail: String| OpenError::Io {
            path: shown.clone(),
            detail,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| io(format!("cannot create {}: {e}", parent.display())))?;
        }
        let lock_path = lock_path(&path);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| {
                io(format!(
                    "cannot open lock file {}: {e}",
                    lock_path.display()
                ))
            })?;
        if lock.try_lock().is_err() {
            return Err(OpenError::InUse {
                path: shown,
                lock: lock_path.display().to_string(),
            });
        }

        let writer = open_connection(&path, false).map_err(|detail| classify(&shown, detail))?;
        let (current, compact) = prepare(&writer, &shown)?;
        let mut readers = Vec::new();
        for _ in 0..2 {
            readers.push(open_connection(&path, true).map_err(|detail| classify(&shown, detail))?);
        }

        let (sender, receiver) = mpsc::channel::<WriteRequest>();
        let (compactor_stop, compactor_stopped) = mpsc::channel::<()>();
        let inner = Arc::new(Inner {
            path: path.clone(),
            writer: Mutex::new(Some(sender)),
            readers: Mutex::new(readers),
            hub: Arc::new(Hub::default()),
            current: AtomicI64::new(current),
            compact: AtomicI64::new(compact),
            commits: AtomicI64::new(0),
            committed_writes: AtomicI64::new(0),
            _lock: lock,
            _compactor_stop: options.compaction.as_ref().map(|_| compactor_stop),
        });
        inner.hub.set_published(current);
        let weak = Arc::downgrade(&inner);
        let max_batch = options.max_batch.max(1);
        std::thread::Builder::new()
            .name("storage-writer".into())
            .spawn(move || writer_loop(writer, receiver, weak, max_batch))
            .map_err(|e| io(format!("cannot start the writer thread: {e}")))?;
        if let Some(policy) = options.compaction {
            let weak = Arc::downgrade(&inner);
            std::thread::Builder::new()
                .name("storage-compactor".into())
                .spawn(move || compactor_loop(weak, policy, compactor_stopped))
                .map_err(|e| io(format!("cannot start the compactor thread: {e}")))?;
        }
        tracing::info!(path = %shown, revision = current, "storage opened");
        Ok(Self { inner })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Transactions committed and writes they carried since open: their ratio is the group
    /// commit's batch size.
    pub fn commit_stats(&self) -> (i64, i64) {
        (
            self.inner.commits.load(Ordering::Relaxed),
            self.inner.committed_writes.load(Ordering::Relaxed),
        )
    }

    /// How many watchers are live.
    pub fn watchers(&self) -> usize {
        self.inner.hub.watchers()
    }

    /// Runs `PRAGMA integrity_check` on a read connection (for tests and `fsck`-like tools).
    pub async fn integrity_check(&self) -> Result<String, StorageError> {
        self.read(|conn| {
            conn.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0))
                .map_err(unavailable)
        })
        .await
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome, StorageError> {
        let (reply, answer) = oneshot::channel();
        {
            let writer = self.inner.writer.lock().unwrap_or_else(|e| e.into_inner());
            let sender = writer
                .as_ref()
                .ok_or_else(|| unavailable("the store is closed"))?;
            sender
                .send(WriteRequest { op, reply })
                .map_err(|_| unavailable("the writer thread stopped"))?;
        }
        answer
            .await
            .map_err(|_| unavailable("the writer thread stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop();
            let mut conn = match pooled {
                Some(conn) => conn,
                None => open_connection(&inner.path, true).map_err(unavailable)?,
            };
            let result = f(&mut conn);
            let mut readers = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            if readers.len() < 8 {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(unavailable)?
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

fn open_connection(path: &Path, read_only: bool) -> Result<Connection, String> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags).map_err(|e| e.to_string())?;
    configure(&conn).map_err(|e| e.to_string())?;
    Ok(conn)
}

fn classify(path: &str, mut detail: String) -> OpenError {
    if detail.contains("disk I/O error") || detail.contains("disk is full") {
        detail.push_str(" (is the disk full, or the file not writable?)");
    }
    if detail.contains("not a database") || detail.contains("malformed") {
        OpenError::Corrupt {
            path: path.to_owned(),
            detail,
        }
    } else {
        OpenError::Io {
            path: path.to_owned(),
            detail,
        }
    }
}

/// Checks the file, migrates it, and reads the current and compact revisions.
fn prepare(conn: &Connection, path: &str) -> Result<(Revision, Revision), OpenError> {
    let corrupt = |detail: String| OpenError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let sql = |e: rusqlite::Error| classify(path, e.to_string());
    // Reading the header first: a file that is not SQLite fails here, before any write.
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql)?;
    if version > SCHEMA_VERSION {
        return Err(OpenError::TooNew {
            path: path.to_owned(),
            found: version,
        });
    }
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(sql)?;
    if check != "ok" {
        return Err(corrupt(check));
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(OpenError::Io {
            path: path.to_owned(),
            detail: format!("cannot enable WAL (journal mode is {mode})"),
        });
    }
    if version < 1 {
        conn.execute_batch(&format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = 1; COMMIT;"
        ))
        .map_err(sql)?;
    }
    revisions(conn).map_err(sql)
}

/// One row of the log: a write of `key` at `revision`.
struct LogRow<'a> {
    revision: Revision,
    key: &'a str,
    /// A delete tombstone.
    deleted: bool,
    create_revision: Revision,
    /// The key's previous row (0 for its first), so compaction can find superseded rows.
    prev_revision: Revision,
    value: Option<&'a [u8]>,
    /// The previous value, so watch replays can carry it.
    old_value: Option<&'a [u8]>,
}

/// The newest row of a key.
struct Latest {
    revision: Revision,
    create_revision: Revision,
    deleted: bool,
    value: Option<Vec<u8>>,
}

impl Latest {
    fn into_live(self, key: &str) -> Option<KeyValue> {
        (!self.deleted).then(|| KeyValue {
            key: key.to_owned(),
            value: self.value.unwrap_or_default(),
            create_revision: self.create_revision,
            mod_revision: self.revision,
        })
    }
}

fn latest(tx: &Connection, key: &str) -> rusqlite::Result<Option<Latest>> {
    tx.prepare_cached(
        "SELECT revision, create_revision, deleted, value FROM log
         WHERE key = ?1 ORDER BY revision DESC LIMIT 1",
    )?
    .query_row([key.as_bytes()], |row| {
        Ok(Latest {
            revision: row.get(0)?,
            create_revision: row.get(1)?,
            deleted: row.get::<_, i64>(2)? != 0,
            value: row.get(3)?,
        })
    })
    .optional()
}

/// The key's live value, if it exists.
fn live(tx: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    Ok(latest(tx, key)?.and_then(|row| row.into_live(key)))
}

fn insert_row(tx: &Connection, row: &LogRow<'_>) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO log (revision, key, deleted, create_revision, prev_revision, value, old_value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        row.revision,
        row.key.as_bytes(),
        row.deleted as i64,
        row.create_revision,
        row.prev_revision,
        row.value,
        row.old_value
    ])?;
    Ok(())
}

/// Applies one write inside the batch's transaction. `Ok(Err(..))` is a refused write (the
/// condition failed); `Err(..)` is a database failure that aborts the batch.
fn apply(
    tx: &Connection,
    op: &WriteOp,
    next: &mut Revision,
    compact: Revision,
    events: &mut Vec<Event>,
) -> rusqlite::Result<Result<WriteOutcome, StorageError>> {
    match op {
        WriteOp::Create { key, value } => {
            let previous = latest(tx, key)?;
            // A re-created key links to its tombstone, so compaction can find the old rows.
            let prev_revision = previous.as_ref().map_or(0, |p| p.revision);
            if let Some(current) = previous.and_then(|p| p.into_live(key)) {
                return Ok(Err(StorageError::KeyExists {
                    key: key.clone(),
                    current: Box::new(current),
                }));
            }
            let revision = *next;
            insert_row(
                tx,
                &LogRow {
                    revision,
                    key,
                    deleted: false,
                    create_revision: revision,
                    prev_revision,
                    value: Some(value),
                    old_value: None,
                },
            )?;
            *next += 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: revision,
                mod_revision: revision,
            };
            events.push(Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev: None,
            });
            Ok(Ok(WriteOutcome::Put(kv)))
        }
        WriteOp::Update {
            key,
            value,
            expected,
        } => {
            let current = match checked(tx, key, *expected)? {
                Ok(current) => current,
                Err(refused) => return Ok(Err(refused)),
            };
            let revision = *next;
            insert_row(
                tx,
                &LogRow {
                    revision,
                    key,
                    deleted: false,
                    create_revision: current.create_revision,
                    prev_revision: current.mod_revision,
                    value: Some(value),
                    old_value: Some(&current.value),
                },
            )?;
            *next += 1;
            let kv = KeyValue {
                key: key.clone(),
                value: value.clone(),
                create_revision: current.create_revision,
                mod_revision: revision,
            };
            events.push(Event {
                kind: EventKind::Put,
                kv: kv.clone(),
                prev: Some(current),
            });
            Ok(Ok(WriteOutcome::Put(kv)))
        }
        WriteOp::Delete { key, expected } => {
            let current = match checked(tx, key, *expected)? {
                Ok(current) => current,
                Err(refused) => return Ok(Err(refused)),
            };
            let revision = *next;
            insert_row(
                tx,
                &LogRow {
                    revision,
                    key,
                    deleted: true,
                    create_revision: current.create_revision,
                    prev_revision: current.mod_revision,
                    value: None,
                    old_value: Some(&current.value),
                },
            )?;
            *next += 1;
            events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    value: Vec::new(),
                    create_revision: current.create_revision,
                    mod_revision: revision,
                },
                prev: Some(current.clone()),
            });
            Ok(Ok(WriteOutcome::Deleted(Deleted {
                prev: current,
                revision,
            })))
        }
        WriteOp::Compact { revision } => {
            let current = *next - 1;
            if *revision > current {
                return Ok(Err(StorageError::FutureRevision {
                    requested: *revision,
                    current,
                }));
            }
            if *revision <= compact {
                return Ok(Ok(WriteOutcome::Compacted));
            }
            tx.execute(
                "DELETE FROM log WHERE revision < ?1 AND (deleted = 1 OR revision IN
                    (SELECT prev_revision FROM log WHERE prev_revision > 0 AND revision <= ?1))",
                [revision],
            )?;
            tx.execute(
                "UPDATE meta SET value = ?1 WHERE name = 'compact_revision'",
                [revision],
            )?;
            Ok(Ok(WriteOutcome::Compacted))
        }
    }
}

/// The key's live value if its revision is `expected`; the refusal otherwise.
fn checked(
    tx: &Connection,
    key: &str,
    expected: Revision,
) -> rusqlite::Result<Result<KeyValue, StorageError>> {
    Ok(match live(tx, key)? {
        None => Err(StorageError::NotFound {
            key: key.to_owned(),
        }),
        Some(current) if current.mod_revision != expected => Err(StorageError::RevisionMismatch {
            key: key.to_owned(),
            expected,
            current: Some(Box::new(current)),
        }),
        Some(current) => Ok(current),
    })
}

fn writer_loop(
    mut conn: Connection,
    requests: mpsc::Receiver<WriteRequest>,
    inner: std::sync::Weak<Inner>,
    max_batch: usize,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let current = inner.current.load(Ordering::SeqCst);
        let compact = inner.compact.load(Ordering::SeqCst);
        let mut next = current + 1;
        let mut events = Vec::new();
        let mut compacted = false;
        let result = (|| -> rusqlite::Result<Vec<Result<WriteOutcome, StorageError>>> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for request in &batch {
                let outcome = apply(&tx, &request.op, &mut next, compact, &mut events)?;
                compacted |= matches!(request.op, WriteOp::Compact { .. }) && outcome.is_ok();
                outcomes.push(outcome);
            }
            tx.commit()?;
            Ok(outcomes)
        })();
        match result {
            Ok(outcomes) => {
                inner.commits.fetch_add(1, Ordering::Relaxed);
                inner
                    .committed_writes
                    .fetch_add(batch.len() as i64, Ordering::Relaxed);
                let committed = next - 1;
                inner.hub.publish(&events, committed, || {
                    inner.current.store(committed, Ordering::SeqCst);
                });
                if compacted {
                    let compact_revision = batch
                        .iter()
                        .filter_map(|r| match r.op {
                            WriteOp::Compact { revision } => Some(revision),
                            _ => None,
                        })
                        .max()
                        .unwrap_or(compact)
                        .max(compact);
                    inner.compact.store(compact_revision, Ordering::SeqCst);
                    // Give the file back its space: fold the WAL into the database.
                    if let Err(error) =
                        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                    {
                        tracing::warn!(%error, "WAL checkpoint after compaction failed");
                    }
                }
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(error) => {
                // Nothing of the batch is durable; nobody is told otherwise.
                tracing::error!(%error, writes = batch.len(), "storage commit failed");
                let message = format!("commit failed: {error}");
                for request in batch {
                    let _ = request.reply.send(Err(unavailable(&message)));
                }
            }
        }
    }
}

fn compactor_loop(
    inner: std::sync::Weak<Inner>,
    policy: CompactionPolicy,
    stop: mpsc::Receiver<()>,
) {
    let mut previous: Option<Revision> = None;
    loop {
        match stop.recv_timeout(policy.interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let store = SqliteStore { inner };
        let current = store.inner.current.load(Ordering::SeqCst);
        // Compact to what was current one interval ago, keeping the newest `min_retain`.
        if let Some(target) = previous.map(|p| p.min(current - policy.min_retain))
            && target > store.inner.compact.load(Ordering::SeqCst)
        {
            let (reply, answer) = oneshot::channel();
            let sent = store
                .inner
                .writer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|s| {
                    s.send(WriteRequest {
                        op: WriteOp::Compact { revision: target },
                        reply,
                    })
                });
            if matches!(sent, Some(Ok(()))) {
                match answer.blocking_recv() {
                    Ok(Ok(_)) => tracing::info!(revision = target, "compacted"),
                    Ok(Err(error)) => tracing::warn!(%error, "compaction failed"),
                    Err(_) => return,
                }
            }
        }
        previous = Some(current);
    }
}

/// The current and compact revisions, as the connection (or its transaction) sees them.
fn revisions(conn: &Connection) -> rusqlite::Result<(Revision, Revision)> {
    let current: Revision =
        conn.query_row("SELECT COALESCE(MAX(revision), 0) FROM log", [], |row| {
            row.get(0)
        })?;
    let compact: Revision = conn.query_row(
        "SELECT value FROM meta WHERE name = 'compact_revision'",
        [],
        |row| row.get(0),
    )?;
    Ok((current.max(compact), compact))
}

/// [`revisions`] inside a read transaction.
fn snapshot(tx: &Connection) -> Result<(Revision, Revision), StorageError> {
    revisions(tx).map_err(unavailable)
}

fn check_revision(
    requested: Revision,
    current: Revision,
    compact: Revision,
) -> Result<(), StorageError> {
    if requested < compact {
        return Err(StorageError::Compacted {
            requested,
            compact_revision: compact,
        });
    }
    if requested > current {
        return Err(StorageError::FutureRevision { requested, current });
    }
    Ok(())
}

fn key_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let key = key.to_owned();
        self.read(move |conn| live(conn, &key).map_err(unavailable))
            .await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListResult, StorageError> {
        let options = options.clone();
        self.read(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Deferred)
                .map_err(unavailable)?;
            let (current, compact) = snapshot(&tx)?;
            let revision = options.at_revision.unwrap_or(current);
            check_revision(revision, current, compact)?;
            let start = options.prefix.as_bytes().to_vec();
            let end = prefix_end(options.prefix.as_bytes());
            let after = options.continue_after.map(String::into_bytes);
            // Fetch one more than asked to learn whether more follow.
            let limit = options.limit.map_or(-1, |l| l as i64 + 1);
            let mut statement = tx
                .prepare_cached(
                    "SELECT l.key, l.revision, l.create_revision, l.value FROM log l
                     WHERE l.key >= ?1 AND (?2 IS NULL OR l.key < ?2)
                       AND (?3 IS NULL OR l.key > ?3)
                       AND l.revision <= ?4 AND l.deleted = 0
                       AND NOT EXISTS (SELECT 1 FROM log n WHERE n.key = l.key
                                       AND n.revision > l.revision AND n.revision <= ?4)
                     ORDER BY l.key LIMIT ?5",
                )
                .map_err(unavailable)?;
            let mut items = statement
                .query_map(params![start, end, after, revision, limit], |row| {
                    Ok(KeyValue {
                        key: key_string(row.get(0)?),
                        mod_revision: row.get(1)?,
                        create_revision: row.get(2)?,
                        value: row.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                    })
                })
                .map_err(unavailable)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(unavailable)?;
            let more = options.limit.is_some_and(|l| items.len() > l);
            if let Some(limit) = options.limit {
                items.truncate(limit);
            }
            Ok(ListResult {
                items,
                revision,
                more,
            })
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<u64, StorageError> {
        let prefix = prefix.as_bytes().to_vec();
        self.read(move |conn| {
            let end = prefix_end(&prefix);
            conn.prepare_cached(
                "SELECT COUNT(*) FROM log l
                 WHERE l.key >= ?1 AND (?2 IS NULL OR l.key < ?2) AND l.deleted = 0
                   AND NOT EXISTS (SELECT 1 FROM log n WHERE n.key = l.key
                                   AND n.revision > l.revision)",
            )
            .and_then(|mut s| s.query_row(params![prefix, end], |row| row.get::<_, i64>(0)))
            .map(|n| n as u64)
            .map_err(unavailable)
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StorageError> {
        match self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            WriteOutcome::Put(kv) => Ok(kv),
            _ => Err(unavailable("unexpected write outcome")),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StorageError> {
        match self
            .write(WriteOp::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            WriteOutcome::Put(kv) => Ok(kv),
            _ => Err(unavailable("unexpected write outcome")),
        }
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Deleted, StorageError> {
        match self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            WriteOutcome::Deleted(deleted) => Ok(deleted),
            _ => Err(unavailable("unexpected write outcome")),
        }
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StorageError> {
        let inner = self.inner.clone();
        let (live, replay_upto) = inner
            .hub
            .subscribe(prefix, || inner.current.load(Ordering::SeqCst));
        if from_revision == 0 || from_revision > replay_upto {
            if from_revision > replay_upto + 1 {
                return Err(StorageError::FutureRevision {
                    requested: from_revision,
                    current: replay_upto,
                });
            }
            return Ok(Watch::new(Vec::new(), replay_upto, live));
        }
        let prefix = prefix.as_bytes().to_vec();
        let replay = self
            .read(move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Deferred)
                    .map_err(unavailable)?;
                let (_, compact) = snapshot(&tx)?;
                if from_revision < compact {
                    return Err(StorageError::Compacted {
                        requested: from_revision,
                        compact_revision: compact,
                    });
                }
                let end = prefix_end(&prefix);
                let mut statement = tx
                    .prepare_cached(
                        "SELECT revision, key, deleted, create_revision, prev_revision, value, old_value
                         FROM log WHERE revision >= ?1 AND revision <= ?2
                           AND key >= ?3 AND (?4 IS NULL OR key < ?4)
                         ORDER BY revision",
                    )
                    .map_err(unavailable)?;
                let rows = statement
                    .query_map(params![from_revision, replay_upto, prefix, end], |row| {
                        let key = key_string(row.get(1)?);
                        let revision: Revision = row.get(0)?;
                        let deleted = row.get::<_, i64>(2)? != 0;
                        let create_revision: Revision = row.get(3)?;
                        let prev_revision: Revision = row.get(4)?;
                        let value: Option<Vec<u8>> = row.get(5)?;
                        let old_value: Option<Vec<u8>> = row.get(6)?;
                        Ok(Event {
                            kind: if deleted { EventKind::Delete } else { EventKind::Put },
                            prev: old_value.map(|value| KeyValue {
                                key: key.clone(),
                                value,
                                create_revision,
                                mod_revision: prev_revision,
                            }),
                            kv: KeyValue {
                                key,
                                value: value.unwrap_or_default(),
                                create_revision,
                                mod_revision: revision,
                            },
                        })
                    })
                    .map_err(unavailable)?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(unavailable)?;
                Ok(rows)
            })
            .await?;
        Ok(Watch::new(replay, replay_upto, live))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        Ok(self.inner.current.load(Ordering::SeqCst))
    }

    async fn compact_revision(&self) -> Result<Revision, StorageError> {
        Ok(self.inner.compact.load(Ordering::SeqCst))
    }
}
