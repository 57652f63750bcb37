//! Everything creditd stores, as plain serde types. They are encoded only by
//! [`super::codec`]; new enum variants are appended at the end so that older
//! records keep decoding.

use serde::{Deserialize, Serialize};

use super::codec::{decode_body, CodecError, Record};

use crate::domain::{
    HoldId, IdempotencyKey, KeyId, KeyName, Money, PackageId, ProviderCredits, Ratio, Reason, Scopes, SpendId,
    UserCredits, UserId,
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
    /// Real minus database balance; `None` for the first sync of a directory.
    pub drift: Option<i64>,
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
    pub const RECENT_MAX: usize = 20;

    /// Remembers that ledger entry `seq` moved this wallet.
    pub fn note_entry(&mut self, seq: u64) {
        if self.recent.len() >= Self::RECENT_MAX {
            self.recent.remove(0);
        }
        self.recent.push(seq);
    }
}

/// One change to a balance (SPEC §4.6): the ledger is the audit trail and
/// the state can be rebuilt from it alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Gap-free, starting at 1.
    pub seq: u64,
    pub at_ms: u64,
    pub user: Option<UserId>,
    pub idempotency_key: Option<IdempotencyKey>,
    pub kind: EntryKind,
    /// The provider balance after this entry.
    pub provider_balance_after: ProviderCredits,
    /// `reserved` after this entry.
    pub reserved_after: ProviderCredits,
    /// The user's wallet after this entry, when it moved one.
    pub wallet_after: Option<UserCredits>,
    /// The API key that sent `idempotency_key` (SPEC §9.1: keys are scoped to
    /// their caller). `None` for entries without a key, and for entries
    /// written before API keys (record version 1).
    #[serde(default)]
    pub caller: Option<KeyId>,
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
impl Record for InventoryRecord {}
impl Record for WalletRecord {}
impl Record for IdempotencyRecord {}
impl Record for HoldRecord {}
impl Record for SpendRecord {}
impl Record for PackageOverride {}
impl Record for AlertEventRecord {}
impl Record for ApiKeyRecord {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A one-step purchase: the wallet gains `credits`, `reserved` gains
    /// `ratio × credits`, revenue gains `price`.
    Purchase { purchase_id: String, package_id: PackageId, credits: UserCredits, price: Money },
    /// The provider balance was set from a successful sync: the new balance is
    /// `real − consumed_in_flight`.
    ProviderSync {
        real: ProviderCredits,
        previous: ProviderCredits,
        consumed_in_flight: ProviderCredits,
        drift: Option<i64>,
    },
    /// `reserved` gains `ratio × credits` until the hold is captured, released or expires.
    HoldCreated { hold_id: HoldId, package_id: PackageId, credits: UserCredits, price: Money, expires_at_ms: u64 },
    /// The hold's credits move into the wallet; `reserved` is unchanged; revenue gains `price`.
    HoldCaptured { hold_id: HoldId, package_id: PackageId, credits: UserCredits, price: Money },
    /// The hold's reservation is returned.
    HoldReleased { hold_id: HoldId, credits: UserCredits },
    /// The hold's reservation is returned at its deadline.
    HoldExpired { hold_id: HoldId, credits: UserCredits, expires_at_ms: u64 },
    /// The wallet loses `credits`; the provider balance and `reserved` lose `ratio × credits`.
    Spend { spend_id: SpendId, credits: UserCredits, reason: Option<Reason> },
    /// The spend is undone: the wallet, the provider balance and `reserved` get it back.
    Refund { spend_id: SpendId, credits: UserCredits },
    /// An operator turned the kill switch on (SPEC §5 admin).
    PurchasesDisabled { reason: String },
    /// An operator turned the kill switch off.
    PurchasesEnabled,
    /// An operator changed a package; the fields are its new settings.
    PackageChanged { package_id: PackageId, enabled: bool, credits: UserCredits, price: Money },
    /// An admin made an API key (SPEC §9.1); only the SHA-256 of the key is kept.
    ApiKeyCreated { key_id: KeyId, name: KeyName, scopes: Scopes, key_hash: [u8; 32] },
    /// An admin revoked an API key: from here on it answers 401.
    ApiKeyRevoked { key_id: KeyId },
}

impl EntryKind {
    /// The operation whose idempotency key an entry of this kind carries.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Purchase { .. } => Some(Operation::Purchase),
            Self::HoldCreated { .. } => Some(Operation::Hold),
            Self::Spend { .. } => Some(Operation::Spend),
            _ => None,
        }
    }

    /// The stable name used in the ledger export and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Purchase { .. } => "purchase",
            Self::ProviderSync { .. } => "providerSync",
            Self::HoldCreated { .. } => "holdCreated",
            Self::HoldCaptured { .. } => "holdCaptured",
            Self::HoldReleased { .. } => "holdReleased",
            Self::HoldExpired { .. } => "holdExpired",
            Self::Spend { .. } => "spend",
            Self::Refund { .. } => "refund",
            Self::PurchasesDisabled { .. } => "purchasesDisabled",
            Self::PurchasesEnabled => "purchasesEnabled",
            Self::PackageChanged { .. } => "packageChanged",
            Self::ApiKeyCreated { .. } => "apiKeyCreated",
            Self::ApiKeyRevoked { .. } => "apiKeyRevoked",
        }
    }
}

/// Which operation an idempotency key belongs to: the same key may be used
/// once per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Operation {
    Purchase,
    Hold,
    Spend,
}

impl Operation {
    pub fn tag(self) -> u8 {
        match self {
            Self::Purchase => b'p',
            Self::Hold => b'h',
            Self::Spend => b's',
        }
    }
}

/// The answer to a purchase, remembered under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseReceipt {
    pub purchase_id: String,
    pub user_id: UserId,
    pub package_id: PackageId,
    pub credits: UserCredits,
    /// The wallet right after the purchase.
    pub balance: UserCredits,
}

/// The answer to a new hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReceipt {
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub package_id: PackageId,
    pub credits: UserCredits,
    pub expires_at_ms: u64,
}

/// The answer to a capture, kept in the hold so that a second capture gets it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureReceipt {
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub package_id: PackageId,
    pub credits: UserCredits,
    /// The wallet right after the capture.
    pub balance: UserCredits,
}

/// The answer to a spend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendReceipt {
    pub spend_id: SpendId,
    pub user_id: UserId,
    pub credits: UserCredits,
    pub balance: UserCredits,
}

/// The answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundReceipt {
    pub spend_id: SpendId,
    pub user_id: UserId,
    pub credits: UserCredits,
    pub balance: UserCredits,
}

/// An answer that changed state, remembered so that a retry gets it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Receipt {
    Purchase(PurchaseReceipt),
    Hold(HoldReceipt),
    Spend(SpendReceipt),
}

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
}

/// A spend, kept so that it can be refunded exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendRecord {
    pub spend_id: SpendId,
    pub user: UserId,
    pub credits: UserCredits,
    /// The ledger entry of the spend.
    pub seq: u64,
    pub refund: Option<RefundReceipt>,
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

/// An API key (SPEC §9.1): what it may do and when it was made, used and
/// revoked. The key itself is never stored, only its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: KeyId,
    pub name: KeyName,
    pub scopes: Scopes,
    pub key_hash: [u8; 32],
    pub created_at_ms: u64,
    /// Kept coarsely (about once a minute), not written on every request.
    pub last_used_at_ms: Option<u64>,
    pub revoked_at_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
