//! Everything creditd stores, as plain serde types. They are encoded only by
//! [`super::codec`]; new enum variants are appended at the end so that older
//! records keep decoding.

use serde::{Deserialize, Serialize};

use super::codec::{decode_body, CodecError, Record};
pub use crate::domain::grants::{Closed, Draw, Grant};
pub use crate::domain::ledger::{
    CaptureReceipt, CompletedBy, CompletionReceipt, EntryKind, GrantEffect, GrantReceipt, HoldReceipt, LedgerEntry,
    Operation, PurchaseReceipt, Receipt, RefundReceipt, SpendReceipt, VoidReceipt,
};
pub use crate::domain::ApiKeyRecord;

use crate::domain::{
    GrantKind, HoldId, IdempotencyKey, KeyId, Money, PackageId, ProviderCredits, Ratio, SpendId, UserCredits, UserId,
};

/// Facts fixed when the data directory was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetaRecord {
    /// The ratio every stored amount was computed with; a server configured
    /// with another ratio refuses to open this directory.
    pub ratio: Ratio,
    pub created_at_ms: u64,
}

/// The last successful sync with the provider (SPEC §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRecord {
    pub at_ms: u64,
    pub real: ProviderCredits,
    /// Real minus what the database expected (its balance plus what this
    /// sync held back); `None` for the first sync of a store.
    pub drift: Option<i64>,
    /// Its ledger entry: an open spend made before it was held back by it.
    pub seq: u64,
    /// `ratio ×` the spends it held back (open when its answer arrived, or
    /// completed while its request was in flight).
    pub held_back: ProviderCredits,
}

/// A sync as `InventoryRecord` version 1 kept it.
#[derive(Serialize, Deserialize)]
struct SyncRecordV1 {
    at_ms: u64,
    real: ProviderCredits,
    drift: Option<i64>,
}

/// The inventory's state after the last committed change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRecord {
    pub provider_balance: ProviderCredits,
    pub reserved: ProviderCredits,
    /// Σ wallet balances, kept so that `reserved` can be checked on every change.
    pub wallets_total: UserCredits,
    /// Σ open holds.
    pub holds_total: UserCredits,
    /// The sequence number the next ledger entry gets (the first is 1).
    pub next_seq: u64,
    pub last_sync: Option<SyncRecord>,
    pub purchases_enabled: bool,
    pub disabled_reason: Option<String>,
    pub revenue: Money,
    /// Provider credits consumed since the beginning: spends minus refunds (SPEC §8 cost).
    pub consumed_total: ProviderCredits,
    /// Σ open spends (user credits): made, neither completed nor refunded.
    pub open_spends: UserCredits,
    /// What the last sync held back and no refund has given back since: the
    /// provider may already have consumed it, so `providerBalance + held_back`
    /// is the most the platform can count on (SPEC §6, `overcommitted`).
    pub held_back: ProviderCredits,
    /// What grants gave back (SPEC §13): user credits expired and voided
    /// since the beginning, and the revenue the expired paid credits had
    /// earned (breakage).
    pub grants: GrantTotals,
}

/// The running totals of grants (SPEC §13 reports), kept with the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantTotals {
    pub expired: UserCredits,
    pub voided: UserCredits,
    pub breakage: Money,
    /// Σ remaining of the promotional grants not closed.
    pub promotional: UserCredits,
}

impl GrantTotals {
    pub const fn empty(currency: crate::domain::Currency) -> Self {
        Self {
            expired: UserCredits::ZERO,
            voided: UserCredits::ZERO,
            breakage: Money::zero(currency),
            promotional: UserCredits::ZERO,
        }
    }
}

/// The user credits of grants that expired on one UTC day, and the revenue
/// those credits had earned (SPEC §13: `expiredByDay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredDay {
    /// Days since 1970-01-01 (UTC) of the grants' `expiresAt`.
    pub day: u32,
    pub credits: UserCredits,
    pub breakage: Money,
}

impl ExpiredDay {
    /// The UTC day of the instant `at_ms`.
    pub fn day_of(at_ms: u64) -> u32 {
        u32::try_from(at_ms / crate::domain::DAY_MS).unwrap_or(u32::MAX)
    }
}

impl Record for ExpiredDay {}

