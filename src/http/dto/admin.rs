//! The admin routes' JSON shapes (SPEC §9).

use serde::{Deserialize, Serialize};

use crate::actors::alert::AlertsView;
use crate::actors::inventory::InventoryView;
use crate::actors::inventory::PurchasesState;
use crate::actors::sync::{SyncAttempt, SyncReport, SyncState};
use crate::actors::webhook::AlertEventBody;
use crate::clock::rfc3339;
use crate::domain::report::{GrantsReport, Report, Runway};
use crate::domain::{Levels, Package, ReserveBand};

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
    /// `providerBalance`: the last real balance, minus what that sync held
    /// back, minus what spends consumed or may still consume since (SPEC §6).
    pub database_balance: u64,
    /// Real minus what the database expected at the last successful sync
    /// (its balance plus what the sync held back).
    pub drift: Option<i64>,
    /// Spends neither completed nor refunded: the provider may still consume them.
    pub open_spends: usize,
    /// Σ open spends, in user credits.
    pub open_spends_user_credits: u64,
    /// `ratio ×` Σ open spends: provider credits the provider may still consume.
    pub open_spends_provider_credits: u64,
    /// Provider credits the last sync held back (open spends and spends
    /// completed while it was in flight), less what refunds gave back since.
    pub held_back_credits: u64,
    /// `providerBalance + heldBackCredits < reserved`: sales stopped (SPEC §6).
    pub overcommitted: bool,
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
            open_spends: view.open_spends,
            open_spends_user_credits: view.open_spends_total.get(),
            open_spends_provider_credits: view
                .capacity
                .ratio
                .backing(view.open_spends_total)
                .map_or(u64::MAX, |credits| credits.get()),
            held_back_credits: view.capacity.held_back.get(),
            overcommitted: view.capacity.overcommitted(),
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
    /// Integer minor units, 0 to 100 000 000 (SPEC §9.2).
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub price: Option<i64>,
    /// 1 to 1 000 000 (SPEC §9.2).
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub credits: Option<i64>,
    /// The credits of a purchase expire this many days after it, 1 to
    /// 3 650 (SPEC §13); `null`: never; absent: unchanged.
    #[serde(default, rename = "expiresAfterDays", deserialize_with = "present")]
    #[schema(value_type = Option<i64>, nullable, minimum = 1, maximum = 3650)]
    pub expires_after_days: Option<Option<i64>>,
}

/// A field that is present, `null` included (`Some(None)`), as opposed to
/// absent (`None`, by `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminPackageResponse {
    pub id: String,
    pub credits: u64,
    pub price: u64,
    pub currency: String,
    pub enabled: bool,
    /// `null`: its credits never expire.
    pub expires_after_days: Option<u32>,
}

impl From<Package> for AdminPackageResponse {
    fn from(package: Package) -> Self {
        Self {
            id: package.id.into(),
            credits: package.credits.get(),
            price: package.price.minor_units(),
            currency: package.price.currency().to_string(),
            enabled: package.enabled,
            expires_after_days: package.expires_after_days,
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
    /// User credits of grants that expired, all time (SPEC §13).
    pub expired_credits: u64,
    /// The revenue those expired paid credits had earned (minor units).
    pub breakage_revenue: u64,
    /// By UTC day of expiry, oldest first.
    pub expired_by_day: Vec<ExpiredDayResponse>,
    /// User credits of voided grants, all time.
    pub voided_credits: u64,
    /// Remaining credits of live promotional grants: a liability nobody paid for.
    pub promotional_outstanding: u64,
    /// `ratio ×` the expired credits: provider credits back in capacity.
    pub provider_credits_returned_by_expiry: u64,
    /// `ratio ×` the voided credits.
    pub provider_credits_returned_by_voids: u64,
}

/// One UTC day of `expiredByDay`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpiredDayResponse {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub credits: u64,
    pub breakage_revenue: u64,
}

/// `YYYY-MM-DD` of a day counted from 1970-01-01.
fn day_name(day: u32) -> String {
    let at = rfc3339(u64::from(day).saturating_mul(crate::domain::DAY_MS));
    at.get(..10).unwrap_or("1970-01-01").to_owned()
}

impl ReportResponse {
    pub fn new(report: &Report, grants: &GrantsReport) -> Self {
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
            expired_credits: grants.expired_credits.get(),
            breakage_revenue: grants.breakage.minor_units(),
            expired_by_day: grants
                .expired_by_day
                .iter()
                .map(|(day, credits, breakage)| ExpiredDayResponse {
                    day: day_name(*day),
                    credits: credits.get(),
                    breakage_revenue: breakage.minor_units(),
                })
                .collect(),
            voided_credits: grants.voided_credits.get(),
            promotional_outstanding: grants.promotional_outstanding.get(),
            provider_credits_returned_by_expiry: grants.returned_by_expiry.get(),
            provider_credits_returned_by_voids: grants.returned_by_voids.get(),
        }
    }
}
