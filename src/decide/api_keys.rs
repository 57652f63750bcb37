//! API keys (SPEC §9.1), decided here because each change is a ledger
//! entry: a backup and a replay carry the keys, and a revocation is as
//! durable as a purchase. The inventory actor publishes the ring of live
//! keys the HTTP layer reads after every change ([`KeyBook::live`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::change::Decision;
use super::{Books, EngineError, Now};
use crate::access::{KeyHash, LiveKey};
use crate::domain::{KeyId, KeyName, Scopes};
use crate::store::records::{ApiKeyRecord, EntryKind};

/// Make a key; the caller made the key and sends only its hash.
#[derive(Debug, Clone)]
pub struct CreateApiKey {
    pub name: KeyName,
    pub scopes: Scopes,
    pub key_hash: KeyHash,
}

/// Revoke a key: at once, and for good. Revoking a revoked key answers its record.
#[derive(Debug, Clone)]
pub struct RevokeApiKey {
    pub id: KeyId,
}

impl Books {
    pub fn decide_create_key(
        &self,
        inputs: &Now,
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

    pub fn decide_revoke_key(&self, inputs: &Now, id: &KeyId) -> Result<Decision<ApiKeyRecord>, EngineError> {
        self.ensure_writable(inputs)?;
        let stored = self.keys.records.get(id).ok_or_else(|| EngineError::UnknownApiKey(id.clone()))?;
        let mut record = self.keys.with_last_use(stored);
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
}

/// Every key record, and the live ones.
#[derive(Debug, Default)]
pub struct KeyBook {
    pub(super) records: BTreeMap<KeyId, ApiKeyRecord>,
    /// The keys not revoked; their `Arc`s are shared with every ring
    /// published, so a use noted in an old ring is not lost.
    pub(super) live: HashMap<KeyId, Arc<LiveKey>>,
}

impl KeyBook {
    /// The keys found at start-up.
    pub fn load(records: Vec<ApiKeyRecord>) -> Self {
        let live = records
            .iter()
            .filter(|record| record.revoked_at_ms.is_none())
            .map(|record| {
                let live = LiveKey::new(record.id.clone(), record.scopes, record.key_hash, record.last_used_at_ms);
                (record.id.clone(), Arc::new(live))
            })
            .collect();
        let records = records.into_iter().map(|record| (record.id.clone(), record)).collect();
        Self { records, live }
    }

    /// The live keys, for the ring the HTTP layer authenticates against.
    pub fn live(&self) -> impl Iterator<Item = Arc<LiveKey>> + '_ {
        self.live.values().cloned()
    }

    /// Every record, with the latest use noted in memory.
    pub fn listed(&self) -> Vec<ApiKeyRecord> {
        let mut listed: Vec<ApiKeyRecord> = self.records.values().map(|record| self.with_last_use(record)).collect();
        listed.sort_by(|a, b| (a.created_at_ms, a.id.as_str()).cmp(&(b.created_at_ms, b.id.as_str())));
        listed
    }

    /// `record` with the latest use noted in memory.
    pub fn with_last_use(&self, record: &ApiKeyRecord) -> ApiKeyRecord {
        let mut record = record.clone();
        if let Some(used) = self.live.get(&record.id).and_then(|live| live.last_used_ms()) {
            record.last_used_at_ms = Some(record.last_used_at_ms.map_or(used, |stored| stored.max(used)));
        }
        record
    }

    /// The records whose use noted in memory is newer than the stored one.
    pub fn unsaved_uses(&self) -> Vec<ApiKeyRecord> {
        let mut used = Vec::new();
        for (id, record) in &self.records {
            let Some(live) = self.live.get(id) else { continue };
            match live.last_used_ms() {
                Some(at) if record.last_used_at_ms.is_none_or(|stored| at > stored) => {
                    let mut record = record.clone();
                    record.last_used_at_ms = Some(at);
                    used.push(record);
                }
                _ => {}
            }
        }
        used
    }

    /// Records written outside the ledger (uses).
    pub fn saved(&mut self, records: Vec<ApiKeyRecord>) {
        for record in records {
            self.records.insert(record.id.clone(), record);
        }
    }

    /// A key's new record, once its change is queued: a revoked key stops
    /// working before the revocation is even durable (refusing early is the
    /// safe side).
    pub(super) fn adopt(&mut self, record: ApiKeyRecord) {
        if record.revoked_at_ms.is_some() {
            self.live.remove(&record.id);
        } else if !self.live.contains_key(&record.id) {
            let live = LiveKey::new(record.id.clone(), record.scopes, record.key_hash, record.last_used_at_ms);
            self.live.insert(record.id.clone(), Arc::new(live));
        }
        self.records.insert(record.id.clone(), record);
    }
}