/// `InventoryRecord` version 2, before grants.
#[derive(Serialize, Deserialize)]
struct InventoryRecordV2 {
    provider_balance: ProviderCredits,
    reserved: ProviderCredits,
    wallets_total: UserCredits,
    holds_total: UserCredits,
    next_seq: u64,
    last_sync: Option<SyncRecord>,
    purchases_enabled: bool,
    disabled_reason: Option<String>,
    revenue: Money,
    consumed_total: ProviderCredits,
    open_spends: UserCredits,
    held_back: ProviderCredits,
}

/// `InventoryRecord` version 1, before open spends.
#[derive(Serialize, Deserialize)]
struct InventoryRecordV1 {
    provider_balance: ProviderCredits,
    reserved: ProviderCredits,
    wallets_total: UserCredits,
    holds_total: UserCredits,
    next_seq: u64,
    last_sync: Option<SyncRecordV1>,
    purchases_enabled: bool,
    disabled_reason: Option<String>,
    revenue: Money,
    consumed_total: ProviderCredits,
}

impl Record for InventoryRecord {
    /// 2: open spends and the held-back credits; 3: the grant totals.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        if version == 2 {
            let v2: InventoryRecordV2 = decode_body(body)?;
            return Ok(Self {
                provider_balance: v2.provider_balance,
                reserved: v2.reserved,
                wallets_total: v2.wallets_total,
                holds_total: v2.holds_total,
                next_seq: v2.next_seq,
                last_sync: v2.last_sync,
                purchases_enabled: v2.purchases_enabled,
                disabled_reason: v2.disabled_reason,
                revenue: v2.revenue,
                consumed_total: v2.consumed_total,
                open_spends: v2.open_spends,
                held_back: v2.held_back,
                grants: GrantTotals::empty(v2.revenue.currency()),
            });
        }
        if version != 1 {
            return Err(CodecError::UnknownVersion(version));
        }
        let v1: InventoryRecordV1 = decode_body(body)?;
        let last_sync = v1.last_sync.map(|sync| SyncRecord {
            at_ms: sync.at_ms,
            real: sync.real,
            drift: sync.drift,
            seq: 0,
            held_back: ProviderCredits::ZERO,
        });
        Ok(Self {
            provider_balance: v1.provider_balance,
            reserved: v1.reserved,
            wallets_total: v1.wallets_total,
            holds_total: v1.holds_total,
            next_seq: v1.next_seq,
            last_sync,
            purchases_enabled: v1.purchases_enabled,
            disabled_reason: v1.disabled_reason,
            revenue: v1.revenue,
            consumed_total: v1.consumed_total,
            open_spends: UserCredits::ZERO,
            held_back: ProviderCredits::ZERO,
            grants: GrantTotals::empty(v1.revenue.currency()),
        })
    }
}

impl InventoryRecord {
    pub fn empty(revenue: Money) -> Self {
        Self {
            provider_balance: ProviderCredits::ZERO,
            reserved: ProviderCredits::ZERO,
            wallets_total: UserCredits::ZERO,
            holds_total: UserCredits::ZERO,
            next_seq: 1,
            last_sync: None,
            purchases_enabled: true,
            disabled_reason: None,
            revenue,
            consumed_total: ProviderCredits::ZERO,
            open_spends: UserCredits::ZERO,
            held_back: ProviderCredits::ZERO,
            grants: GrantTotals::empty(revenue.currency()),
        }
    }
}

/// One user's wallet. `version` counts the changes applied to it, so that a
/// stale writer is caught before it reaches disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletRecord {
    pub balance: UserCredits,
    pub version: u64,
    /// The sequence numbers of the last [`WalletRecord::RECENT_MAX`] ledger
    /// entries that moved this wallet, oldest first: the user's recent
    /// entries are read through them, with no index to write on every change.
    pub recent: Vec<u64>,
    /// Its grants (SPEC §13): `balance` is the sum of the remaining credits
    /// of those not closed. Closed and emptied grants are forgotten once no
    /// refund can reach them (`grants::retire`); the ledger keeps them.
    pub grants: Vec<Grant>,
}

/// `WalletRecord` version 1, before grants.
#[derive(Serialize, Deserialize)]
struct WalletRecordV1 {
    balance: UserCredits,
    version: u64,
    recent: Vec<u64>,
}

