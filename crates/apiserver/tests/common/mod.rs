//! The in-process API server the integration tests of this crate talk to over real HTTP, on a
//! real SQLite file, with the store at hand (to compact it, for instance).

#![allow(dead_code)] // Each test file uses its own subset.

use std::sync::Arc;
use std::time::Duration;

use apiserver::{ApiServer, Registry};
use futures_util::StreamExt as _;
use serde_json::Value;
use storage::sqlite::{SqliteOptions, SqliteStore};

pub struct Server {
    pub url: String,
    pub store: Arc<SqliteStore>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(SqliteOptions {
            compaction: None,
            ..SqliteOptions::new(dir.path().join("db"))
        })?);
        let server = Arc::new(ApiServer::new(store.clone(), Registry::standalone_core())?);
        server.bootstrap().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = apiserver::url_of(listener.local_addr()?);
        tokio::spawn(server.serve(listener, std::future::pending()));
        Ok(Self {
            url,
            store,
            http: reqwest::Client::new(),
            _dir: dir,
        })
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn patch(
        &self,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let response = self
            .http
            .patch(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await?;
        Ok((response.status().as_u16(), response.json().await?))
    }

    pub async fn delete(&self, path: &str, body: Option<Value>) -> anyhow::Result<(u16, Value)> {
        self.call(reqwest::Method::DELETE, path, body).await
    }

    /// Opens a watch and returns a reader of its events.
    pub async fn watch(&self, path: &str) -> anyhow::Result<Events> {
        let response = self.http.get(format!("{}{path}", self.url)).send().await?;
        anyhow::ensure!(
            response.status() == 200,
            "watch answered {}",
            response.status()
        );
        Ok(Events {
            stream: Box::pin(response.bytes_stream()),
            buffer: Vec::new(),
        })
    }
}

pub struct Events {
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: Vec<u8>,
}

impl Events {
    /// The next event, or `None` when the server ended the stream.
    pub async fn next(&mut self) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            match tokio::time::timeout(Duration::from_secs(10), self.stream.next()).await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk?),
                None => return Ok(None),
            }
        }
    }

    pub async fn expect(&mut self) -> anyhow::Result<Value> {
        self.next()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the watch ended"))
    }
}
