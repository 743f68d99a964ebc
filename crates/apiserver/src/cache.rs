//! The watch cache: every kind's objects kept decoded in memory, fed by a storage watch, so that
//! lists at the current revision neither touch SQLite nor decode JSON.
//!
//! Consistency: a list first reads the store's current revision N, then waits until the cache
//! has caught up to at least N (events applied, or [`storage::Watch::progress`] vouching that
//! nothing for this kind is pending up to N), and answers at the cache's revision C ≥ N. Pages
//! after the first come from the store at revision C, which holds exactly the cache's state.
//! When the cache cannot answer in time (a feed that is restarting), the caller falls back to
//! the store: the cache is an accelerator, never the source of truth.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use storage::{EventKind, ListOptions, Revision, Store};
use tokio::sync::{Notify, watch};

use crate::kinds::ResourceKind;
use crate::objects::{decode, served};

/// How often the feed asks the storage watch how far it has provably got, while a list waits.
const PROGRESS_POLL: Duration = Duration::from_millis(2);
/// The longest a list waits for the cache before reading the store instead. Short: the store
/// is always a correct answer, and a backend whose progress reports are slow (etcd's come
/// every `--experimental-watch-progress-notify-interval`) must not make lists slow.
const CATCH_UP: Duration = Duration::from_millis(100);

struct Snapshot {
    objects: BTreeMap<String, Value>,
    revision: Revision,
}

/// One kind's cache.
pub struct KindCache {
    state: RwLock<Snapshot>,
    revision: watch::Sender<Revision>,
    /// Lists waiting for the cache to catch up; the feed polls progress only while there are.
    waiting: AtomicUsize,
    wanted: Notify,
}

impl KindCache {
    /// Starts the feed for `kind` in the background; the cache fills asynchronously.
    pub fn start(store: Arc<dyn Store>, kind: ResourceKind) -> Arc<Self> {
        let (revision, _) = watch::channel(0);
        let cache = Arc::new(Self {
            state: RwLock::new(Snapshot {
                objects: BTreeMap::new(),
                revision: 0,
            }),
            revision,
            waiting: AtomicUsize::new(0),
            wanted: Notify::new(),
        });
        let weak = Arc::downgrade(&cache);
        tokio::spawn(async move {
            loop {
                let Some(cache) = weak.upgrade() else { return };
                if let Err(error) = cache.feed(store.as_ref(), &kind).await {
                    tracing::warn!(kind = kind.kind, %error, "watch cache feed restarting");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        cache
    }

    /// Lists the kind, then follows its watch until the watch ends or the cache is dropped.
    async fn feed(&self, store: &dyn Store, kind: &ResourceKind) -> Result<(), String> {
        let prefix = kind.key_prefix();
        let list = store
            .list(&ListOptions {
                prefix: prefix.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut objects = BTreeMap::new();
        for kv in &list.items {
            objects.insert(kv.key.clone(), served(kind, decode(kv, kv.mod_revision)?));
        }
        self.replace(objects, list.revision);
        let mut watch = store
            .watch(&prefix, list.revision + 1)
            .await
            .map_err(|e| e.to_string())?;
        let mut poll = tokio::time::interval(PROGRESS_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                event = watch.next() => match event {
                    None => return Err("the storage watch ended".into()),
                    Some(Err(error)) => return Err(error.to_string()),
                    Some(Ok(event)) => {
                        let revision = event.revision();
                        let object = match event.kind {
                            EventKind::Put => Some(served(kind, decode(&event.kv, revision)?)),
                            EventKind::Delete => None,
                        };
                        self.apply(event.kv.key, object, revision);
                    }
                },
                _ = self.wanted.notified() => {}
                _ = poll.tick(), if self.waiting.load(Ordering::SeqCst) > 0 => {
                    if let Some(progress) = watch.progress() {
                        self.advance(progress);
                    }
                }
            }
        }
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Snapshot> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn replace(&self, objects: BTreeMap<String, Value>, revision: Revision) {
        let mut state = self.write();
        state.objects = objects;
        state.revision = revision;
        self.revision.send_replace(revision);
    }

    fn apply(&self, key: String, object: Option<Value>, revision: Revision) {
        let mut state = self.write();
        match object {
            Some(object) => {
                state.objects.insert(key, object);
            }
            None => {
                state.objects.remove(&key);
            }
        }
        state.revision = revision;
        self.revision.send_replace(revision);
    }

    fn advance(&self, revision: Revision) {
        let mut state = self.write();
        if revision > state.revision {
            state.revision = revision;
            self.revision.send_replace(revision);
        }
    }

    /// Waits (briefly) until the cache is at `at_least` or beyond; `false` if it did not get
    /// there in time.
    pub async fn caught_up(&self, at_least: Revision) -> bool {
        let mut revisions = self.revision.subscribe();
        if *revisions.borrow() >= at_least {
            return true;
        }
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.wanted.notify_one();
        let caught_up =
            tokio::time::timeout(CATCH_UP, revisions.wait_for(|r| *r >= at_least)).await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        matches!(caught_up, Ok(Ok(_)))
    }

    /// The revision the cache is at (0 before the first load).
    pub fn revision(&self) -> Revision {
        *self.revision.borrow()
    }

    /// Every object and the revision they are at; `None` until the first load.
    pub fn snapshot(&self) -> Option<(Revision, Vec<Value>)> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        (state.revision > 0).then(|| (state.revision, state.objects.values().cloned().collect()))
    }

    /// Objects under `prefix` after `after`, filtered, at most `limit` (plus whether more match
    /// beyond it), at a revision ≥ `at_least`. `None` if the cache did not catch up in time.
    pub async fn list(
        &self,
        prefix: &str,
        at_least: Revision,
        limit: Option<usize>,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<(Vec<Value>, Revision, Option<String>)> {
        if !self.caught_up(at_least).await {
            return None;
        }
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        let mut items = Vec::new();
        let mut last_key = None;
        for (key, object) in state.objects.range(prefix.to_owned()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if !matches(object) {
                continue;
            }
            if limit.is_some_and(|l| items.len() >= l) {
                // One more match exists: the page is full and a continue token is due.
                return Some((items, state.revision, last_key));
            }
            items.push(object.clone());
            last_key = Some(key.clone());
        }
        Some((items, state.revision, None))
    }
}