impl Record for WalletRecord {
    /// 2: the grants.
    const VERSION: u8 = 2;

    /// A wallet of the release before grants becomes one never-expiring
    /// paid grant of its balance, named after the last entry that moved
    /// it (an entry of this user, so the id finds the user, and one that
    /// replay names the same: `replay.rs`).
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        if version != 1 {
            return Err(CodecError::UnknownVersion(version));
        }
        let v1: WalletRecordV1 = decode_body(body)?;
        let grants = legacy_grants(&v1.recent, v1.balance);
        Ok(Self { balance: v1.balance, version: v1.version, recent: v1.recent, grants })
    }
}

/// The grants of a wallet from before grants, with `recent` entries and
/// `balance`: none when empty, else one named after its last entry.
pub fn legacy_grants(recent: &[u64], balance: UserCredits) -> Vec<Grant> {
    match recent.last() {
        Some(&seq) if !balance.is_zero() => vec![legacy_grant(seq, balance)],
        _ => Vec::new(),
    }
}

/// The grant a wallet from before grants holds: its balance, paid, never
/// expiring, of unknown price and age.
pub fn legacy_grant(seq: u64, balance: UserCredits) -> Grant {
    Grant::new(seq, GrantKind::Paid, balance, 0, 0, None)
}

impl WalletRecord {
    pub const RECENT_MAX: usize = crate::domain::ledger::WALLET_RECENT_MAX;

    /// The balance at `now_ms`: grants past their `expiresAt` no longer
    /// count, before their expiry is written (SPEC §13).
    pub fn balance_at(&self, now_ms: u64) -> UserCredits {
        crate::domain::grants::balance(&self.grants, now_ms).unwrap_or(self.balance)
    }

    /// SPEC §13: the balance is the sum of the remaining credits of the
    /// grants not closed, and no grant holds more than it granted.
    pub fn grants_agree(&self) -> bool {
        let open = self
            .grants
            .iter()
            .filter(|grant| grant.closed.is_none())
            .try_fold(UserCredits::ZERO, |total, grant| total.checked_add(grant.remaining));
        open == Ok(self.balance)
            && self
                .grants
                .iter()
                .all(|grant| grant.remaining <= grant.credits && (grant.closed.is_none() || grant.remaining.is_zero()))
    }

    /// Remembers that ledger entry `seq` moved this wallet.
    pub fn note_entry(&mut self, seq: u64) {
        if self.recent.len() >= Self::RECENT_MAX {
            self.recent.remove(0);
        }
        self.recent.push(seq);
    }
}

/// A ledger entry as record version 2 wrote it, before grants.
#[derive(Serialize, Deserialize)]
struct LedgerEntryV2 {
    seq: u64,
    at_ms: u64,
    user: Option<UserId>,
    idempotency_key: Option<IdempotencyKey>,
    kind: EntryKind,
    provider_balance_after: ProviderCredits,
    reserved_after: ProviderCredits,
    wallet_after: Option<UserCredits>,
    caller: Option<KeyId>,
}

/// A ledger entry as record version 1 wrote it, before API keys.
#[derive(Serialize, Deserialize)]
struct LedgerEntryV1 {
    seq: u64,
    at_ms: u64,
    user: Option<UserId>,
    idempotency_key: Option<IdempotencyKey>,
    kind: EntryKind,
    provider_balance_after: ProviderCredits,
    reserved_after: ProviderCredits,
    wallet_after: Option<UserCredits>,
}

impl Record for LedgerEntry {
    /// 2: `caller` added; 3: `grants` added.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        if version == 2 {
            let v2: LedgerEntryV2 = decode_body(body)?;
            return Ok(Self {
                seq: v2.seq,
                at_ms: v2.at_ms,
                user: v2.user,
                idempotency_key: v2.idempotency_key,
                kind: v2.kind,
                provider_balance_after: v2.provider_balance_after,
                reserved_after: v2.reserved_after,
                wallet_after: v2.wallet_after,
                caller: v2.caller,
                grants: None,
            });
        }
        if version != 1 {
            return Err(CodecError::UnknownVersion(version));
        }
        let v1: LedgerEntryV1 = decode_body(body)?;
        Ok(Self {
            seq: v1.seq,
            at_ms: v1.at_ms,
            user: v1.user,
            idempotency_key: v1.idempotency_key,
            kind: v1.kind,
            provider_balance_after: v1.provider_balance_after,
            reserved_after: v1.reserved_after,
            wallet_after: v1.wallet_after,
            caller: None,
            grants: None,
        })
    }
}

