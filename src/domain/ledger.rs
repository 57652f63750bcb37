//! The ledger (SPEC §4.6) and the answers that changed state: what the
//! engine decides, the store keeps and the HTTP layer shows. Plain serde
//! types; the store encodes them (`store::codec`, with a version byte),
//! and new enum variants are appended at the end so that older records
//! keep decoding.

use serde::{Deserialize, Serialize};

use super::grants::{Draw, GivenBack, GrantId, GrantKind};
use super::{
    HoldId, IdempotencyKey, KeyId, KeyName, Money, PackageId, ProviderCredits, Reason, Scopes, SpendId, UserCredits,
    UserId,
};

/// The most ledger entries one read returns.
pub const PAGE_MAX: usize = 1000;

/// The recent entries a wallet keeps the sequence numbers of, and so the
/// most a user's entries route shows.
pub const WALLET_RECENT_MAX: usize = 20;

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
    /// What the entry did to the user's grants (SPEC §13); `None` for
    /// entries written before grants (record version 2 and older), which
    /// replay reads as moving the one grant a wallet of that time became.
    #[serde(default)]
    pub grants: Option<GrantEffect>,
}

/// What a ledger entry did to a user's grants, beside its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantEffect {
    /// A purchase or a capture made the paid grant `grant_{seq}` of this
    /// entry, expiring at `expires_at_ms` (`None`: never).
    Paid { expires_at_ms: Option<u64> },
    /// A spend drew these credits, in the burn order.
    Drew(Vec<Draw>),
    /// A refund gave these back to the grants its spend drew from.
    GaveBack(Vec<GivenBack>),
    /// A hold's package made its credits expire this many days after the
    /// capture (`None`: never).
    HoldTerms { expires_after_days: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    /// A one-step purchase: the wallet gains `credits`, `reserved` gains
    /// `ratio × credits`, revenue gains `price`.
    Purchase { purchase_id: String, package_id: PackageId, credits: UserCredits, price: Money },
    /// The provider balance was set from a successful sync: the new balance is
    /// `real − held_back`, where `held_back` is `ratio ×` the spends still
    /// open when the answer arrived and those completed while the request
    /// was in flight (SPEC §6). (Stores written before open spends kept
    /// the consumption in flight here, which the same rule replays.)
    ProviderSync {
        real: ProviderCredits,
        previous: ProviderCredits,
        /// Backups written before open spends name it `consumed_in_flight`.
        #[serde(alias = "consumed_in_flight")]
        held_back: ProviderCredits,
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
    /// The wallet loses `credits`; the provider balance and `reserved` lose
    /// `ratio × credits`. The spend is open until completed or refunded.
    Spend { spend_id: SpendId, credits: UserCredits, reason: Option<Reason> },
    /// An open spend is undone: the wallet, the provider balance and `reserved` get it back.
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
    /// An open spend is final (SPEC §5): the provider did the work (`by` the
    /// enhancement service) or its time ran out. No quantity moves.
    SpendCompleted { spend_id: SpendId, credits: UserCredits, by: CompletedBy },
    /// An admin gave the user a grant (SPEC §13): the wallet gains
    /// `credits`, `reserved` gains `ratio × credits`, no revenue. Its id is
    /// `grant_{seq}` of this entry.
    GrantCreated { kind: GrantKind, credits: UserCredits, expires_at_ms: Option<u64>, reason: Reason },
    /// A grant reached its `expiresAt`: its remaining `credits` left the
    /// wallet and `reserved` lost `ratio × credits`; `breakage` is the
    /// revenue those credits had earned (zero for a promotional grant).
    GrantExpired { grant_id: GrantId, kind: GrantKind, credits: UserCredits, breakage: Money, expires_at_ms: u64 },
    /// An admin voided a grant: its remaining `credits` left the wallet.
    GrantVoided { grant_id: GrantId, kind: GrantKind, credits: UserCredits, reason: Reason },
    /// An operator changed how long a package's credits last (SPEC §13),
    /// beside the `PackageChanged` entry of the same update; `None`: never.
    PackageExpiryChanged { package_id: PackageId, expires_after_days: Option<u32> },
}

/// Who completed a spend: the enhancement service, or the time limit
/// (`spend_complete_after_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompletedBy {
    Service,
    Time,
}

impl CompletedBy {
    /// The ledger export's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "service",
            Self::Time => "time",
        }
    }
}

impl EntryKind {
    /// The operation whose idempotency key an entry of this kind carries.
    pub fn operation(&self) -> Option<Operation> {
        match self {
            Self::Purchase { .. } => Some(Operation::Purchase),
            Self::HoldCreated { .. } => Some(Operation::Hold),
            Self::Spend { .. } => Some(Operation::Spend),
            Self::GrantCreated { .. } => Some(Operation::Grant),
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
            Self::SpendCompleted { .. } => "spendCompleted",
            Self::GrantCreated { .. } => "grantCreated",
            Self::GrantExpired { .. } => "grantExpired",
            Self::GrantVoided { .. } => "grantVoided",
            Self::PackageExpiryChanged { .. } => "packageExpiryChanged",
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
    /// An admin's promotional grant (`POST /api/admin/grants`).
    Grant,
}

impl Operation {
    pub fn tag(self) -> u8 {
        match self {
            Self::Purchase => b'p',
            Self::Hold => b'h',
            Self::Spend => b's',
            Self::Grant => b'g',
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

/// The answer to a completion (SPEC §9: `{spendId, userId, credits, state}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompletionReceipt {
    pub spend_id: SpendId,
    pub user_id: UserId,
    pub credits: UserCredits,
}

/// The answer to a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundReceipt {
    pub spend_id: SpendId,
    pub user_id: UserId,
    pub credits: UserCredits,
    pub balance: UserCredits,
}

/// The answer to a new grant (SPEC §13: `{grantId, userId, kind, credits, expiresAt}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantReceipt {
    pub grant_id: GrantId,
    pub user_id: UserId,
    pub kind: GrantKind,
    pub credits: UserCredits,
    pub expires_at_ms: Option<u64>,
}

/// The answer to a void, and to voiding the same grant again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoidReceipt {
    pub grant_id: GrantId,
    pub user_id: UserId,
    pub kind: GrantKind,
    pub credits: UserCredits,
    pub expires_at_ms: Option<u64>,
    pub voided_at_ms: u64,
}

/// An answer that changed state, remembered so that a retry gets it again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Receipt {
    Purchase(PurchaseReceipt),
    Hold(HoldReceipt),
    Spend(SpendReceipt),
    Grant(GrantReceipt),
}

#[cfg(test)]
mod tests {
    use super::EntryKind;

    /// A backup written before open spends names what a sync subtracted
    /// `consumed_in_flight`; it still reads, as what the sync held back.
    #[test]
    fn an_older_backups_provider_sync_reads_as_held_back() {
        let old = r#"{"ProviderSync":{"real":938,"previous":900,"consumed_in_flight":40,"drift":null}}"#;
        let kind: EntryKind = serde_json::from_str(old).expect("reads");
        let EntryKind::ProviderSync { held_back, real, .. } = kind else { panic!("{kind:?}") };
        assert_eq!((real.get(), held_back.get()), (938, 40));
        let now = serde_json::to_string(&EntryKind::ProviderSync { real, previous: real, held_back, drift: Some(0) })
            .expect("writes");
        assert!(now.contains("\"held_back\":40"), "{now}");
    }
}
