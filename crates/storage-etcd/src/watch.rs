//! Watches: one etcd watch stream per [`Watch`], forwarded by a task into a bounded buffer.
//!
//! etcd replays history from the start revision and then follows live changes, in revision
//! order, with no gap and no duplicate; the task only translates events. It never waits for the
//! consumer: when the buffer is full the watch is closed with a reason to re-list (as the SQLite
//! store's fan-out does), so etcd's stream, and the connection it shares, never back up.
//!
//! **Progress** (what a BOOKMARK may carry) is the revision of the last event handed over, or
//! later the revision of an etcd progress notification: the watch asks for them
//! (`progress_notify`), and etcd sends one to an idle, caught-up watcher every
//! `--experimental-watch-progress-notify-interval` (10 minutes unless set), through the same
//! queue as its events, so after them. (A client `RequestProgress` would be answered at once,
//! but etcd before 3.4.24/3.5.8 may answer it ahead of queued events — etcd issue 15220 — and
//! Debian ships 3.4.23.) Events and progress are handed over under one lock, and progress is
//! given only while the buffer is empty, so it never runs ahead of an event not yet yielded.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use etcd_client::{EventType, WatchClient, WatchOptions, WatchResponse, WatchStream};
use futures_core::Stream;
use storage::{BackendWatch, Event, EventKind, Revision, StorageError, WATCH_BUFFER, Watch};
use tokio::sync::mpsc;

use crate::EtcdStore;