/// How far the pruning of idempotency records has gone (SPEC §9.2): the
/// records of ledger entries up to `last_seq` are forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneCursor {
    pub last_seq: u64,
}

impl Record for PruneCursor {}
impl Record for MetaRecord {}
impl Record for IdempotencyRecord {}
impl Record for AlertEventRecord {}
impl Record for ApiKeyRecord {}

/// A used idempotency key (SPEC §4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// SHA-256 of the canonical request, to tell a retry from a reuse.
    pub fingerprint: [u8; 32],
    pub receipt: Receipt,
    pub at_ms: u64,
}

/// Where a hold stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HoldState {
    Open,
    Captured(CaptureReceipt),
    Released,
    Expired,
}

impl HoldState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Captured(_) => "captured",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }
}

/// A two-phase purchase (SPEC §5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub hold_id: HoldId,
    pub user: UserId,
    pub package_id: PackageId,
    pub credits: UserCredits,
    pub price: Money,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub state: HoldState,
    /// The API key that made it: only that key or an admin key may capture
    /// or release it (SPEC §9.1). `None` for holds made before makers were
    /// recorded.
    pub owner: Option<KeyId>,
    /// The package's `expiresAfterDays` when the hold was made: the credits
    /// of its capture expire that long after the capture (SPEC §13).
    pub expires_after_days: Option<u32>,
}

impl HoldRecord {
    /// When the paid grant of a capture at `at_ms` expires (`None`: never).
    pub fn grant_expiry(&self, at_ms: u64) -> Option<u64> {
        self.expires_after_days.map(|days| at_ms.saturating_add(u64::from(days).saturating_mul(crate::domain::DAY_MS)))
    }
}

/// `HoldRecord` version 2, before grants.
#[derive(Serialize, Deserialize)]
struct HoldRecordV2 {
    hold_id: HoldId,
    user: UserId,
    package_id: PackageId,
    credits: UserCredits,
    price: Money,
    created_at_ms: u64,
    expires_at_ms: u64,
    state: HoldState,
    owner: Option<KeyId>,
}

/// `HoldRecord` version 1, before makers were recorded.
#[derive(Serialize, Deserialize)]
struct HoldRecordV1 {
    hold_id: HoldId,
    user: UserId,
    package_id: PackageId,
    credits: UserCredits,
    price: Money,
    created_at_ms: u64,
    expires_at_ms: u64,
    state: HoldState,
}

impl Record for HoldRecord {
    /// 2: the key that made the hold; 3: the package's expiry.
    const VERSION: u8 = 3;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        if version == 2 {
            let v2: HoldRecordV2 = decode_body(body)?;
            return Ok(Self {
                hold_id: v2.hold_id,
                user: v2.user,
                package_id: v2.package_id,
                credits: v2.credits,
                price: v2.price,
                created_at_ms: v2.created_at_ms,
                expires_at_ms: v2.expires_at_ms,
                state: v2.state,
                owner: v2.owner,
                expires_after_days: None,
            });
        }
        if version != 1 {
            return Err(CodecError::UnknownVersion(version));
        }
        let v1: HoldRecordV1 = decode_body(body)?;
        Ok(Self {
            hold_id: v1.hold_id,
            user: v1.user,
            package_id: v1.package_id,
            credits: v1.credits,
            price: v1.price,
            created_at_ms: v1.created_at_ms,
            expires_at_ms: v1.expires_at_ms,
            state: v1.state,
            owner: None,
            expires_after_days: None,
        })
    }
}

/// Where a spend stands (SPEC §5): open until the enhancement service says
/// how the provider call ended, or until its time runs out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpendState {
    Open,
    Completed { by: CompletedBy, at_ms: u64 },
    Refunded(RefundReceipt),
}

impl SpendState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed { .. } => "completed",
            Self::Refunded(_) => "refunded",
        }
    }
}

