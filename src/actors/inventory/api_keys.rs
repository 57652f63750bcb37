//! API keys (SPEC §9.1), decided by the inventory because each change is a
//! ledger entry: a backup and a replay carry the keys, and a revocation is
//! as durable as a purchase.
//!
//! Messages: [`CreateApiKey`], [`RevokeApiKey`], [`ListApiKeys`] (from the
//! engine facade). Every 60 s the actor writes the `lastUsedAt` that
//! requests noted in memory (no ledger entry: it is not a change to money).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::watch;

use super::Books;
use super::Inputs;
use super::{Decision, InventoryActor, Reply};
use crate::access::{KeyHash, KeyRing, LiveKey};
use crate::actors::EngineError;
use crate::domain::{KeyId, KeyName, Scopes};
use crate::store::records::{ApiKeyRecord, EntryKind};
use crate::store::WriteSet;

/// Make a key; the caller made the key and sends only its hash.
#[derive(Debug, Clone)]
pub struct CreateApiKey {
    pub name: KeyName,
    pub scopes: Scopes,
    pub key_hash: KeyHash,
}

impl Message for CreateApiKey {
    type Result = Result<ApiKeyRecord, EngineError>;
}

/// Revoke a key: at once, and for good. Revoking a revoked key answers its record.
#[derive(Debug, Clone)]
pub struct RevokeApiKey {
    pub id: KeyId,
}

impl Message for RevokeApiKey {
    type Result = Result<ApiKeyRecord, EngineError>;
}

/// Every key, revoked ones included, oldest first, with its latest use.
#[derive(Debug, Clone, Copy)]
pub struct ListApiKeys;

impl Message for ListApiKeys {
    type Result = Vec<ApiKeyRecord>;
}

impl Handler<CreateApiKey> for InventoryActor {
    type Result = Reply<ApiKeyRecord>;

    fn handle(&mut self, message: CreateApiKey, _: &mut Self::Context) -> Self::Result {
        let decision = self.books.decide_create_key(&self.inputs(), message);
        self.respond(decision)
    }
}

impl Handler<RevokeApiKey> for InventoryActor {
    type Result = Reply<ApiKeyRecord>;

    fn handle(&mut self, message: RevokeApiKey, _: &mut Self::Context) -> Self::Result {
        let decision = self.books.decide_revoke_key(&self.inputs(), &message.id);
        self.respond(decision)
    }
}

impl Handler<ListApiKeys> for InventoryActor {
    type Result = MessageResult<ListApiKeys>;

    fn handle(&mut self, _: ListApiKeys, _: &mut Self::Context) -> Self::Result {
        let mut listed: Vec<ApiKeyRecord> =
            self.books.keys.records.values().map(|record| self.books.with_last_use(record)).collect();
        listed.sort_by(|a, b| (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str())));
        MessageResult(listed)
    }
}

impl Books {
    pub(super) fn decide_create_key(
        &self,
        inputs: &Inputs<'_>,
        message: CreateApiKey,
    ) -> Result<Decision<ApiKeyRecord>, EngineError> {
        self.ensure_writable(inputs)?;
        let mut change = self.begin(inputs);
        let id = KeyId::parse(&format!("key_{}", change.next_seq()))
            .map_err(|error| EngineError::Storage(format!("key id: {error}")))?;
        let record = ApiKeyRecord {
            id: id.clone(),
            name: message.name.clone(),
            scopes: message.scopes,
            key_hash: message.key_hash,
            created_at_ms: change.at_ms,
            last_used_at_ms: None,
            revoked_at_ms: None,
        };
        let kind = EntryKind::ApiKeyCreated {
            key_id: id,
            name: message.name,
            scopes: message.scopes,
            key_hash: message.key_hash,
        };
        change.record(None, None, kind, None)?;
        change.writes.api_key(record.clone());
        change.api_key = Some(record.clone());
        Ok(Decision::Apply(Box::new(change), record))
    }

