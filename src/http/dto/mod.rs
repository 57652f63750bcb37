//! The JSON shapes of SPEC §9 (camelCase). Requests are parsed into domain
//! types right after deserialisation; answers are built from engine types.

use serde::{Deserialize, Serialize};

use crate::actors::inventory::InventoryView;
use crate::actors::inventory::ReleaseReceipt;
use crate::clock::rfc3339;
use crate::domain::grants::Closed;
use crate::domain::ledger::{
    CaptureReceipt, CompletionReceipt, EntryKind, GrantEffect, HoldReceipt, LedgerEntry, PurchaseReceipt,
    RefundReceipt, SpendReceipt,
};
use crate::domain::{GrantId, GrantKind};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PurchaseRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: String,
    #[schema(min_length = 1, max_length = 128)]
    pub package_id: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurchaseResponse {
    pub purchase_id: String,
    pub user_id: String,
    pub package_id: String,
    pub credits: u64,
    pub balance: u64,
}

impl From<PurchaseReceipt> for PurchaseResponse {
    fn from(receipt: PurchaseReceipt) -> Self {
        Self {
            purchase_id: receipt.purchase_id,
            user_id: receipt.user_id.into(),
            package_id: receipt.package_id.into(),
            credits: receipt.credits.get(),
            balance: receipt.balance.get(),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HoldRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: String,
    #[schema(min_length = 1, max_length = 128)]
    pub package_id: String,
    /// Default 900 (15 minutes); at most `hold_ttl_max_secs` (default 3 600,
    /// the maximum shown here); a longer one is 400 `invalid_request`.
    #[schema(minimum = 1, maximum = 3600)]
    pub ttl_seconds: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldResponse {
    pub hold_id: String,
    pub user_id: String,
    pub package_id: String,
    pub credits: u64,
    pub expires_at: String,
    pub state: &'static str,
}

impl From<HoldReceipt> for HoldResponse {
    fn from(receipt: HoldReceipt) -> Self {
        Self {
            hold_id: receipt.hold_id.into(),
            user_id: receipt.user_id.into(),
            package_id: receipt.package_id.into(),
            credits: receipt.credits.get(),
            expires_at: rfc3339(receipt.expires_at_ms),
            state: "open",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaptureResponse {
    pub hold_id: String,
    pub user_id: String,
    pub package_id: String,
    pub credits: u64,
    /// The wallet right after the capture.
    pub balance: u64,
    pub state: &'static str,
}

impl From<CaptureReceipt> for CaptureResponse {
    fn from(receipt: CaptureReceipt) -> Self {
        Self {
            hold_id: receipt.hold_id.into(),
            user_id: receipt.user_id.into(),
            package_id: receipt.package_id.into(),
            credits: receipt.credits.get(),
            balance: receipt.balance.get(),
            state: "captured",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseResponse {
    pub hold_id: String,
    pub user_id: String,
    pub credits: u64,
    pub state: &'static str,
}

impl From<ReleaseReceipt> for ReleaseResponse {
    fn from(receipt: ReleaseReceipt) -> Self {
        Self {
            hold_id: receipt.hold_id.into(),
            user_id: receipt.user_id.into(),
            credits: receipt.credits.get(),
            state: "released",
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpendRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub user_id: String,
    #[schema(minimum = 1, maximum = 9007199254740991_i64)]
    pub credits: i64,
    #[schema(min_length = 1, max_length = 256)]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SpendResponse {
    pub spend_id: String,
    pub user_id: String,
    pub credits: u64,
    /// The wallet right after the spend.
    pub balance: u64,
}

impl From<SpendReceipt> for SpendResponse {
    fn from(receipt: SpendReceipt) -> Self {
        Self {
            spend_id: receipt.spend_id.into(),
            user_id: receipt.user_id.into(),
            credits: receipt.credits.get(),
            balance: receipt.balance.get(),
        }
    }
}

/// `POST /api/credits/spend/{spendId}/complete`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompletionResponse {
    pub spend_id: String,
    pub user_id: String,
    pub credits: u64,
    /// Always `completed`.
    #[schema(value_type = String, example = "completed")]
    pub state: &'static str,
}

impl From<CompletionReceipt> for CompletionResponse {
    fn from(receipt: CompletionReceipt) -> Self {
        Self {
            spend_id: receipt.spend_id.into(),
            user_id: receipt.user_id.into(),
            credits: receipt.credits.get(),
            state: "completed",
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundResponse {
    pub spend_id: String,
    pub user_id: String,
    pub credits: u64,
    /// The wallet right after the refund.
    pub balance: u64,
    pub refunded: bool,
}

impl From<RefundReceipt> for RefundResponse {
    fn from(receipt: RefundReceipt) -> Self {
        Self {
            spend_id: receipt.spend_id.into(),
            user_id: receipt.user_id.into(),
            credits: receipt.credits.get(),
            balance: receipt.balance.get(),
            refunded: true,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageResponse {
    pub id: String,
    pub credits: u64,
    /// Integer minor units.
    pub price: u64,
    pub currency: String,
    pub disabled: bool,
    pub message: Option<&'static str>,
    /// How many times it can still be sold now.
    pub sellable: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlatformCapacity {
    pub total_user_credits: u64,
    pub nano_banana_credits: u64,
    pub reserved_credits: u64,
    pub available_credits: i64,
    /// Whether the package can be bought now (a boolean, as in the seed's
    /// example); how many times is `packages[].sellable`.
    pub can_sell_starter: bool,
    pub can_sell_creative: bool,
    pub can_sell_pro: bool,
    pub can_sell_studio: bool,
    pub purchases_enabled: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogueResponse {
    pub packages: Vec<PackageResponse>,
    pub status: &'static str,
    pub message: String,
    pub platform_capacity: PlatformCapacity,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub status: &'static str,
    pub message: String,
    pub purchases_enabled: bool,
    pub total_user_credits: u64,
}

/// The status message: the operator's reason when the kill switch is on.
fn status_message(view: &InventoryView) -> String {
    view.status.message().to_owned()
}

impl From<&InventoryView> for CatalogueResponse {
    fn from(view: &InventoryView) -> Self {
        let can_sell = |id: &str| view.packages.iter().any(|p| p.package.id.as_str() == id && !p.disabled);
        Self {
            packages: view
                .packages
                .iter()
                .map(|p| PackageResponse {
                    id: p.package.id.to_string(),
                    credits: p.package.credits.get(),
                    price: p.package.price.minor_units(),
                    currency: p.package.price.currency().to_string(),
                    disabled: p.disabled,
                    message: p.message,
                    sellable: p.sellable,
                })
                .collect(),
            status: view.status.as_str(),
            message: status_message(view),
            platform_capacity: PlatformCapacity {
                total_user_credits: view.capacity.user_credits().get(),
                nano_banana_credits: view.capacity.provider_balance.get(),
                reserved_credits: view.capacity.reserved.get(),
                available_credits: view.capacity.available(),
                can_sell_starter: can_sell("starter"),
                can_sell_creative: can_sell("creative"),
                can_sell_pro: can_sell("pro"),
                can_sell_studio: can_sell("studio"),
                purchases_enabled: view.purchases_enabled,
            },
        }
    }
}

impl From<&InventoryView> for StatusResponse {
    fn from(view: &InventoryView) -> Self {
        Self {
            status: view.status.as_str(),
            message: status_message(view),
            purchases_enabled: view.purchases_enabled,
            total_user_credits: view.capacity.user_credits().get(),
        }
    }
}

/// One ledger entry as exported (SPEC §9 ledger, user credits).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntryResponse {
    pub seq: u64,
    pub at: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purchase_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spend_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package_id: Option<String>,
    /// User credits the entry moved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_balance: Option<u64>,
    /// `providerSync`: `ratio ×` the spends it held back (still open when its
    /// answer arrived, or completed while its request was in flight); the
    /// balance it set is `realBalance − heldBack` (SPEC §6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_back: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<i64>,
    /// `spendCompleted`: `service` (the enhancement service said the provider
    /// did the work) or `time` (`spend_complete_after_secs` ran out).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub by: Option<&'static str>,
    /// A `spend` among a wallet's entries: where it stands now, `open`,
    /// `completed` or `refunded` (only on `GET /api/users/{userId}/credits`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub spend_state: Option<&'static str>,
    /// The API key an `apiKeyCreated` or `apiKeyRevoked` entry is about (never the key itself, nor its hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// The grant an entry made (`purchase`, `holdCaptured`, `grantCreated`)
    /// or closed (`grantExpired`, `grantVoided`), SPEC §13.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
    /// `paid` or `promotional`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub grant_kind: Option<&'static str>,
    /// `spend`: the grants it drew from, in the burn order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub draws: Option<Vec<GrantCreditsResponse>>,
    /// `refund`: the grants it gave the credits back to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<GrantCreditsResponse>>,
    /// `grantExpired`: the revenue the expired paid credits had earned
    /// (minor units of `currency`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakage: Option<u64>,
    /// `packageExpiryChanged`: how long the package's credits last (`null`: never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_after_days: Option<Option<u32>>,
    pub provider_balance_after: u64,
    pub reserved_after: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_after: Option<u64>,
}

/// Credits of one grant that a spend drew, or a refund gave back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrantCreditsResponse {
    pub grant_id: String,
    pub credits: u64,
    /// `refund`: the grant had expired or been voided meanwhile, so the
    /// credits left the wallet again at once (`expired`, `voided`); `null`
    /// when they stayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub left_again: Option<Option<&'static str>>,
}

impl From<LedgerEntry> for LedgerEntryResponse {
    fn from(entry: LedgerEntry) -> Self {
        let mut response = Self {
            seq: entry.seq,
            at: rfc3339(entry.at_ms),
            kind: entry.kind.name(),
            user_id: entry.user.map(String::from),
            idempotency_key: entry.idempotency_key.map(String::from),
            purchase_id: None,
            hold_id: None,
            spend_id: None,
            expires_at: None,
            reason: None,
            enabled: None,
            package_id: None,
            credits: None,
            price: None,
            currency: None,
            real_balance: None,
            held_back: None,
            drift: None,
            by: None,
            spend_state: None,
            key_id: None,
            key_name: None,
            scopes: None,
            grant_id: None,
            grant_kind: None,
            draws: None,
            grants: None,
            breakage: None,
            expires_after_days: None,
            provider_balance_after: entry.provider_balance_after.get(),
            reserved_after: entry.reserved_after.get(),
            wallet_after: entry.wallet_after.map(|credits| credits.get()),
        };
        match entry.grants {
            Some(GrantEffect::Paid { expires_at_ms }) => {
                response.grant_id = Some(GrantId(entry.seq).to_string());
                response.grant_kind = Some(GrantKind::Paid.as_str());
                response.expires_at = expires_at_ms.map(rfc3339);
            }
            Some(GrantEffect::Drew(draws)) => {
                let draws = draws.iter().map(|draw| GrantCreditsResponse {
                    grant_id: GrantId(draw.grant).to_string(),
                    credits: draw.credits.get(),
                    left_again: None,
                });
                response.draws = Some(draws.collect());
            }
            Some(GrantEffect::GaveBack(given)) => {
                let given = given.iter().map(|back| GrantCreditsResponse {
                    grant_id: GrantId(back.grant).to_string(),
                    credits: back.credits.get(),
                    left_again: Some(back.left_again.map(|closed| match closed {
                        Closed::Expired { .. } => "expired",
                        Closed::Voided { .. } => "voided",
                    })),
                });
                response.grants = Some(given.collect());
            }
            Some(GrantEffect::HoldTerms { .. }) | None => {}
        }
        match entry.kind {
            EntryKind::Purchase { purchase_id, package_id, credits, price } => {
                response.purchase_id = Some(purchase_id);
                response.package_id = Some(package_id.into());
                response.credits = Some(credits.get());
                response.price = Some(price.minor_units());
                response.currency = Some(price.currency().to_string());
            }
            EntryKind::ProviderSync { real, held_back, drift, .. } => {
                response.real_balance = Some(real.get());
                response.held_back = Some(held_back.get());
                response.drift = drift;
            }
            EntryKind::HoldCreated { hold_id, package_id, credits, price, expires_at_ms } => {
                response.hold_id = Some(hold_id.into());
                response.package_id = Some(package_id.into());
                response.credits = Some(credits.get());
                response.price = Some(price.minor_units());
                response.currency = Some(price.currency().to_string());
                response.expires_at = Some(rfc3339(expires_at_ms));
            }
            EntryKind::HoldCaptured { hold_id, package_id, credits, price } => {
                response.hold_id = Some(hold_id.into());
                response.package_id = Some(package_id.into());
                response.credits = Some(credits.get());
                response.price = Some(price.minor_units());
                response.currency = Some(price.currency().to_string());
            }
            EntryKind::HoldReleased { hold_id, credits } => {
                response.hold_id = Some(hold_id.into());
                response.credits = Some(credits.get());
            }
            EntryKind::HoldExpired { hold_id, credits, expires_at_ms } => {
                response.hold_id = Some(hold_id.into());
                response.credits = Some(credits.get());
                response.expires_at = Some(rfc3339(expires_at_ms));
            }
            EntryKind::Spend { spend_id, credits, reason } => {
                response.spend_id = Some(spend_id.into());
                response.credits = Some(credits.get());
                response.reason = reason.map(String::from);
            }
            EntryKind::Refund { spend_id, credits } => {
                response.spend_id = Some(spend_id.into());
                response.credits = Some(credits.get());
            }
            EntryKind::PurchasesDisabled { reason } => {
                response.reason = Some(reason);
                response.enabled = Some(false);
            }
            EntryKind::PurchasesEnabled => response.enabled = Some(true),
            EntryKind::PackageChanged { package_id, enabled, credits, price } => {
                response.package_id = Some(package_id.into());
                response.enabled = Some(enabled);
                response.credits = Some(credits.get());
                response.price = Some(price.minor_units());
                response.currency = Some(price.currency().to_string());
            }
            EntryKind::ApiKeyCreated { key_id, name, scopes, .. } => {
                response.key_id = Some(key_id.into());
                response.key_name = Some(name.into());
                response.scopes = Some(scopes.list().into_iter().map(|scope| scope.as_str().to_owned()).collect());
            }
            EntryKind::ApiKeyRevoked { key_id } => response.key_id = Some(key_id.into()),
            EntryKind::SpendCompleted { spend_id, credits, by } => {
                response.spend_id = Some(spend_id.into());
                response.credits = Some(credits.get());
                response.by = Some(by.name());
            }
            EntryKind::GrantCreated { kind, credits, expires_at_ms, reason } => {
                response.grant_id = Some(GrantId(entry.seq).to_string());
                response.grant_kind = Some(kind.as_str());
                response.credits = Some(credits.get());
                response.expires_at = expires_at_ms.map(rfc3339);
                response.reason = Some(reason.into());
            }
            EntryKind::GrantExpired { grant_id, kind, credits, breakage, expires_at_ms } => {
                response.grant_id = Some(grant_id.to_string());
                response.grant_kind = Some(kind.as_str());
                response.credits = Some(credits.get());
                response.breakage = Some(breakage.minor_units());
                response.currency = Some(breakage.currency().to_string());
                response.expires_at = Some(rfc3339(expires_at_ms));
            }
            EntryKind::GrantVoided { grant_id, kind, credits, reason } => {
                response.grant_id = Some(grant_id.to_string());
                response.grant_kind = Some(kind.as_str());
                response.credits = Some(credits.get());
                response.reason = Some(reason.into());
            }
            EntryKind::PackageExpiryChanged { package_id, expires_after_days } => {
                response.package_id = Some(package_id.into());
                response.expires_after_days = Some(expires_after_days);
            }
        }
        response
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserCreditsResponse {
    pub user_id: String,
    /// The sum of `remaining` over `grants` (SPEC §13).
    pub balance: u64,
    /// The grants with credits left, in the order a spend draws them.
    pub grants: Vec<crate::http::grants::WalletGrantResponse>,
    /// The credits that expire within seven days.
    pub expiring: crate::http::grants::ExpiringResponse,
    pub entries: Vec<LedgerEntryResponse>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LedgerPageResponse {
    pub entries: Vec<LedgerEntryResponse>,
    /// The `after` of the next page; `None` when this page is the end.
    pub next_after: Option<u64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HealthResponse {
    pub status: &'static str,
}

mod admin;

pub use admin::{
    AdminCreditsResponse, AdminPackageResponse, AlertsResponse, BurnRateResponse, DisableRequest, LevelsResponse,
    PackageUpdateRequest, PurchasesStateResponse, ReportResponse, ReserveBandsResponse, RunwayResponse,
    RunwaysResponse, SyncAttemptResponse, SyncResponse, ToBuyResponse,
};
