//! The JSON shapes of SPEC §9 (camelCase). Requests are parsed into domain
//! types right after deserialisation; answers are built from engine types.

use serde::{Deserialize, Serialize};

use crate::actors::alert::AlertsView;
use crate::actors::inventory::InventoryView;
use crate::actors::inventory::{PurchasesState, ReleaseReceipt};
use crate::actors::sync::{SyncAttempt, SyncReport, SyncState};
use crate::actors::webhook::AlertEventBody;
use crate::clock::rfc3339;
use crate::domain::ledger::{
    CaptureReceipt, EntryKind, HoldReceipt, LedgerEntry, PurchaseReceipt, RefundReceipt, SpendReceipt,
};
use crate::domain::report::{Report, Runway};
use crate::domain::{Levels, Package, ReserveBand};

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
    /// Default 900 (15 minutes); at most the configured maximum (default 86 400).
    #[schema(minimum = 1, maximum = 86400)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumed_in_flight: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<i64>,
    /// The API key an `apiKeyCreated` or `apiKeyRevoked` entry is about (never the key itself, nor its hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    pub provider_balance_after: u64,
    pub reserved_after: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wallet_after: Option<u64>,
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
            consumed_in_flight: None,
            drift: None,
            key_id: None,
            key_name: None,
            scopes: None,
            provider_balance_after: entry.provider_balance_after.get(),
            reserved_after: entry.reserved_after.get(),
            wallet_after: entry.wallet_after.map(|credits| credits.get()),
        };
        match entry.kind {
            EntryKind::Purchase { purchase_id, package_id, credits, price } => {
                response.purchase_id = Some(purchase_id);
                response.package_id = Some(package_id.into());
                response.credits = Some(credits.get());
                response.price = Some(price.minor_units());
                response.currency = Some(price.currency().to_string());
            }
            EntryKind::ProviderSync { real, consumed_in_flight, drift, .. } => {
                response.real_balance = Some(real.get());
                response.consumed_in_flight = Some(consumed_in_flight.get());
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
        }
        response
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserCreditsResponse {
    pub user_id: String,
    pub balance: u64,
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

// ---------------------------------------------------------------------------
// Admin (SPEC §9).

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LevelsResponse {
    pub warning: u64,
    pub low: u64,
    pub critical: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReserveBandsResponse {
    pub minimum: u64,
    pub comfortable: u64,
    pub ideal: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncAttemptResponse {
    pub at: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_balance: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<i64>,
}

impl From<&SyncAttempt> for SyncAttemptResponse {
    fn from(attempt: &SyncAttempt) -> Self {
        let outcome = attempt.result.as_ref().ok();
        Self {
            at: rfc3339(attempt.at_ms),
            ok: attempt.result.is_ok(),
            error: attempt.result.as_ref().err().cloned(),
            duration_ms: u64::try_from(attempt.duration.as_millis()).unwrap_or(u64::MAX),
            real_balance: outcome.map(|outcome| outcome.real.get()),
            drift: outcome.and_then(|outcome| outcome.drift),
        }
    }
}

/// `GET /api/admin/credits`: real vs database, drift, last sync, levels, band.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminCreditsResponse {
    /// The provider's balance at the last successful sync.
    pub real_balance: Option<u64>,
    /// `providerBalance`: the last real balance minus local consumption since.
    pub database_balance: u64,
    /// Real minus database at the last successful sync.
    pub drift: Option<i64>,
    pub reserved_credits: u64,
    pub available_credits: i64,
    pub total_user_credits: u64,
    /// Σ wallets, in user credits.
    pub wallets_user_credits: u64,
    /// Σ open holds, in user credits.
    pub open_holds_user_credits: u64,
    pub open_holds: usize,
    /// Provider credits per user credit.
    pub ratio: u64,
    pub last_successful_sync_at: Option<String>,
    pub last_sync: Option<SyncAttemptResponse>,
    pub consecutive_sync_failures: u32,
    pub levels: LevelsResponse,
    pub reserve_band: &'static str,
    pub reserve_bands: ReserveBandsResponse,
    pub purchases_enabled: bool,
    pub disabled_reason: Option<String>,
    pub status: &'static str,
}

impl AdminCreditsResponse {
    pub fn new(view: &InventoryView, sync: &SyncState, levels: Levels) -> Self {
        Self {
            real_balance: view.last_sync.map(|sync| sync.real.get()),
            database_balance: view.capacity.provider_balance.get(),
            drift: view.last_sync.and_then(|sync| sync.drift),
            reserved_credits: view.capacity.reserved.get(),
            available_credits: view.capacity.available(),
            total_user_credits: view.capacity.user_credits().get(),
            wallets_user_credits: view.wallets_total.get(),
            open_holds_user_credits: view.holds_total.get(),
            open_holds: view.open_holds,
            ratio: view.capacity.ratio.get(),
            last_successful_sync_at: view.last_sync.map(|sync| rfc3339(sync.at_ms)),
            last_sync: sync.last_attempt.as_ref().map(SyncAttemptResponse::from),
            consecutive_sync_failures: sync.failures_in_a_row,
            levels: LevelsResponse {
                warning: levels.warning.get(),
                low: levels.low.get(),
                critical: levels.critical.get(),
            },
            reserve_band: ReserveBand::of(view.capacity.available()).as_str(),
            reserve_bands: ReserveBandsResponse {
                minimum: ReserveBand::MINIMUM,
                comfortable: ReserveBand::COMFORTABLE,
                ideal: ReserveBand::IDEAL,
            },
            purchases_enabled: view.purchases_enabled,
            disabled_reason: view.disabled_reason.clone(),
            status: view.status.as_str(),
        }
    }
}

/// `POST /api/admin/credits/sync`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncResponse {
    pub real_balance: u64,
    /// The database balance just before the sync.
    pub database_balance: u64,
    /// The provider balance after the sync (real minus what was consumed meanwhile).
    pub balance: u64,
    pub drift: Option<i64>,
    pub duration_ms: u64,
}

impl From<SyncReport> for SyncResponse {
    fn from(report: SyncReport) -> Self {
        Self {
            real_balance: report.outcome.real.get(),
            database_balance: report.outcome.previous.get(),
            balance: report.outcome.balance.get(),
            drift: report.outcome.drift,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// Shown in the `purchases_disabled` alert.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PurchasesStateResponse {
    pub purchases_enabled: bool,
    pub reason: Option<String>,
}

impl From<PurchasesState> for PurchasesStateResponse {
    fn from(state: PurchasesState) -> Self {
        Self { purchases_enabled: state.enabled, reason: state.reason }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageUpdateRequest {
    pub enabled: Option<bool>,
    /// Integer minor units.
    #[schema(minimum = 1, maximum = 9007199254740991_i64)]
    pub price: Option<i64>,
    #[schema(minimum = 1, maximum = 9007199254740991_i64)]
    pub credits: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminPackageResponse {
    pub id: String,
    pub credits: u64,
    pub price: u64,
    pub currency: String,
    pub enabled: bool,
}

impl From<Package> for AdminPackageResponse {
    fn from(package: Package) -> Self {
        Self {
            id: package.id.into(),
            credits: package.credits.get(),
            price: package.price.minor_units(),
            currency: package.price.currency().to_string(),
            enabled: package.enabled,
        }
    }
}

/// `GET /api/admin/alerts` (SPEC §7).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertsResponse {
    pub open: Vec<AlertEventBody>,
    pub alerts: Vec<AlertEventBody>,
}

impl From<AlertsView> for AlertsResponse {
    fn from(view: AlertsView) -> Self {
        Self {
            open: view.open.iter().map(AlertEventBody::from).collect(),
            alerts: view.recent.iter().map(AlertEventBody::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BurnRateResponse {
    /// Provider credits consumed per day over the last 24 hours.
    pub last_24h_per_day: u64,
    /// Provider credits consumed per day, averaged over the last 7 days.
    pub last_7d_per_day: u64,
    pub consumed_last_24h: i64,
    pub consumed_last_7d: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunwayResponse {
    pub burn_per_day: u64,
    /// `null` when nothing burns.
    pub available_seconds: Option<u64>,
    pub available_zero_at: Option<String>,
    pub provider_balance_seconds: Option<u64>,
    pub provider_balance_zero_at: Option<String>,
}

impl RunwayResponse {
    fn new(runway: Runway, now_ms: u64) -> Self {
        let at = |seconds: Option<u64>| seconds.map(|s| rfc3339(now_ms.saturating_add(s.saturating_mul(1000))));
        Self {
            burn_per_day: runway.burn_per_day,
            available_seconds: runway.available_seconds,
            available_zero_at: at(runway.available_seconds),
            provider_balance_seconds: runway.provider_balance_seconds,
            provider_balance_zero_at: at(runway.provider_balance_seconds),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunwaysResponse {
    pub last_24h: RunwayResponse,
    pub last_7d: RunwayResponse,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToBuyResponse {
    pub minimum: u64,
    pub comfortable: u64,
    pub ideal: u64,
}

/// `GET /api/admin/report` (SPEC §8). Money in integer minor units.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportResponse {
    pub generated_at: String,
    pub currency: String,
    pub revenue: u64,
    pub provider_credits_consumed: u64,
    pub provider_cost: u64,
    pub margin: i64,
    pub burn_rate: BurnRateResponse,
    pub runway: RunwaysResponse,
    pub available_credits: i64,
    pub nano_banana_credits: u64,
    pub reserve_band: &'static str,
    /// Provider credits to buy to reach each reserve band.
    pub to_buy: ToBuyResponse,
}

impl ReportResponse {
    pub fn new(report: &Report) -> Self {
        let (now_ms, available, provider_balance) = (report.now_ms, report.available, report.provider_balance.get());
        Self {
            generated_at: rfc3339(now_ms),
            currency: report.revenue.currency().to_string(),
            revenue: report.revenue.minor_units(),
            provider_credits_consumed: report.consumed_total.get(),
            provider_cost: report.provider_cost_minor_units,
            margin: report.margin_minor_units,
            burn_rate: BurnRateResponse {
                last_24h_per_day: report.runway_24h.burn_per_day,
                last_7d_per_day: report.runway_7d.burn_per_day,
                consumed_last_24h: report.consumed_24h,
                consumed_last_7d: report.consumed_7d,
            },
            runway: RunwaysResponse {
                last_24h: RunwayResponse::new(report.runway_24h, now_ms),
                last_7d: RunwayResponse::new(report.runway_7d, now_ms),
            },
            available_credits: available,
            nano_banana_credits: provider_balance,
            reserve_band: report.band.as_str(),
            to_buy: ToBuyResponse {
                minimum: report.to_reach_minimum,
                comfortable: report.to_reach_comfortable,
                ideal: report.to_reach_ideal,
            },
        }
    }
}