    pub(super) fn decide_revoke_key(
        &self,
        inputs: &Inputs<'_>,
        id: &KeyId,
    ) -> Result<Decision<ApiKeyRecord>, EngineError> {
        self.ensure_writable(inputs)?;
        let stored = self.keys.records.get(id).ok_or_else(|| EngineError::UnknownApiKey(id.clone()))?;
        let mut record = self.with_last_use(stored);
        if record.revoked_at_ms.is_some() {
            return Ok(Decision::Replay(record));
        }
        let mut change = self.begin(inputs);
        record.revoked_at_ms = Some(change.at_ms);
        change.record(None, None, EntryKind::ApiKeyRevoked { key_id: id.clone() }, None)?;
        change.writes.api_key(record.clone());
        change.api_key = Some(record.clone());
        Ok(Decision::Apply(Box::new(change), record))
    }

    /// `record` with the latest use noted in memory.
    pub(super) fn with_last_use(&self, record: &ApiKeyRecord) -> ApiKeyRecord {
        let mut record = record.clone();
        if let Some(used) = self.keys.live.get(&record.id).and_then(|live| live.last_used_ms()) {
            record.last_used_at_ms = Some(record.last_used_at_ms.map_or(used, |stored| stored.max(used)));
        }
        record
    }
}

impl InventoryActor {
    /// Adopts a key's new record once its change is queued, and publishes
    /// the ring of live keys: a revoked key stops working before the
    /// revocation is even durable (refusing early is the safe side).
    pub(super) fn adopt_api_key(&mut self, record: ApiKeyRecord) {
        self.books.keys.adopt(record);
    }

    /// Writes the uses noted since the last time (a write per key and
    /// minute at most, outside the ledger).
    pub(super) fn persist_key_uses(&mut self) {
        if self.health.storage_failed() {
            return;
        }
        let mut writes = WriteSet::default();
        let mut used = Vec::new();
        for (id, record) in &self.books.keys.records {
            let Some(live) = self.books.keys.live.get(id) else { continue };
            match live.last_used_ms() {
                Some(at) if record.last_used_at_ms.is_none_or(|stored| at > stored) => {
                    let mut record = record.clone();
                    record.last_used_at_ms = Some(at);
                    writes.api_key(record.clone());
                    used.push(record);
                }
                _ => {}
            }
        }
        if used.is_empty() {
            return;
        }
        // Not awaited: nobody is told, and a lost minute of `lastUsedAt` is harmless.
        if self.commits.submit(writes).is_ok() {
            for record in used {
                self.books.keys.records.insert(record.id.clone(), record);
            }
        }
    }
}

/// The keys the inventory owns: every record, the live ones, and the
/// channel through which it publishes the ring the HTTP layer reads.
pub struct ApiKeys {
    records: BTreeMap<KeyId, ApiKeyRecord>,
    /// The keys not revoked; their `Arc`s are shared with every ring
    /// published, so a use noted in an old ring is not lost.
    live: HashMap<KeyId, Arc<LiveKey>>,
    ring: watch::Sender<Arc<KeyRing>>,
}

impl ApiKeys {
    /// The keys found at start-up, and the receiving end of the ring, which
    /// already holds them: no request is ever checked against an empty ring.
    pub fn load(records: Vec<ApiKeyRecord>) -> (Self, watch::Receiver<Arc<KeyRing>>) {
        let live: HashMap<KeyId, Arc<LiveKey>> = records
            .iter()
            .filter(|record| record.revoked_at_ms.is_none())
            .map(|record| {
                let live = LiveKey::new(record.id.clone(), record.scopes, record.key_hash, record.last_used_at_ms);
                (record.id.clone(), Arc::new(live))
            })
            .collect();
        let (ring, receiver) = watch::channel(Arc::new(KeyRing::new(live.values().cloned())));
        let records = records.into_iter().map(|record| (record.id.clone(), record)).collect();
        (Self { records, live, ring }, receiver)
    }

    fn adopt(&mut self, record: ApiKeyRecord) {
        if record.revoked_at_ms.is_some() {
            self.live.remove(&record.id);
        } else if !self.live.contains_key(&record.id) {
            let live = LiveKey::new(record.id.clone(), record.scopes, record.key_hash, record.last_used_at_ms);
            self.live.insert(record.id.clone(), Arc::new(live));
        }
        self.records.insert(record.id.clone(), record);
        self.ring.send_replace(Arc::new(KeyRing::new(self.live.values().cloned())));
    }
}
