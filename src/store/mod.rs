//! Durable storage (SPEC §4.2, §4.6, §12): one boundary, two stores.
//!
//! [`Store`] is what the engine reads and what the commit loop ([`commit`])
//! hands each group of [`WriteSet`]s to. Behind it, either the embedded sled
//! directory ([`sled::SledStore`]: one atomic batch and an `fdatasync` per
//! group) or PostgreSQL ([`postgres::PgStore`]: one fenced transaction per
//! group). The engine, the actors and the HTTP layer never know which.

pub mod codec;
pub mod commit;
pub mod journal;
pub mod keys;
pub mod postgres;
pub mod records;
pub mod sled;
pub mod writes;

use std::path::Path;
use std::sync::Arc;

use crate::domain::{HoldId, IdempotencyKey, KeyId, Ratio, SpendId, UserId};
use codec::CodecError;
use records::{
    AlertEventRecord, ApiKeyRecord, HoldRecord, IdempotencyRecord, InventoryRecord, LedgerEntry, MetaRecord, Operation,
    PackageOverride, PruneCursor, SpendRecord, WalletRecord,
};
pub use sled::{SledStore, MARK_FILE};
pub use writes::{Write, WriteSet};

/// sled's page cache unless configured: sled's own default (1 GiB) would let
/// a large data directory take the process's memory. sled's resident size is
/// a multiple of this (its page table and segment accounting come on top): with
/// a million users, 32 MiB keeps the process near 250 MiB (BENCHMARKS.md).
pub const CACHE_BYTES_DEFAULT: u64 = 32 * 1024 * 1024;

/// The most ledger entries one read returns.
pub const LEDGER_PAGE_MAX: usize = crate::domain::ledger::PAGE_MAX;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine: {0}")]
    Sled(#[from] ::sled::Error),
    /// PostgreSQL failed or could not be reached; the message names no password.
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// This node lost the leader lease (SPEC §12): its group was not
    /// committed, and it must become a standby.
    #[error("{0}")]
    Fenced(String),
    #[error("storage IO: {0}")]
    Io(#[from] std::io::Error),
    #[error("stored record: {0}")]
    Codec(#[from] CodecError),
    #[error("the commit queue is full")]
    Overloaded,
    #[error("storage failed earlier; nothing more is written until restart")]
    Failed,
    #[error("refused a write that breaks a precondition: {0}")]
    Precondition(String),
    /// The batch was handed to sled, but its flush or sync failed: it may or
    /// may not be on stable storage (SPEC §9 `outcome_unknown`).
    #[error("written but not confirmed durable: {0}")]
    Unconfirmed(String),
    #[error("data directory: {0}")]
    Layout(String),
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error(
        "data directory {0} does not exist or is empty: create a store there with `creditd init --data-dir {0}` \
         (creditd never turns a missing directory into a fresh ledger)"
    )]
    Uninitialised(String),
    #[error(
        "{0} is not a creditd data directory (it holds no creditd store): point CREDITD_DATA_DIR at the store, \
         or make one in a new, empty directory with `creditd init`"
    )]
    Foreign(String),
    #[error("{0} is not empty: `creditd init` makes a store only in a new or empty directory")]
    NotEmpty(String),
}

/// Faults a test can inject into the commit path (failed writes, failed
/// syncs, a full disk). Production stores have none.
pub trait StorageFaults: Send + Sync + 'static {
    /// Called before a group's batch is applied; an error fails the group unapplied.
    ///
    /// # Errors
    /// The injected fault.
    fn before_apply(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Called after the batch is applied, before the flush and sync; an error
    /// fails the group with its changes possibly on disk but never acknowledged.
    ///
    /// # Errors
    /// The injected fault.
    fn before_sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A handle on the store of record: the sled directory or PostgreSQL.
/// Cheap to clone.
#[derive(Clone)]
pub enum Store {
    Sled(SledStore),
    Postgres(Arc<postgres::PgStore>),
}

impl From<SledStore> for Store {
    fn from(store: SledStore) -> Self {
        Self::Sled(store)
    }
}

/// Calls the same method on whichever store this is.
macro_rules! each {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Sled($store) => $call,
            Store::Postgres($store) => $call,
        }
    };
}

