//! The etcd v3 backend of [`storage::Store`], for running several API server replicas on one
//! etcd cluster (etcd is what Kubernetes itself stands on). It passes the same conformance suite
//! as the embedded SQLite store.
//!
//! How the trait maps onto etcd (kube-apiserver's `etcd3` store issues the same shapes):
//!
//! - **Keys** live under a configurable [`EtcdOptions::key_prefix`], so several catalogs can
//!   share one etcd: the trait's key `k` is the etcd key `prefix + k`, and keys come back
//!   without the prefix. A range over the trait's prefix `p` is `[prefix + p, end(prefix + p))`;
//!   over the empty prefix it is `[prefix, prefix + 0xff)` — no UTF-8 key starts with byte `0xff`,
//!   which keeps the store's own bookkeeping key (below) out of every range.
//! - **create** = `Txn(If mod_revision(key) == 0 Then Put Else Get)`, refused with
//!   [`StorageError::KeyExists`]; **update** / **delete** = `Txn(If mod_revision(key) ==
//!   expected Then Put|Delete(prev_kv) Else Get)`, refused with
//!   [`StorageError::RevisionMismatch`] or [`StorageError::NotFound`]. A refused write takes no
//!   revision (the `Else` branch only reads).
//! - **list** = one `Range` with `limit + 1` (to learn whether more follow) at the requested
//!   revision, starting right after the continue key; **count** = a `count_only` `Range`.
//! - **watch** = etcd `Watch(range, start_revision, prev_kv)`: etcd itself replays history and
//!   follows live without gap or duplicate. Events go to the consumer through a bounded buffer
//!   of [`storage::WATCH_BUFFER`] events; a consumer that falls further behind is closed with
//!   [`StorageError::WatchClosed`] ("re-list"), so a slow reader never holds up etcd's stream.
//!   Watch **progress** (for bookmarks) comes from etcd's progress notifications, which etcd
//!   sends to idle watchers every `--experimental-watch-progress-notify-interval` (10 minutes
//!   unless set; 5 s is a good value for an API server) — see the `watch` module.
//! - **Compaction** is etcd's own (`Compact`), which is cluster-wide. etcd does not say which
//!   revision it is compacted to, so the store keeps it the way kube-apiserver does (its
//!   `compact_rev_key`): in the key `prefix + "\xffcompact_rev_key"`, written by compare-and-swap
//!   *before* compacting, so replicas sharing the prefix agree on it and only one of them moves
//!   it. Writing that key takes one etcd revision. Reads and watches below the compact revision
//!   fail with [`StorageError::Compacted`], whose `compact_revision` is what etcd itself reports.
//! - **Revisions** are etcd's. A fresh etcd is at revision 1 before its first write (its first
//!   write is revision 2); [`EtcdOptions::revision_base`] can shift the numbers the store shows.

mod watch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions,
    GetResponse, Identity, KvClient, PutOptions, ResponseHeader, TlsOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse, WatchClient,
};
use storage::{Deleted, KeyValue, ListOptions, ListResult, Revision, StorageError, Store, Watch};

/// The name of the bookkeeping key, after the key prefix and a `0xff` byte.
const COMPACT_KEY_NAME: &[u8] = b"compact_rev_key";

/// The largest response accepted from etcd (kube-apiserver's client allows the same): a list
/// of many large objects is one message.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// Where and how to reach etcd.
#[derive(Clone)]
pub struct EtcdOptions {
    /// Client URLs of the cluster's members, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// Every key of this store lives under it (e.g. `/service-catalog/`). Catalogs sharing an
    /// etcd need prefixes of which none is a prefix of another: `/catalog-a/` and
    /// `/catalog-a-staging/`, not `/catalog-a` and `/catalog-ab` (a list of every key of the
    /// first would include the second's).
    pub key_prefix: String,
    /// TLS for `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// User name and password, when etcd has authentication enabled.
    pub credentials: Option<(String, String)>,
    /// How long to wait for a TCP/TLS connection.
    pub connect_timeout: Duration,
    /// How long any single request (not a watch) may take.
    pub request_timeout: Duration,
    /// The etcd revision the store shows as revision 0: the store's revision is etcd's minus
    /// this. Leave it 0 in production (revisions are then etcd's own, as `etcdctl` shows them).
    /// A fresh etcd is at revision 1 before its first write, so 1 makes a fresh etcd number
    /// its writes 1, 2, 3, ... like a fresh SQLite store (the conformance suite relies on that).
    pub revision_base: Revision,
}

