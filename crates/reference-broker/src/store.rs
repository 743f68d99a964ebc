//! The broker's memory: instances and bindings, kept in a small SQLite file so that tests can
//! restart the broker and find what it provisioned.
//!
//! Each record is one JSON document in a row; the broker loads everything at start and writes
//! through on every change (the write comes first, so a failed write leaves memory unchanged).

use std::path::Path;

use osb_client::{BindingBody, MaintenanceInfo, OperationState};
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The schema version this code writes; older files are migrated forward at open.
const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("broker state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("broker state database: record {key} is corrupt: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "broker state database has schema version {found}, newer than this broker's {SCHEMA_VERSION}"
    )]
    TooNew { found: i64 },
}

/// Where a resource is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Creating,
    Ready,
    Failed,
    /// Deleted by an asynchronous operation; kept so `last_operation` can answer `410 Gone`.
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Provision,
    Update,
    Deprovision,
    Bind,
    Unbind,
}

/// An operation (asynchronous, or the synchronous one that created the resource).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub id: String,
    pub kind: OperationKind,
    pub state: OperationState,
    pub started_ms: u64,
    pub duration_ms: u64,
    pub retry_after_secs: u64,
    /// Set when the operation will end (or ended) `failed`, with this description.
    pub failure: Option<String>,
    /// For an update: what the instance becomes when it completes.
    pub update: Option<PendingUpdate>,
}

impl OperationRecord {
    pub fn in_progress(&self) -> bool {
        self.state == OperationState::InProgress
    }

    /// An operation in progress whose time has come (at `now_ms`, milliseconds since the epoch).
    pub fn is_due(&self, now_ms: u64) -> bool {
        self.in_progress() && now_ms >= self.started_ms + self.duration_ms
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingUpdate {
    pub plan_id: String,
    pub parameters: Option<Value>,
    pub maintenance_info: Option<MaintenanceInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    pub id: String,
    pub service_id: String,
    pub plan_id: String,
    pub parameters: Option<Value>,
    pub context: Option<Value>,
    pub maintenance_info: Option<MaintenanceInfo>,
    pub dashboard_url: Option<String>,
    pub phase: Phase,
    pub operation: Option<OperationRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BindingRecord {
    pub instance_id: String,
    pub id: String,
    pub service_id: String,
    pub plan_id: String,
    pub parameters: Option<Value>,
    pub predecessor_binding_id: Option<String>,
    /// What bind answers (and fetch returns): credentials, metadata, endpoints.
    pub response: BindingBody,
    pub phase: Phase,
    pub operation: Option<OperationRecord>,
}

pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the state file; `None` keeps state in memory only.
    pub fn open(path: Option<&Path>) -> Result<Self, StoreError> {
        let conn = match path {
            Some(path) => Connection::open(path)?,
            None => Connection::open_in_memory()?,
        };
        // WAL with full sync: an answered request survives a crash of the broker.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew { found: version });
        }
        if version < 1 {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS instances (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS bindings (
                     instance_id TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL,
                     PRIMARY KEY (instance_id, id));
                 PRAGMA user_version = 1;",
            )?;
        }
        Ok(Self { conn })
    }

    pub fn instances(&self) -> Result<Vec<InstanceRecord>, StoreError> {
        self.load("SELECT id, doc FROM instances")
    }

    pub fn bindings(&self) -> Result<Vec<BindingRecord>, StoreError> {
        self.load("SELECT instance_id || '/' || id, doc FROM bindings")
    }

    fn load<T: for<'de> Deserialize<'de>>(&self, sql: &str) -> Result<Vec<T>, StoreError> {
        let mut statement = self.conn.prepare(sql)?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut records = Vec::new();
        for row in rows {
            let (key, doc) = row?;
            records.push(
                serde_json::from_str(&doc).map_err(|source| StoreError::Corrupt { key, source })?,
            );
        }
        Ok(records)
    }

    pub fn put_instance(&self, instance: &InstanceRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO instances (id, doc) VALUES (?1, ?2)
             ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
            params![instance.id, to_json(instance)],
        )?;
        Ok(())
    }

    /// Removes an instance and all its bindings atomically, leaving `tombstone` in its place
    /// when given (so a later `last_operation` can still answer `410 Gone`).
    pub fn delete_instance(
        &mut self,
        instance_id: &str,
        tombstone: Option<&InstanceRecord>,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM bindings WHERE instance_id = ?1", [instance_id])?;
        tx.execute("DELETE FROM instances WHERE id = ?1", [instance_id])?;
        if let Some(tombstone) = tombstone {
            tx.execute(
                "INSERT INTO instances (id, doc) VALUES (?1, ?2)",
                params![tombstone.id, to_json(tombstone)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn put_binding(&self, binding: &BindingRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO bindings (instance_id, id, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (instance_id, id) DO UPDATE SET doc = excluded.doc",
            params![binding.instance_id, binding.id, to_json(binding)],
        )?;
        Ok(())
    }

    pub fn delete_binding(&self, instance_id: &str, binding_id: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM bindings WHERE instance_id = ?1 AND id = ?2",
            [instance_id, binding_id],
        )?;
        Ok(())
    }

    /// The raw document of one instance (for tests and debugging).
    pub fn instance_doc(&self, instance_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT doc FROM instances WHERE id = ?1",
                [instance_id],
                |row| row.get(0),
            )
            .optional()?)
    }
}

fn to_json<T: Serialize>(record: &T) -> String {
    // Records are plain data (strings, numbers, JSON values): serialization cannot fail.
    serde_json::to_string(record).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(id: &str) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            service_id: "s".into(),
            plan_id: "p".into(),
            parameters: Some(serde_json::json!({"a": 1})),
            context: None,
            maintenance_info: None,
            dashboard_url: None,
            phase: Phase::Ready,
            operation: None,
        }
    }

    #[test]
    fn records_survive_reopening_and_deletes_cascade() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        {
            let store = Store::open(Some(&path))?;
            store.put_instance(&instance("i1"))?;
            store.put_instance(&instance("i2"))?;
            store.put_binding(&BindingRecord {
                instance_id: "i1".into(),
                id: "b1".into(),
                service_id: "s".into(),
                plan_id: "p".into(),
                parameters: None,
                predecessor_binding_id: None,
                response: BindingBody::default(),
                phase: Phase::Ready,
                operation: None,
            })?;
        }
        let mut store = Store::open(Some(&path))?;
        assert_eq!(store.instances()?.len(), 2);
        assert_eq!(store.bindings()?.len(), 1);
        store.delete_instance("i1", None)?;
        assert_eq!(store.instances()?, vec![instance("i2")]);
        assert!(store.bindings()?.is_empty());
        Ok(())
    }

    #[test]
    fn a_corrupt_record_is_reported_not_ignored() -> Result<(), Box<dyn std::error::Error>> {
        let store = Store::open(None)?;
        store
            .conn
            .execute("INSERT INTO instances VALUES ('bad', '{oops')", [])?;
        assert!(matches!(store.instances(), Err(StoreError::Corrupt { key, .. }) if key == "bad"));
        Ok(())
    }

    #[test]
    fn a_newer_schema_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("state.db");
        Connection::open(&path)?.pragma_update(None, "user_version", 9)?;
        assert!(matches!(
            Store::open(Some(&path)),
            Err(StoreError::TooNew { found: 9 })
        ));
        Ok(())
    }
}
