//! Everything creditd stores, as plain serde types. They are encoded only by
//! [`super::codec`]; new enum variants are appended at the end so that older
//! records keep decoding.

use serde::{Deserialize, Serialize};

use super::codec::{decode_body, CodecError, Record};
pub use crate::domain::ledger::{
    CaptureReceipt, CompletedBy, CompletionReceipt, EntryKind, HoldReceipt, LedgerEntry, Operation, PurchaseReceipt,
    Receipt, RefundReceipt, SpendReceipt,
};
pub use crate::domain::ApiKeyRecord;

use crate::domain::{
    HoldId, IdempotencyKey, KeyId, Money, PackageId, ProviderCredits, Ratio, SpendId, UserCredits, UserId,
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
    /// 2: open spends and the held-back credits.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
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
}

impl WalletRecord {
    pub const RECENT_MAX: usize = crate::domain::ledger::WALLET_RECENT_MAX;

    /// Remembers that ledger entry `seq` moved this wallet.
    pub fn note_entry(&mut self, seq: u64) {
        if self.recent.len() >= Self::RECENT_MAX {
            self.recent.remove(0);
        }
        self.recent.push(seq);
    }
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
    /// 2: `caller` added.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
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
impl Record for WalletRecord {}
impl Record for IdempotencyRecord {}
impl Record for PackageOverride {}
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
    /// 2: the key that made the hold.
    const VERSION: u8 = 2;

    fn upgrade(version: u8, body: &[u8]) -> Result<Self, CodecError> {
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
    /// 3: the key that made the spend.
    const VERSION: u8 = 3;

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
        assert_eq!(bytes[0], 2, "written as version 2");
        assert_eq!(decode::<LedgerEntry>(&bytes).expect("decodes"), now);
        let mut unknown = bytes;
        unknown[0] = 3;
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
        assert_eq!(bytes[0], 2, "written as version 2");
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
        assert_eq!(bytes[0], 3, "written as version 3");
        assert_eq!(decode::<SpendRecord>(&bytes).expect("decodes"), made);
    }
}