impl EtcdOptions {
    pub fn new(endpoints: Vec<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            endpoints,
            key_prefix: key_prefix.into(),
            tls: None,
            credentials: None,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            revision_base: 0,
        }
    }
}

impl std::fmt::Debug for EtcdOptions {
    // Never shows the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("key_prefix", &self.key_prefix)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("revision_base", &self.revision_base)
            .finish()
    }
}

/// TLS material, as PEM files.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificate.
    pub ca_file: PathBuf,
    /// A client certificate and its key, for etcd's `--client-cert-auth`.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// The name to check etcd's certificate against, when it is not the endpoint's host.
    pub server_name: Option<String>,
}

/// Why the store could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid etcd options: {0}")]
    InvalidOptions(String),
    #[error("cannot read {what} {path}: {source}")]
    Tls {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("cannot reach etcd at {endpoints}: {detail}")]
    Unreachable { endpoints: String, detail: String },
}

/// The etcd store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    prefix: Vec<u8>,
    compact_key: Vec<u8>,
    base: Revision,
    request_timeout: Duration,
    /// The endpoints, for error messages.
    endpoints: String,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("prefix", &String::from_utf8_lossy(&self.prefix))
            .finish_non_exhaustive()
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, ConnectError> {
    std::fs::read(path).map_err(|source| ConnectError::Tls {
        what,
        path: path.display().to_string(),
        source,
    })
}

impl EtcdStore {
    /// Connects, and checks that etcd answers.
    pub async fn connect(options: EtcdOptions) -> Result<Self, ConnectError> {
        if options.endpoints.is_empty() {
            return Err(ConnectError::InvalidOptions("no endpoints".into()));
        }
        if options.revision_base < 0 {
            return Err(ConnectError::InvalidOptions(format!(
                "revision_base must not be negative (got {})",
                options.revision_base
            )));
        }
        let endpoints = options.endpoints.join(",");
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            // etcd refuses pings more often than every 5 s, and pings without a stream.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(10))
            .with_keep_alive_while_idle(false)
            // A member cut off from its cluster fails requests and watches instead of serving
            // stale data.
            .with_require_leader(true);
        if let Some((user, password)) = &options.credentials {
            connect = connect.with_user(user, password);
        }
        if let Some(tls) = &options.tls {
            let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(read_pem(
                "the etcd CA certificate",
                &tls.ca_file,
            )?));
            match (&tls.client_cert_file, &tls.client_key_file) {
                (Some(cert), Some(key)) => {
                    config = config.identity(Identity::from_pem(
                        read_pem("the etcd client certificate", cert)?,
                        read_pem("the etcd client key", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(ConnectError::InvalidOptions(
                        "a client certificate needs both its certificate and its key file".into(),
                    ));
                }
            }
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name);
            }
            connect = connect.with_tls(config);
        }
        let unreachable = |detail: String| ConnectError::Unreachable {
            endpoints: endpoints.clone(),
            detail,
        };
        let client = tokio::time::timeout(
            options.connect_timeout,
            Client::connect(&options.endpoints, Some(connect)),
        )
        .await
        .map_err(|_| {
            unreachable(format!(
                "no connection within {:?}",
                options.connect_timeout
            ))
        })?
        .map_err(|e| match e {
            etcd_client::Error::InvalidArgs(detail) => ConnectError::InvalidOptions(detail),
            etcd_client::Error::InvalidUri(detail) => {
                ConnectError::InvalidOptions(format!("bad endpoint URL: {detail}"))
            }
            other => unreachable(other.to_string()),
        })?;
        let prefix = options.key_prefix.clone().into_bytes();
        let mut compact_key = prefix.clone();
        compact_key.push(0xff);
        compact_key.extend_from_slice(COMPACT_KEY_NAME);
        let store = Self {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            prefix,
            compact_key,
            base: options.revision_base,
            request_timeout: options.request_timeout,
            endpoints: endpoints.clone(),
        };
        // Nothing above talks to etcd yet; this does.
        let mut kv = store.kv.clone();
        let probe = kv.get(
            store.compact_key.clone(),
            Some(GetOptions::new().with_count_only()),
        );
        let revision = tokio::time::timeout(options.connect_timeout, probe)
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", options.connect_timeout)))?
            .map_err(|e| unreachable(describe(&e)))?
            .header()
            .map(|h| store.store_revision(h.revision()))
            .unwrap_or_default();
        tracing::info!(
            endpoints = %store.endpoints,
            prefix = %options.key_prefix,
            revision,
            "connected to etcd"
        );
        Ok(store)
    }