/// A spend, kept so that it is completed or refunded exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRecord {
    pub spend_id: SpendId,
    pub user: UserId,
    pub credits: UserCredits,
    /// The ledger entry of the spend.
    pub seq: u64,
    /// When it was made (its ledger entry's time): it completes by itself
    /// `spend_complete_after` later.
    pub created_at_ms: u64,
    pub state: SpendState,
    /// The API key that made it: only that key or an admin key may complete
    /// or refund it (SPEC §9.1). `None` for spends made before makers were
    /// recorded.
    pub owner: Option<KeyId>,
    /// The grants it drew from, in the burn order: a refund gives them back
    /// (SPEC §13). `None` for spends made before grants.
    pub draws: Option<Vec<Draw>>,
}

/// `SpendRecord` version 3, before grants.
#[derive(Serialize, Deserialize)]
struct SpendRecordV3 {
    spend_id: SpendId,
    user: UserId,
    credits: UserCredits,
    seq: u64,
    created_at_ms: u64,
    state: SpendState,
    owner: Option<KeyId>,
}

/// `SpendRecord` version 2, before makers were recorded.
#[derive(Serialize, Deserialize)]
struct SpendRecordV2 {
    spend_id: SpendId,
    user: UserId,
    credits: UserCredits,
    seq: u64,
    created_at_ms: u64,
    state: SpendState,
}

/// `SpendRecord` version 1, before open spends: a spend was final at once.
#[derive(Serialize, Deserialize)]
struct SpendRecordV1 {
    spend_id: SpendId,
    user: UserId,
    credits: UserCredits,
    seq: u64,
    refund: Option<RefundReceipt>,
}

impl Record for SpendRecord {
    /// 2: the state (open, completed, refunded) and the time it was made;
    /// 3: the key that made the spend; 4: the grants it drew from.
    const VERSION: u8 = 4;

    /// A version-1 spend that was not refunded was counted as consumed when
    /// it was made: it reads as completed. Neither version knew its maker.
    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => {
                let v1: SpendRecordV1 = decode_body(body)?;
                let state = match v1.refund {
                    Some(receipt) => SpendState::Refunded(receipt),
                    None => SpendState::Completed { by: CompletedBy::Time, at_ms: 0 },
                };
                Ok(Self {
                    spend_id: v1.spend_id,
                    user: v1.user,
                    credits: v1.credits,
                    seq: v1.seq,
                    created_at_ms: 0,
                    state,
                    owner: None,
                    draws: None,
                })
            }
            2 => {
                let v2: SpendRecordV2 = decode_body(body)?;
                Ok(Self {
                    spend_id: v2.spend_id,
                    user: v2.user,
                    credits: v2.credits,
                    seq: v2.seq,
                    created_at_ms: v2.created_at_ms,
                    state: v2.state,
                    owner: None,
                    draws: None,
                })
            }
            3 => {
                let v3: SpendRecordV3 = decode_body(body)?;
                Ok(Self {
                    spend_id: v3.spend_id,
                    user: v3.user,
                    credits: v3.credits,
                    seq: v3.seq,
                    created_at_ms: v3.created_at_ms,
                    state: v3.state,
                    owner: v3.owner,
                    draws: None,
                })
            }
            _ => Err(CodecError::UnknownVersion(version)),
        }
    }
}

/// An operator's settings for one package, over the configured ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageOverride {
    pub enabled: bool,
    pub credits: UserCredits,
    pub price: Money,
    /// SPEC §13: the credits of a purchase expire this many days after it;
    /// `None`: never. Backups from before grants have none.
    #[serde(default)]
    pub expires_after_days: Option<u32>,
}

/// `PackageOverride` version 1, before grants.
#[derive(Serialize, Deserialize)]
struct PackageOverrideV1 {
    enabled: bool,
    credits: UserCredits,
    price: Money,
}

impl Record for PackageOverride {
    /// 2: the expiry of its credits.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        if version != 1 {
            return Err(CodecError::UnknownVersion(version));
        }
        let v1: PackageOverrideV1 = decode_body(body)?;
        Ok(Self { enabled: v1.enabled, credits: v1.credits, price: v1.price, expires_after_days: None })
    }
}