/// How long to wait for etcd to say where it is compacted to.
const COMPACT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts an etcd watch of `[key, end)` from `start_revision` (etcd's numbers; 0 = now) and
/// waits until etcd confirms it, so that every write after this returns is seen.
pub(crate) async fn start(
    store: &EtcdStore,
    prefix: &str,
    key: Vec<u8>,
    end: Vec<u8>,
    start_revision: i64,
    from_revision: Revision,
) -> Result<Watch, StorageError> {
    let options = WatchOptions::new()
        .with_range(end)
        .with_prev_key()
        .with_progress_notify()
        .with_start_revision(start_revision);
    let open = || {
        let mut client = store.watch.clone();
        let (key, options) = (key.clone(), options.clone());
        async move { client.watch(key, Some(options)).await }
    };
    let mut stream = store
        .call("watch", open)
        .await?
        .map_err(|e| store.failed("watch", &e))?;
    let created = store
        .timed("watch", stream.message())
        .await?
        .map_err(|e| store.failed("watch", &e))?
        .ok_or_else(|| {
            store.unavailable("watch", "the stream ended before etcd confirmed the watch")
        })?;
    if created.compact_revision() != 0 {
        return Err(StorageError::Compacted {
            requested: from_revision,
            compact_revision: store.store_revision(created.compact_revision()),
        });
    }
    if !created.created() || created.canceled() {
        return Err(store.unavailable(
            "watch",
            format_args!("etcd refused the watch: {:?}", created.cancel_reason()),
        ));
    }
    // The first revision the consumer needs (for the error if etcd compacts it away). Nothing
    // before it belongs to the watch, so the watch has caught up to the one before.
    let next = if from_revision == 0 {
        store.revision_of(created.header())? + 1
    } else {
        from_revision
    };
    let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
    let state = Arc::new(Mutex::new(State {
        progress: next - 1,
        error: None,
    }));
    let forwarder = Forwarder {
        store: store.clone(),
        prefix: prefix.to_owned(),
        stream,
        sender,
        state: state.clone(),
        next,
    };
    tokio::spawn(forwarder.run());
    Ok(Watch::from_backend(Events {
        receiver,
        state,
        finished: false,
    }))
}

/// What the forwarder and the consumer share.
struct State {
    /// Every matching change at or before it has been put in the buffer.
    progress: Revision,
    /// Why the watch closed, for the consumer once the buffer is drained.
    error: Option<StorageError>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// What to do after a response.
enum Flow {
    Continue,
    /// Close the watch, with the error the consumer gets last (none: the consumer is gone).
    Stop(Option<StorageError>),
}

struct Forwarder {
    store: EtcdStore,
    prefix: String,
    stream: WatchStream,
    sender: mpsc::Sender<Event>,
    state: Arc<Mutex<State>>,
    /// The next revision the consumer has not seen.
    next: Revision,
}

impl Forwarder {
    async fn run(mut self) {
        let error = loop {
            let message = tokio::select! {
                // The consumer dropped the watch: dropping the stream ends it at etcd too.
                () = self.sender.closed() => return,
                message = self.stream.message() => message,
            };
            let flow = match message {
                Ok(Some(response)) => self.deliver(&response),
                Ok(None) => Flow::Stop(Some(self.unavailable("etcd ended the watch stream"))),
                Err(error) => Flow::Stop(Some(self.unavailable(crate::describe(&error)))),
            };
            if let Flow::Stop(error) = flow {
                break error;
            }
        };
        if let Some(error) = error {
            tracing::debug!(prefix = %self.prefix, %error, "etcd watch closed");
            lock(&self.state).error = Some(error);
        }
        // Dropping the sender now lets the consumer drain the buffer, then see the error.
    }

    fn unavailable(&self, detail: impl std::fmt::Display) -> StorageError {
        self.store.unavailable(
            "watch",
            format_args!(
                "the watch of {:?} failed: {detail}; re-list and watch again",
                self.prefix
            ),
        )
    }

    fn deliver(&mut self, response: &WatchResponse) -> Flow {
        if response.compact_revision() != 0 {
            return Flow::Stop(Some(StorageError::Compacted {
                requested: self.next,
                compact_revision: self.store.store_revision(response.compact_revision()),
            }));
        }
        if response.canceled() {
            return Flow::Stop(Some(self.unavailable(format_args!(
                "etcd canceled it: {:?}",
                response.cancel_reason()
            ))));
        }
        // Events go in, and progress moves, under the lock `Events::progress` reads under.
        let mut state = lock(&self.state);
        if response.events().is_empty() {
            // A progress notification: everything up to its revision has been sent.
            if let Some(header) = response.header() {
                state.progress = state
                    .progress
                    .max(self.store.store_revision(header.revision()));
            }
            return Flow::Continue;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else {
                continue;
            };
            let prev = event.prev_kv().map(|p| self.store.key_value(p.clone()));
            let mut kv = self.store.key_value(kv.clone());
            let kind = match event.event_type() {
                EventType::Put => EventKind::Put,
                EventType::Delete => {
                    // etcd's delete event carries only the key and the delete's revision.
                    kv.create_revision = prev.as_ref().map_or(0, |p| p.create_revision);
                    kv.value.clear();
                    EventKind::Delete
                }
            };
            let revision = kv.mod_revision;
            match self.sender.try_send(Event { kind, kv, prev }) {
                Ok(()) => {
                    self.next = revision + 1;
                    state.progress = state.progress.max(revision);
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Flow::Stop(Some(StorageError::WatchClosed {
                        reason: format!(
                            "the watcher fell more than {WATCH_BUFFER} events behind at revision {revision}; re-list and watch again"
                        ),
                    }));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return Flow::Stop(None),
            }
        }
        Flow::Continue
    }
}

/// The consumer's side: the buffered events, then the reason the watch closed.
struct Events {
    receiver: mpsc::Receiver<Event>,
    state: Arc<Mutex<State>>,
    finished: bool,
}

impl BackendWatch for Events {
    fn progress(&self) -> Option<Revision> {
        if self.finished {
            return None;
        }
        let state = lock(&self.state);
        (state.error.is_none() && self.receiver.is_empty()).then_some(state.progress)
    }
}

impl Stream for Events {
    type Item = Result<Event, StorageError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.receiver.poll_recv(cx) {
            Poll::Ready(Some(event)) => Poll::Ready(Some(Ok(event))),
            Poll::Ready(None) => {
                self.finished = true;
                let error = lock(&self.state).error.take();
                Poll::Ready(error.map(Err))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The revision etcd is compacted to, learned the only way etcd tells it: a watch from a
/// revision below it (`from`, etcd's numbers) is answered with it. `None` if etcd does not
/// answer so in time (e.g. `from` is not compacted after all).
pub(crate) async fn etcd_compact_revision(
    mut client: WatchClient,
    key: Vec<u8>,
    from: i64,
) -> Option<i64> {
    let probe = async move {
        let mut stream = client
            .watch(key, Some(WatchOptions::new().with_start_revision(from)))
            .await
            .ok()?;
        while let Some(response) = stream.message().await.ok()? {
            if response.compact_revision() != 0 {
                return Some(response.compact_revision());
            }
            if response.canceled() {
                return None;
            }
        }
        None
    };
    tokio::time::timeout(COMPACT_PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
}