impl Store {
    /// Opens the sled store `creditd init` made in `directory`.
    ///
    /// # Errors
    /// See [`SledStore::open_with_cache`].
    pub fn open(directory: &Path) -> Result<Self, StoreError> {
        SledStore::open(directory).map(Self::Sled)
    }

    /// See [`SledStore::when_unlocked`].
    ///
    /// # Errors
    /// `open`'s error, once it is not the lock or `wait` has passed.
    pub fn when_unlocked<T, E: std::fmt::Display>(
        wait: std::time::Duration,
        open: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        SledStore::when_unlocked(wait, open)
    }

    /// Where the store is, for messages: a directory, or PostgreSQL's host
    /// and database (never a password).
    pub fn location(&self) -> String {
        match self {
            Self::Sled(store) => store.directory().display().to_string(),
            Self::Postgres(store) => store.target().to_owned(),
        }
    }

    /// # Errors
    /// A read or decode failure.
    pub fn meta(&self) -> Result<Option<MetaRecord>, StoreError> {
        each!(self, store => store.meta())
    }

    /// # Errors
    /// A read or decode failure.
    pub fn inventory(&self) -> Result<Option<InventoryRecord>, StoreError> {
        each!(self, store => store.inventory())
    }

    /// # Errors
    /// A read or decode failure.
    pub fn wallet(&self, user: &UserId) -> Result<Option<WalletRecord>, StoreError> {
        each!(self, store => store.wallet(user))
    }

    /// Whether a read is local (sled: a lookup in its page cache, which an
    /// actor may make at once) rather than a network round trip
    /// (PostgreSQL), which it must make on a blocking thread.
    pub fn reads_locally(&self) -> bool {
        matches!(self, Store::Sled(_))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn local_wallet(&self, user: &UserId) -> Option<Result<Option<WalletRecord>, StoreError>> {
        match self {
            Store::Sled(store) => Some(store.wallet(user)),
            Store::Postgres(_) => None,
        }
    }

    /// Whether reading the key's record may find one, known without IO:
    /// `false` only when the store knows it holds none (PostgreSQL keeps the
    /// hashes of its keys in memory); sled reads to know.
    pub fn may_know(&self, operation: Operation, caller: Option<&KeyId>, key: &IdempotencyKey) -> bool {
        match self {
            Store::Sled(_) => true,
            Store::Postgres(store) => store.may_know(operation, caller, key),
        }
    }

    /// # Errors
    /// A read or decode failure.
    pub fn idempotency(
        &self,
        operation: Operation,
        caller: Option<&KeyId>,
        key: &IdempotencyKey,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        each!(self, store => store.idempotency(operation, caller, key))
    }

    /// The fingerprint of the request behind an entry's idempotency key, if
    /// the entry has a key and its record is still kept.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn fingerprint_of(&self, entry: &LedgerEntry) -> Result<Option<[u8; 32]>, StoreError> {
        let (Some(key), Some(operation)) = (&entry.idempotency_key, entry.kind.operation()) else {
            return Ok(None);
        };
        Ok(self.idempotency(operation, entry.caller.as_ref(), key)?.map(|record| record.fingerprint))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn ledger_entry(&self, seq: u64) -> Result<Option<LedgerEntry>, StoreError> {
        each!(self, store => store.ledger_entry(seq))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn hold(&self, id: &HoldId) -> Result<Option<HoldRecord>, StoreError> {
        each!(self, store => store.hold(id))
    }

    /// # Errors
    /// A read or decode failure.
    pub fn spend(&self, id: &SpendId) -> Result<Option<SpendRecord>, StoreError> {
        each!(self, store => store.spend(id))
    }

    /// The holds still open (their deadline may have passed while stopped).
    ///
    /// # Errors
    /// A read or decode failure, or an index that disagrees with its holds.
    pub fn open_holds(&self) -> Result<Vec<HoldRecord>, StoreError> {
        each!(self, store => store.open_holds())
    }

    /// The spends still open (their time may have run out while stopped).
    ///
    /// # Errors
    /// A read or decode failure, or an index that disagrees with its spends.
    pub fn open_spends(&self) -> Result<Vec<SpendRecord>, StoreError> {
        each!(self, store => store.open_spends())
    }

    /// The operators' package settings, by package id.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn package_overrides(&self) -> Result<Vec<(String, PackageOverride)>, StoreError> {
        each!(self, store => store.package_overrides())
    }

    /// The `limit` most recent alert events, oldest first.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn recent_alerts(&self, limit: usize) -> Result<Vec<AlertEventRecord>, StoreError> {
        each!(self, store => store.recent_alerts(limit))
    }

