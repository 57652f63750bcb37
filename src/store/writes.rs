//! What one change writes, as typed records: the store decides how they
//! land (sled: keys and encoded values in one batch; PostgreSQL: rows in one
//! transaction). Nothing here does IO or encodes.

use crate::domain::grants::GrantDeadline;
use crate::domain::{IdempotencyKey, KeyId, PackageId, UserId};

use super::records::{
    AlertEventRecord, ApiKeyRecord, ExpiredDay, HoldRecord, IdempotencyRecord, InventoryRecord, LedgerEntry,
    MetaRecord, Operation, PackageOverride, PruneCursor, SpendRecord, WalletRecord,
};

/// One record written (or forgotten).
#[derive(Debug, Clone)]
pub enum Write {
    Meta(MetaRecord),
    Inventory(InventoryRecord),
    Ledger(LedgerEntry),
    /// The stored wallet must be at version `expected` (absent counts as
    /// 0): a stale wallet writer is caught before it can lose an update.
    /// `None` only where nothing else writes (a restore into a new store).
    Wallet {
        user: UserId,
        record: WalletRecord,
        expected: Option<u64>,
    },
    /// An idempotency record, kept beside the effect of its request.
    Remember {
        operation: Operation,
        caller: Option<KeyId>,
        key: IdempotencyKey,
        record: IdempotencyRecord,
    },
    /// An idempotency record past its retention (SPEC §9.2).
    Forget {
        operation: Operation,
        caller: Option<KeyId>,
        key: IdempotencyKey,
    },
    /// A hold in its new state (the store keeps its own index of open holds).
    Hold(HoldRecord),
    Spend(SpendRecord),
    Package {
        id: PackageId,
        settings: PackageOverride,
    },
    Alert(AlertEventRecord),
    ForgetAlert(u64),
    PruneCursor(PruneCursor),
    ApiKey(ApiKeyRecord),
    /// A grant's deadline opened or closed (SPEC §13): the store keeps the
    /// open ones, read at start.
    GrantDeadline(GrantDeadline),
    /// The credits expired on one day so far (absolute, not a delta).
    ExpiredDay(ExpiredDay),
}

/// Changes that must reach storage together, or not at all.
#[derive(Debug, Default, Clone)]
pub struct WriteSet {
    writes: Vec<Write>,
}

impl WriteSet {
    /// The sequence number of the last ledger entry among the writes.
    pub fn last_ledger_seq(&self) -> Option<u64> {
        self.writes
            .iter()
            .filter_map(|write| if let Write::Ledger(entry) = write { Some(entry.seq) } else { None })
            .max()
    }
    pub fn push(&mut self, write: Write) {
        self.writes.push(write);
    }

    pub fn meta(&mut self, record: MetaRecord) {
        self.push(Write::Meta(record));
    }

    pub fn inventory(&mut self, record: InventoryRecord) {
        self.push(Write::Inventory(record));
    }

    pub fn ledger(&mut self, entry: LedgerEntry) {
        self.push(Write::Ledger(entry));
    }

    /// Writes `record` for `user`, requiring that the stored wallet is at
    /// `record.version − 1` (absent counts as version 0).
    pub fn put_wallet(&mut self, user: &UserId, record: &WalletRecord) {
        self.push(Write::Wallet {
            user: user.clone(),
            record: record.clone(),
            expected: Some(record.version.saturating_sub(1)),
        });
    }

    pub fn hold(&mut self, record: HoldRecord) {
        self.push(Write::Hold(record));
    }

    pub fn spend(&mut self, record: SpendRecord) {
        self.push(Write::Spend(record));
    }

    pub fn api_key(&mut self, record: ApiKeyRecord) {
        self.push(Write::ApiKey(record));
    }

    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    pub fn len(&self) -> usize {
        self.writes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}