    /// The etcd key that records the compact revision.
    pub fn compact_key(&self) -> &[u8] {
        &self.compact_key
    }

    fn etcd_revision(&self, revision: Revision) -> i64 {
        revision + self.base
    }

    fn store_revision(&self, revision: i64) -> Revision {
        revision - self.base
    }

    fn full_key(&self, key: &str) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.prefix.len() + key.len());
        full.extend_from_slice(&self.prefix);
        full.extend_from_slice(key.as_bytes());
        full
    }

    /// `[start, end)` of the etcd keys holding the store's keys that start with `prefix`.
    fn range(&self, prefix: &str) -> (Vec<u8>, Vec<u8>) {
        let start = self.full_key(prefix);
        let end = if prefix.is_empty() {
            // Every store key, and not the bookkeeping key (`0xff` starts no UTF-8 key).
            let mut end = self.prefix.clone();
            end.push(0xff);
            end
        } else {
            // `prefix` is UTF-8, so its last byte is below 0xff and there is an end.
            prefix_end(&start).unwrap_or_else(|| vec![0])
        };
        // etcd refuses an empty key; "\0" is the smallest non-empty one.
        let start = if start.is_empty() { vec![0] } else { start };
        (start, end)
    }

    fn unavailable(&self, what: &str, error: impl std::fmt::Display) -> StorageError {
        StorageError::Unavailable(format!("etcd at {}: {what}: {error}", self.endpoints))
    }

    fn failed(&self, what: &str, error: &etcd_client::Error) -> StorageError {
        let description = describe(error);
        // etcd refuses requests over its --max-request-bytes (and its gRPC server messages over
        // its receive limit): the caller's value is at fault, not an outage.
        if description.contains("request is too large") || description.contains("larger than max") {
            return StorageError::TooLarge(format!(
                "etcd at {}: {what}: {description}",
                self.endpoints
            ));
        }
        self.unavailable(what, description)
    }

    /// Runs a request (made afresh by `request` for each attempt) within the request timeout.
    /// A request that never reached etcd — its member refused the connection, e.g. a dead
    /// member of several — is tried again at once: the balancer picks a live member, and
    /// nothing was applied, so even a write is safe to repeat.
    async fn call<T, F>(
        &self,
        what: &str,
        mut request: impl FnMut() -> F,
    ) -> Result<Result<T, etcd_client::Error>, StorageError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let mut refused = 0;
        loop {
            let result = tokio::time::timeout_at(deadline, request())
                .await
                .map_err(|_| self.timed_out(what))?;
            match result {
                Err(error) if never_sent(&error) && refused < CONNECT_RETRIES => {
                    refused += 1;
                    tracing::debug!(what, error = %describe(&error), "etcd refused the connection; trying again");
                    tokio::time::sleep(Duration::from_millis(20 * refused)).await;
                }
                other => return Ok(other),
            }
        }
    }

    /// Awaits one step of a stream within the request timeout.
    async fn timed<T>(
        &self,
        what: &str,
        step: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<Result<T, etcd_client::Error>, StorageError> {
        tokio::time::timeout(self.request_timeout, step)
            .await
            .map_err(|_| self.timed_out(what))
    }

    fn timed_out(&self, what: &str) -> StorageError {
        self.unavailable(
            what,
            format_args!("no answer within {:?}", self.request_timeout),
        )
    }

    async fn range_request(
        &self,
        what: &str,
        key: Vec<u8>,
        options: GetOptions,
    ) -> Result<GetResponse, StorageError> {
        self.call(what, || {
            let mut kv = self.kv.clone();
            let (key, options) = (key.clone(), options.clone());
            async move { kv.get(key, Some(options)).await }
        })
        .await?
        .map_err(|e| self.failed(what, &e))
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, StorageError> {
        self.call(what, || {
            let mut kv = self.kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await?
        .map_err(|e| self.failed(what, &e))
    }

    fn revision_of(&self, header: Option<&ResponseHeader>) -> Result<Revision, StorageError> {
        header
            .map(|h| self.store_revision(h.revision()))
            .ok_or_else(|| self.unavailable("reading the response", "it has no header"))
    }

    /// A store value from an etcd one.
    fn key_value(&self, kv: etcd_client::KeyValue) -> KeyValue {
        let create_revision = self.store_revision(kv.create_revision());
        let mod_revision = self.store_revision(kv.mod_revision());
        let (key, value) = kv.into_key_value();
        KeyValue {
            key: self.store_key(&key),
            value,
            create_revision,
            mod_revision,
        }
    }

    /// The store's key for an etcd key (which is under the prefix: every request is).
    fn store_key(&self, key: &[u8]) -> String {
        let key = key.strip_prefix(self.prefix.as_slice()).unwrap_or(key);
        String::from_utf8_lossy(key).into_owned()
    }

    /// The value an `Else Get` branch of a transaction read.
    /// Runs `operation` on `key` only if its mod_revision is `expected`; a refusal is
    /// `NotFound` or `RevisionMismatch` with the current value, as the trait promises.
    async fn if_revision(
        &self,
        what: &str,
        key: &str,
        expected: Revision,
        operation: TxnOp,
    ) -> Result<TxnResponse, StorageError> {
        let refused = |current: Option<KeyValue>| match current {
            None => StorageError::NotFound {
                key: key.to_owned(),
            },
            Some(current) => StorageError::RevisionMismatch {
                key: key.to_owned(),
                expected,
                current: Some(Box::new(current)),
            },
        };
        let expected_etcd = self.etcd_revision(expected);
        if expected_etcd < 1 {
            // No key has such a revision (and `mod_revision == 0` would mean "absent").
            return Err(refused(self.get(key).await?));
        }
        let full = self.full_key(key);
        let response = self
            .txn(
                what,
                Txn::new()
                    .when([Compare::mod_revision(
                        full.clone(),
                        CompareOp::Equal,
                        expected_etcd,
                    )])
                    .and_then([operation])
                    .or_else([TxnOp::get(full, None)]),
            )
            .await?;
        if response.succeeded() {
            Ok(response)
        } else {
            Err(refused(self.else_value(&response)))
        }
    }

    fn else_value(&self, response: &TxnResponse) -> Option<KeyValue> {
        response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next(),
                _ => None,
            })
            .map(|kv| self.key_value(kv))
    }

    /// The compact revision recorded in the bookkeeping key, its etcd `mod_revision` (0: absent)
    /// and etcd's current revision — all in etcd's numbers.
    async fn recorded_compaction(&self) -> Result<(i64, i64, i64), StorageError> {
        let response = self
            .range_request(
                "reading the compact revision",
                self.compact_key.clone(),
                GetOptions::new(),
            )
            .await?;
        let current = response
            .header()
            .map(|h| h.revision())
            .ok_or_else(|| self.unavailable("reading the compact revision", "no header"))?;
        let Some(kv) = response.kvs().first() else {
            return Ok((0, 0, current));
        };
        let recorded = std::str::from_utf8(kv.value())
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                self.unavailable(
                    "reading the compact revision",
                    format_args!(
                        "{:?} holds {:?}, not a revision",
                        String::from_utf8_lossy(&self.compact_key),
                        String::from_utf8_lossy(kv.value())
                    ),
                )
            })?;
        Ok((recorded, kv.mod_revision(), current))
    }

    /// The revision etcd is compacted to (etcd numbers), given one it said is compacted.
    async fn etcd_compact_revision(&self, compacted: i64) -> i64 {
        match watch::etcd_compact_revision(
            self.watch.clone(),
            self.compact_key.clone(),
            compacted.max(1),
        )
        .await
        {
            Some(revision) => revision,
            // etcd did not say: the recorded revision is the best knowledge, and it is at
            // least the next one.
            None => self
                .recorded_compaction()
                .await
                .map(|(recorded, _, _)| recorded)
                .unwrap_or_default()
                .max(compacted + 1),
        }
    }

    /// The error for a read of the compacted revision `requested` (store numbers).
    async fn compacted(&self, requested: Revision) -> StorageError {
        let compact = self
            .etcd_compact_revision(self.etcd_revision(requested))
            .await;
        StorageError::Compacted {
            requested,
            compact_revision: self.store_revision(compact),
        }
    }

    /// The error for a read or watch at a negative revision (which never existed).
    async fn below_zero(&self, requested: Revision) -> StorageError {
        match self.compact_revision().await {
            Ok(compact_revision) => StorageError::Compacted {
                requested,
                compact_revision,
            },
            Err(error) => error,
        }
    }

    /// Classifies an etcd error of a read at `requested` (store numbers).
    async fn read_error(
        &self,
        what: &str,
        requested: Revision,
        error: etcd_client::Error,
    ) -> StorageError {
        match revision_error(&error) {
            Some(RevisionError::Compacted) => self.compacted(requested).await,
            Some(RevisionError::Future) => match self.current_revision().await {
                Ok(current) => StorageError::FutureRevision { requested, current },
                Err(error) => error,
            },
            None => self.failed(what, &error),
        }
    }
}

