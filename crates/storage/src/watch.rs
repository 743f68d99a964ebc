//! Watch fan-out: after each commit the writer hands the batch's events, in revision order, to
//! every watcher whose prefix matches.
//!
//! Each watcher has a bounded buffer. A watcher that falls so far behind that its buffer is full
//! is closed at once with a reason (the client re-lists), so a slow reader never stalls the
//! writer or the other watchers.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::mpsc;

use crate::{Event, Revision, StorageError};

/// How many events a watcher may have waiting before it is closed as too slow.
pub const WATCH_BUFFER: usize = 4096;

struct Subscriber {
    prefix: Vec<u8>,
    sender: mpsc::Sender<Event>,
    closed: Arc<Mutex<Option<String>>>,
}

/// The registry of live watchers of one store.
#[derive(Default)]
pub(crate) struct Hub {
    subscribers: Mutex<Vec<Subscriber>>,
    /// The newest revision whose events have all been handed to the watchers.
    published: AtomicI64,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a watcher. `during` runs under the registry lock and returns the revision up
    /// to which the caller will replay history itself: every event after it arrives live, none
    /// at or before it does — so replay + live has no gap and no duplicate.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        prefix: &str,
        during: impl FnOnce() -> Revision,
    ) -> (LiveFeed, Revision) {
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        let closed = Arc::new(Mutex::new(None));
        let mut subscribers = self.lock();
        let replay_upto = during();
        subscribers.push(Subscriber {
            prefix: prefix.as_bytes().to_vec(),
            sender,
            closed: closed.clone(),
        });
        (
            LiveFeed {
                receiver,
                closed,
                hub: self.clone(),
            },
            replay_upto,
        )
    }

    /// Delivers committed events (in revision order). Called by the writer under no other lock;
    /// the registry lock makes "commit revision published" and "subscribe" totally ordered.
    pub(crate) fn publish(&self, events: &[Event], revision: Revision, committed: impl FnOnce()) {
        let mut subscribers = self.lock();
        committed();
        self.published.store(revision, Ordering::SeqCst);
        subscribers.retain(|subscriber| {
            for event in events {
                if !event.kv.key.as_bytes().starts_with(&subscriber.prefix) {
                    continue;
                }
                match subscriber.sender.try_send(event.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        *subscriber.closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(
                            format!(
                                "the watcher fell more than {WATCH_BUFFER} events behind at revision {}; re-list and watch again",
                                event.revision()
                            ),
                        );
                        return false;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }

    /// Sets the starting point (the store's revision when it opened).
    pub(crate) fn set_published(&self, revision: Revision) {
        self.published.store(revision, Ordering::SeqCst);
    }

    /// Whether any watcher is registered (for tests and metrics).
    pub fn watchers(&self) -> usize {
        self.lock().len()
    }
}

/// The live half of a watch.
pub(crate) struct LiveFeed {
    receiver: mpsc::Receiver<Event>,
    closed: Arc<Mutex<Option<String>>>,
    hub: Arc<Hub>,
}

/// A stream of [`Event`]s in revision order: first the replayed history, then live changes.
/// It ends with `Err(StorageError::WatchClosed)` if the watcher fell too far behind.
pub struct Watch {
    source: Source,
}

/// A watch kept by a [`Store`](crate::Store) backend outside this crate (such as etcd's), made
/// into a [`Watch`] by [`Watch::from_backend`]. It keeps the [`Store::watch`](crate::Store::watch)
/// contract: events in revision order with no gap and no duplicate, ending with
/// `Err(StorageError::WatchClosed)` (a reason that says to re-list) if the consumer falls more
/// than [`WATCH_BUFFER`] events behind.
pub trait BackendWatch: Stream<Item = Result<Event, StorageError>> + Send {
    /// As [`Watch::progress`]: a revision such that every matching change at or before it has
    /// been yielded; `None` while events are queued (or when the backend cannot tell).
    fn progress(&self) -> Option<Revision>;
}

enum Source {
    /// This crate's stores: replayed history, then the in-process fan-out.
    Local {
        replay: VecDeque<Event>,
        replay_upto: Revision,
        live: LiveFeed,
        finished: bool,
    },
    /// A backend's own watch (in a `Mutex` only so that `Watch` stays `Sync`; polling has
    /// `&mut` access and never contends for it).
    Backend(Mutex<Pin<Box<dyn BackendWatch>>>),
}

impl Watch {
    pub(crate) fn new(replay: Vec<Event>, replay_upto: Revision, live: LiveFeed) -> Self {
        Self {
            source: Source::Local {
                replay: replay.into(),
                replay_upto,
                live,
                finished: false,
            },
        }
    }

    /// A watch over a backend's own event stream, for [`Store`](crate::Store) implementations
    /// outside this crate.
    pub fn from_backend(watch: impl BackendWatch + 'static) -> Self {
        Self {
            source: Source::Backend(Mutex::new(Box::pin(watch))),
        }
    }

    /// A revision this watch has caught up to: every change at or before it that matches the
    /// watch has already been yielded. `None` while events are still queued. This is what a
    /// Kubernetes BOOKMARK may carry without letting a client skip an event on resume.
    pub fn progress(&self) -> Option<Revision> {
        let (replay, replay_upto, live, finished) = match &self.source {
            Source::Local {
                replay,
                replay_upto,
                live,
                finished,
            } => (replay, *replay_upto, live, *finished),
            Source::Backend(watch) => {
                return watch.lock().unwrap_or_else(|e| e.into_inner()).progress();
            }
        };
        if !replay.is_empty() || finished {
            return None;
        }
        // Under the lock `publish` holds while it advances `published` and queues events, so
        // an empty queue here means nothing up to `published` is still on its way.
        let _subscribers = live.hub.lock();
        live.receiver
            .is_empty()
            .then(|| live.hub.published.load(Ordering::SeqCst).max(replay_upto))
    }

    /// The next event, or `None` when the store is gone.
    pub async fn next(&mut self) -> Option<Result<Event, StorageError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }
}

impl Stream for Watch {
    type Item = Result<Event, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let (replay, replay_upto, live, finished) = match &mut self.source {
            Source::Local {
                replay,
                replay_upto,
                live,
                finished,
            } => (replay, *replay_upto, live, finished),
            Source::Backend(watch) => {
                return watch
                    .get_mut()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                    .poll_next(cx);
            }
        };
        if let Some(event) = replay.pop_front() {
            return Poll::Ready(Some(Ok(event)));
        }
        if *finished {
            return Poll::Ready(None);
        }
        loop {
            match live.receiver.poll_recv(cx) {
                Poll::Ready(Some(event)) if event.revision() <= replay_upto => continue,
                Poll::Ready(Some(event)) => return Poll::Ready(Some(Ok(event))),
                Poll::Ready(None) => {
                    *finished = true;
                    let reason = live.closed.lock().unwrap_or_else(|e| e.into_inner()).take();
                    return Poll::Ready(
                        reason.map(|reason| Err(StorageError::WatchClosed { reason })),
                    );
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