    /// Provider credits consumed (spends, positive) and given back (refunds,
    /// negative) by ledger entries after `since_ms`, newest first.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn consumption_since(&self, since_ms: u64, ratio: Ratio) -> Result<Vec<(u64, i64)>, StoreError> {
        each!(self, store => store.consumption_since(since_ms, ratio))
    }

    /// Where the pruning of idempotency records stopped, if it ever ran.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn prune_cursor(&self) -> Result<Option<PruneCursor>, StoreError> {
        each!(self, store => store.prune_cursor())
    }

    /// Every API key ever made, revoked ones included.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        each!(self, store => store.api_keys())
    }

    /// The credits expired by UTC day (SPEC §13), oldest first.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn expired_days(&self) -> Result<Vec<records::ExpiredDay>, StoreError> {
        each!(self, store => store.expired_days())
    }

    /// The deadlines of the grants not closed that will expire (SPEC §13).
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn grant_deadlines(&self) -> Result<Vec<crate::domain::grants::GrantDeadline>, StoreError> {
        each!(self, store => store.grant_deadlines())
    }

    /// Up to `limit` (at most [`LEDGER_PAGE_MAX`]) entries with `seq > after`, in order.
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn ledger_page(&self, after: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        each!(self, store => store.ledger_page(after, limit.min(LEDGER_PAGE_MAX)))
    }

    /// Every wallet, for the start-up check of every wallet (`verify_wallets_at_start`).
    ///
    /// # Errors
    /// A read or decode failure.
    pub fn all_wallets(&self) -> Result<Vec<(UserId, WalletRecord)>, StoreError> {
        match self {
            Self::Sled(store) => store.wallets().collect(),
            Self::Postgres(store) => store.wallets(),
        }
    }

    /// The recent ledger entries that moved `wallet` (at most `limit`), oldest first.
    ///
    /// # Errors
    /// A read or decode failure, or a wallet pointing at a missing entry.
    pub fn wallet_entries(&self, wallet: &WalletRecord, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        each!(self, store => store.wallet_entries(wallet, limit))
    }

    /// Makes every write set durable, all or nothing. Used only by the commit
    /// loop (and by tests that stage a store).
    ///
    /// # Errors
    /// A precondition, write or sync failure: then nothing may be
    /// acknowledged, and the caller must stop writing. A failure once the
    /// writes were handed over is [`StoreError::Unconfirmed`] (or, on
    /// PostgreSQL, [`StoreError::Fenced`]); any other error means nothing was written.
    pub fn write_durably<'a>(&self, sets: impl IntoIterator<Item = &'a WriteSet> + Clone) -> Result<(), StoreError> {
        each!(self, store => store.write_durably(sets))
    }

    /// Makes whatever the store buffered durable (on stop).
    ///
    /// # Errors
    /// The flush or the sync failed.
    pub fn sync(&self) -> Result<(), StoreError> {
        match self {
            Self::Sled(store) => store.sync(),
            Self::Postgres(_) => Ok(()),
        }
    }
}