/// How often a request is tried again when etcd refused the connection.
const CONNECT_RETRIES: u64 = 3;

/// Whether the request failed before reaching etcd: the connection was refused.
fn never_sent(error: &etcd_client::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = match error {
        etcd_client::Error::GRpcStatus(status) => std::error::Error::source(status),
        other => std::error::Error::source(other),
    };
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// An etcd client error with its causes (a gRPC status alone often says only "transport
/// error").
fn describe(error: &etcd_client::Error) -> String {
    let (mut text, mut source) = match error {
        etcd_client::Error::GRpcStatus(status) => (
            format!("{:?}: {}", status.code(), status.message()),
            std::error::Error::source(status),
        ),
        other => (other.to_string(), std::error::Error::source(other)),
    };
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The smallest byte string greater than every string starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < 0xff {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

enum RevisionError {
    Compacted,
    Future,
}

/// etcd's answers to a read at a revision it no longer or not yet has (gRPC `OutOfRange`).
fn revision_error(error: &etcd_client::Error) -> Option<RevisionError> {
    let etcd_client::Error::GRpcStatus(status) = error else {
        return None;
    };
    let message = status.message();
    if message.contains("required revision has been compacted") {
        Some(RevisionError::Compacted)
    } else if message.contains("required revision is a future revision") {
        Some(RevisionError::Future)
    } else {
        None
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let mut response = self
            .range_request("get", self.full_key(key), GetOptions::new())
            .await?;
        Ok(response
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| self.key_value(kv)))
    }

    async fn list(&self, options: &ListOptions) -> Result<ListResult, StorageError> {
        let (mut start, end) = self.range(&options.prefix);
        if let Some(after) = &options.continue_after {
            // The smallest key after `after`.
            let mut next = self.full_key(after);
            next.push(0);
            start = start.max(next);
        }
        let mut get = GetOptions::new().with_range(end);
        if let Some(limit) = options.limit {
            // One more than asked, to learn whether more follow.
            get = get.with_limit(i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1);
        }
        if let Some(revision) = options.at_revision {
            if revision < 0 {
                return Err(self.below_zero(revision).await);
            }
            let etcd_revision = self.etcd_revision(revision);
            if etcd_revision < 1 {
                // Before etcd's first revision nothing existed.
                return Ok(ListResult {
                    items: Vec::new(),
                    revision,
                    more: false,
                });
            }
            get = get.with_revision(etcd_revision);
        }
        let attempt = || {
            let mut kv = self.kv.clone();
            let (start, get) = (start.clone(), get.clone());
            async move { kv.get(start, Some(get)).await }
        };
        let mut response = match self.call("list", attempt).await? {
            Ok(response) => response,
            Err(error) => {
                let requested = options.at_revision.unwrap_or_default();
                return Err(self.read_error("list", requested, error).await);
            }
        };
        let revision = match options.at_revision {
            Some(revision) => revision,
            None => self.revision_of(response.header())?,
        };
        let mut items: Vec<KeyValue> = response
            .take_kvs()
            .into_iter()
            .map(|kv| self.key_value(kv))
            .collect();
        let more = options.limit.is_some_and(|limit| items.len() > limit);
        if let Some(limit) = options.limit {
            items.truncate(limit);
        }
        Ok(ListResult {
            items,
            revision,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<u64, StorageError> {
        let (start, end) = self.range(prefix);
        let response = self
            .range_request(
                "count",
                start,
                GetOptions::new().with_range(end).with_count_only(),
            )
            .await?;
        Ok(u64::try_from(response.count()).unwrap_or_default())
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue, StorageError> {
        let full = self.full_key(key);
        let response = self
            .txn(
                "create",
                Txn::new()
                    .when([Compare::mod_revision(full.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(full.clone(), value.clone(), None)])
                    .or_else([TxnOp::get(full, None)]),
            )
            .await?;
        if !response.succeeded() {
            let current = self.else_value(&response).ok_or_else(|| {
                self.unavailable("create", "the key exists but etcd returned no value for it")
            })?;
            return Err(StorageError::KeyExists {
                key: key.to_owned(),
                current: Box::new(current),
            });
        }
        let revision = self.revision_of(response.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: Revision,
    ) -> Result<KeyValue, StorageError> {
        let full = self.full_key(key);
        let put = TxnOp::put(
            full.clone(),
            value.clone(),
            Some(PutOptions::new().with_prev_key()),
        );
        let response = self.if_revision("update", key, expected, put).await?;
        let revision = self.revision_of(response.header())?;
        let create_revision = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Put(put) => put.prev_key().map(|p| p.create_revision()),
                _ => None,
            })
            .map(|r| self.store_revision(r))
            .ok_or_else(|| self.unavailable("update", "etcd returned no previous value"))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: revision,
        })
    }

    async fn delete(&self, key: &str, expected: Revision) -> Result<Deleted, StorageError> {
        let delete = TxnOp::delete(
            self.full_key(key),
            Some(DeleteOptions::new().with_prev_key()),
        );
        let response = self.if_revision("delete", key, expected, delete).await?;
        let revision = self.revision_of(response.header())?;
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Delete(mut delete) => delete.take_prev_kvs().into_iter().next(),
                _ => None,
            })
            .map(|kv| self.key_value(kv))
            .ok_or_else(|| self.unavailable("delete", "etcd returned no previous value"))?;
        Ok(Deleted { prev, revision })
    }

    async fn watch(&self, prefix: &str, from_revision: Revision) -> Result<Watch, StorageError> {
        if from_revision < 0 {
            return Err(self.below_zero(from_revision).await);
        }
        let start_revision = if from_revision == 0 {
            // etcd's "from now".
            0
        } else {
            let start = self.etcd_revision(from_revision);
            // etcd reports a watch below its compact revision only on the stream, after the
            // watch exists; a read finds out first. A read at `start - 1` succeeds exactly when
            // `start` is at most one past the current revision and above the compact
            // revision — the common case (watching on from a list) costs one round trip.
            let check_at = if start > 1 { start - 1 } else { start };
            let probe = || {
                let mut kv = self.kv.clone();
                let key = self.compact_key.clone();
                let options = GetOptions::new().with_count_only().with_revision(check_at);
                async move { kv.get(key, Some(options)).await }
            };
            match self.call("watch", probe).await? {
                Ok(_) => {}
                Err(error) => match revision_error(&error) {
                    // Compacted at `start` exactly still lets a watch start there.
                    Some(RevisionError::Compacted) => {
                        let compact = self.etcd_compact_revision(check_at).await;
                        if start < compact {
                            return Err(StorageError::Compacted {
                                requested: from_revision,
                                compact_revision: self.store_revision(compact),
                            });
                        }
                    }
                    Some(RevisionError::Future) => {
                        return Err(StorageError::FutureRevision {
                            requested: from_revision,
                            current: self.current_revision().await?,
                        });
                    }
                    None => return Err(self.failed("watch", &error)),
                },
            }
            start
        };
        let (start, end) = self.range(prefix);
        watch::start(self, prefix, start, end, start_revision, from_revision).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StorageError> {
        if revision <= 0 {
            return Ok(());
        }
        let target = self.etcd_revision(revision);
        // Record the target first, by compare-and-swap on the bookkeeping key: of replicas
        // compacting at once, one moves it and the others see it moved.
        let recorded = loop {
            let (recorded, key_revision, current) = self.recorded_compaction().await?;
            if target > current {
                return Err(StorageError::FutureRevision {
                    requested: revision,
                    current: self.store_revision(current),
                });
            }
            if target <= recorded {
                break recorded;
            }
            let response = self
                .txn(
                    "recording the compact revision",
                    Txn::new()
                        .when([Compare::mod_revision(
                            self.compact_key.clone(),
                            CompareOp::Equal,
                            key_revision,
                        )])
                        .and_then([TxnOp::put(
                            self.compact_key.clone(),
                            target.to_string(),
                            None,
                        )]),
                )
                .await?;
            if response.succeeded() {
                break target;
            }
        };
        // Then compact etcd to the recorded revision. When it already is (another replica, or
        // this one before), etcd answers "compacted" at once; when an earlier attempt recorded
        // the revision but failed to compact, this finishes it.
        let compact = || {
            let mut kv = self.kv.clone();
            async move { kv.compact(recorded, None).await }
        };
        match self.call("compact", compact).await? {
            Ok(_) => {
                tracing::info!(
                    revision = self.store_revision(recorded),
                    etcd_revision = recorded,
                    prefix = %String::from_utf8_lossy(&self.prefix),
                    "compacted etcd"
                );
                Ok(())
            }
            Err(error) => match revision_error(&error) {
                Some(RevisionError::Compacted) => Ok(()),
                Some(RevisionError::Future) => Err(StorageError::FutureRevision {
                    requested: revision,
                    current: self.current_revision().await?,
                }),
                None => Err(self.failed("compact", &error)),
            },
        }
    }

    async fn current_revision(&self) -> Result<Revision, StorageError> {
        let response = self
            .range_request(
                "reading the current revision",
                self.compact_key.clone(),
                GetOptions::new().with_count_only(),
            )
            .await?;
        self.revision_of(response.header())
    }

    async fn compact_revision(&self) -> Result<Revision, StorageError> {
        let (recorded, _, _) = self.recorded_compaction().await?;
        Ok(if recorded == 0 {
            0
        } else {
            self.store_revision(recorded)
        })
    }
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