/// One firing or clearing of an alert (SPEC §7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEventRecord {
    pub id: u64,
    /// The contract name: `level_warning`, `sync_failed`, ...
    pub kind: String,
    pub firing: bool,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub message: String,
    pub at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::KeyId;
    use crate::store::codec::{decode, encode, FORMAT_VERSION};

    /// Goal: a store written before API keys still opens: its version-1
    /// ledger entries decode, with no caller; new entries are version 2.
    #[test]
    fn a_version_1_ledger_entry_decodes_without_a_caller() {
        let v1 = LedgerEntryV1 {
            seq: 7,
            at_ms: 1_000,
            user: Some(UserId::parse("u").expect("valid")),
            idempotency_key: Some(IdempotencyKey::parse("k").expect("valid")),
            kind: EntryKind::PurchasesEnabled,
            provider_balance_after: ProviderCredits::new(40).expect("small"),
            reserved_after: ProviderCredits::new(4).expect("small"),
            wallet_after: None,
        };
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend(bincode::serde::encode_to_vec(&v1, bincode::config::standard()).expect("encodes"));
        let entry: LedgerEntry = decode(&bytes).expect("a version-1 entry decodes");
        assert_eq!((entry.seq, entry.caller.clone()), (7, None));
        assert_eq!(entry.idempotency_key.as_ref().map(IdempotencyKey::as_str), Some("k"));

        let now = LedgerEntry { caller: Some(KeyId::parse("key_3").expect("valid")), ..entry };
        let bytes = encode(&now).expect("encodes");
        assert_eq!(bytes[0], 3, "written as version 3");
        assert_eq!(decode::<LedgerEntry>(&bytes).expect("decodes"), now);
        let mut unknown = bytes;
        unknown[0] = 4;
        assert!(decode::<LedgerEntry>(&unknown).is_err(), "a version from the future is refused");
    }

    /// Goal: holds and spends written before makers were recorded still
    /// decode, with no maker (so only an admin key or time finishes them);
    /// new ones are written with their maker.
    #[test]
    fn holds_and_spends_of_the_previous_release_decode_without_a_maker() {
        let user = UserId::parse("u").expect("valid");
        let v1 = HoldRecordV1 {
            hold_id: HoldId::parse("hold_3").expect("valid"),
            user: user.clone(),
            package_id: PackageId::parse("starter").expect("valid"),
            credits: UserCredits::new(10).expect("small"),
            price: Money::new(999, crate::domain::Currency::EUR).expect("small"),
            created_at_ms: 5,
            expires_at_ms: 9,
            state: HoldState::Open,
        };
        let mut bytes = vec![FORMAT_VERSION];
        bytes.extend(bincode::serde::encode_to_vec(&v1, bincode::config::standard()).expect("encodes"));
        let hold: HoldRecord = decode(&bytes).expect("a version-1 hold decodes");
        assert_eq!((hold.hold_id.as_str(), hold.expires_at_ms, hold.owner.clone()), ("hold_3", 9, None));
        let made = HoldRecord { owner: Some(KeyId::parse("key_3").expect("valid")), ..hold };
        let bytes = encode(&made).expect("encodes");
        assert_eq!(bytes[0], 3, "written as version 3");
        assert_eq!(decode::<HoldRecord>(&bytes).expect("decodes"), made);

        let v2 = SpendRecordV2 {
            spend_id: SpendId::parse("spend_4").expect("valid"),
            user,
            credits: UserCredits::new(3).expect("small"),
            seq: 4,
            created_at_ms: 7,
            state: SpendState::Open,
        };
        let mut bytes = vec![2];
        bytes.extend(bincode::serde::encode_to_vec(&v2, bincode::config::standard()).expect("encodes"));
        let spend: SpendRecord = decode(&bytes).expect("a version-2 spend decodes");
        assert_eq!(
            (spend.seq, spend.created_at_ms, spend.state.clone(), spend.owner.clone()),
            (4, 7, SpendState::Open, None)
        );
        let made = SpendRecord { owner: Some(KeyId::parse("key_3").expect("valid")), ..spend };
        let bytes = encode(&made).expect("encodes");
        assert_eq!(bytes[0], 4, "written as version 4");
        assert_eq!(decode::<SpendRecord>(&bytes).expect("decodes"), made);
    }

    fn encoded<T: Serialize>(version: u8, value: &T) -> Vec<u8> {
        let mut bytes = vec![version];
        bytes.extend(bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes"));
        bytes
    }

    /// Goal (SPEC §13): a store of the release before grants opens with each
    /// wallet's balance as one never-expiring paid grant, named after the
    /// last entry that moved it; its entries, holds, spends, inventory and
    /// package settings decode with no grant effect, no draws, no expiry
    /// and zero totals.
    #[test]
    fn records_of_the_release_before_grants_decode_into_grants() {
        let user = UserId::parse("u").expect("valid");
        let wallet: WalletRecord = decode(&encoded(
            1,
            &WalletRecordV1 { balance: UserCredits::new(35).expect("small"), version: 4, recent: vec![3, 9, 12] },
        ))
        .expect("a version-1 wallet decodes");
        assert_eq!(wallet.grants, [legacy_grant(12, UserCredits::new(35).expect("small"))]);
        assert_eq!((wallet.grants[0].id().to_string(), wallet.grants[0].expires_at_ms), ("grant_12".into(), None));
        assert!(wallet.grants_agree());
        let empty: WalletRecord =
            decode(&encoded(1, &WalletRecordV1 { balance: UserCredits::ZERO, version: 2, recent: vec![3, 9] }))
                .expect("decodes");
        assert!(empty.grants.is_empty(), "an empty wallet has no grant");
        assert_eq!(encode(&wallet).expect("encodes")[0], 2, "written as version 2");

        let v2 = LedgerEntryV2 {
            seq: 7,
            at_ms: 1_000,
            user: Some(user.clone()),
            idempotency_key: None,
            kind: EntryKind::PurchasesEnabled,
            provider_balance_after: ProviderCredits::new(40).expect("small"),
            reserved_after: ProviderCredits::new(4).expect("small"),
            wallet_after: None,
            caller: Some(KeyId::parse("key_3").expect("valid")),
        };
        let entry: LedgerEntry = decode(&encoded(2, &v2)).expect("a version-2 entry decodes");
        assert_eq!((entry.caller.as_ref().map(KeyId::as_str), entry.grants.clone()), (Some("key_3"), None));

        let v3 = SpendRecordV3 {
            spend_id: SpendId::parse("spend_4").expect("valid"),
            user: user.clone(),
            credits: UserCredits::new(3).expect("small"),
            seq: 4,
            created_at_ms: 7,
            state: SpendState::Open,
            owner: Some(KeyId::parse("key_3").expect("valid")),
        };
        let spend: SpendRecord = decode(&encoded(3, &v3)).expect("a version-3 spend decodes");
        assert_eq!((spend.owner.is_some(), spend.draws.clone()), (true, None));

        let v2 = HoldRecordV2 {
            hold_id: HoldId::parse("hold_3").expect("valid"),
            user,
            package_id: PackageId::parse("starter").expect("valid"),
            credits: UserCredits::new(10).expect("small"),
            price: Money::new(999, crate::domain::Currency::EUR).expect("small"),
            created_at_ms: 5,
            expires_at_ms: 9,
            state: HoldState::Open,
            owner: None,
        };
        let hold: HoldRecord = decode(&encoded(2, &v2)).expect("a version-2 hold decodes");
        assert_eq!((hold.expires_after_days, hold.grant_expiry(100)), (None, None));

        let euros = Money::new(7, crate::domain::Currency::EUR).expect("small");
        let mut inventory = InventoryRecord::empty(euros);
        let v2 = InventoryRecordV2 {
            provider_balance: inventory.provider_balance,
            reserved: inventory.reserved,
            wallets_total: inventory.wallets_total,
            holds_total: inventory.holds_total,
            next_seq: 5,
            last_sync: None,
            purchases_enabled: true,
            disabled_reason: None,
            revenue: euros,
            consumed_total: inventory.consumed_total,
            open_spends: inventory.open_spends,
            held_back: inventory.held_back,
        };
        inventory.next_seq = 5;
        assert_eq!(decode::<InventoryRecord>(&encoded(2, &v2)).expect("a version-2 inventory decodes"), inventory);

        let v1 = PackageOverrideV1 { enabled: false, credits: UserCredits::new(10).expect("small"), price: euros };
        let settings: PackageOverride = decode(&encoded(1, &v1)).expect("a version-1 override decodes");
        assert_eq!((settings.enabled, settings.expires_after_days), (false, None));
        assert_eq!(encode(&settings).expect("encodes")[0], 2, "written as version 2");
    }
}
