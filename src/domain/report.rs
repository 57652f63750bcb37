//! The operators' report (SPEC §8): revenue, provider cost and margin, burn
//! rate, runway, and what to buy to reach each reserve band. Pure arithmetic
//! over numbers the engine gathers; integers only.

use super::{Money, ProviderCredits, Ratio, ReserveBand, UserCredits};

pub const DAY_MS: u64 = 86_400_000;
pub const WEEK_MS: u64 = 7 * DAY_MS;

/// Micro-units of currency per minor unit, for two-decimal currencies (EUR, USD).
const MICROS_PER_MINOR_UNIT: u64 = 10_000;

/// What the report is computed from.
#[derive(Debug, Clone)]
pub struct ReportInput {
    pub now_ms: u64,
    pub revenue: Money,
    /// Provider credits consumed since the beginning: spends minus refunds.
    pub consumed_total: ProviderCredits,
    /// The provider's price of one provider credit, in micro-units of currency.
    pub cost_micros_per_credit: u64,
    pub available: i64,
    pub provider_balance: ProviderCredits,
    /// Provider credits consumed (positive) or refunded (negative) at each
    /// instant of the last seven days.
    pub consumption: Vec<(u64, i64)>,
}

/// When a quantity reaches zero at a burn rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runway {
    /// Provider credits per day.
    pub burn_per_day: u64,
    /// Seconds until `available` reaches zero; `None` when nothing burns.
    pub available_seconds: Option<u64>,
    /// Seconds until the provider balance reaches zero; `None` when nothing burns.
    pub provider_balance_seconds: Option<u64>,
}

/// The report of SPEC §8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub now_ms: u64,
    pub available: i64,
    pub provider_balance: ProviderCredits,
    pub revenue: Money,
    pub consumed_total: ProviderCredits,
    /// `consumed_total × unit cost`, rounded to the nearest minor unit.
    pub provider_cost_minor_units: u64,
    /// Revenue minus provider cost; negative when selling at a loss.
    pub margin_minor_units: i64,
    /// Net provider credits consumed over the last 24 hours.
    pub consumed_24h: i64,
    /// Net provider credits consumed over the last 7 days.
    pub consumed_7d: i64,
    /// Runway at the last day's burn rate, and at the last week's daily average.
    pub runway_24h: Runway,
    pub runway_7d: Runway,
    pub band: ReserveBand,
    /// Provider credits to buy to reach the minimum, comfortable and ideal bands.
    pub to_reach_minimum: u64,
    pub to_reach_comfortable: u64,
    pub to_reach_ideal: u64,
}

fn consumed_since(consumption: &[(u64, i64)], since_ms: u64) -> i64 {
    consumption
        .iter()
        .filter(|(at_ms, _)| *at_ms > since_ms)
        .fold(0i64, |sum, (_, credits)| sum.saturating_add(*credits))
}

fn runway(burn_per_day: u64, available: i64, provider_balance: ProviderCredits) -> Runway {
    // No burn, no runway to speak of: `checked_div` by zero is `None`.
    let seconds_until_zero = |amount: u64| {
        u128::from(amount)
            .saturating_mul(86_400)
            .checked_div(u128::from(burn_per_day))
            .map(|seconds| u64::try_from(seconds).unwrap_or(u64::MAX))
    };
    Runway {
        burn_per_day,
        available_seconds: seconds_until_zero(u64::try_from(available).unwrap_or(0)),
        provider_balance_seconds: seconds_until_zero(provider_balance.get()),
    }
}

fn shortfall(band_floor: u64, available: i64) -> u64 {
    let floor = i64::try_from(band_floor).unwrap_or(i64::MAX);
    u64::try_from(floor.saturating_sub(available)).unwrap_or(0)
}

/// What grants gave back (SPEC §13), as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantsReport {
    /// User credits expired, all time.
    pub expired_credits: UserCredits,
    /// The revenue those expired paid credits had earned.
    pub breakage: Money,
    /// By UTC day of expiry (days since 1970-01-01), oldest first: credits and breakage.
    pub expired_by_day: Vec<(u32, UserCredits, Money)>,
    pub voided_credits: UserCredits,
    /// Remaining credits of the promotional grants not closed.
    pub promotional_outstanding: UserCredits,
    /// `ratio ×` the expired and the voided credits: back in capacity.
    pub returned_by_expiry: ProviderCredits,
    pub returned_by_voids: ProviderCredits,
}

impl GrantsReport {
    /// The report of grant totals kept by the engine, with `ratio`.
    pub fn new(
        ratio: Ratio,
        expired_credits: UserCredits,
        voided_credits: UserCredits,
        breakage: Money,
        promotional_outstanding: UserCredits,
        expired_by_day: Vec<(u32, UserCredits, Money)>,
    ) -> Self {
        let backing = |credits: UserCredits| ratio.backing(credits).unwrap_or(ProviderCredits::ZERO);
        Self {
            expired_credits,
            breakage,
            expired_by_day,
            voided_credits,
            promotional_outstanding,
            returned_by_expiry: backing(expired_credits),
            returned_by_voids: backing(voided_credits),
        }
    }
}

/// Computes the report.
pub fn report(input: &ReportInput) -> Report {
    let cost_micros = u128::from(input.consumed_total.get()).saturating_mul(u128::from(input.cost_micros_per_credit));
    let half = u128::from(MICROS_PER_MINOR_UNIT / 2);
    let cost_minor = cost_micros.saturating_add(half).checked_div(u128::from(MICROS_PER_MINOR_UNIT)).unwrap_or(0);
    let cost_minor = u64::try_from(cost_minor).unwrap_or(u64::MAX);
    let revenue = i64::try_from(input.revenue.minor_units()).unwrap_or(i64::MAX);
    let margin = revenue.saturating_sub(i64::try_from(cost_minor).unwrap_or(i64::MAX));
    let consumed_24h = consumed_since(&input.consumption, input.now_ms.saturating_sub(DAY_MS));
    let consumed_7d = consumed_since(&input.consumption, input.now_ms.saturating_sub(WEEK_MS));
    let per_day = |consumed: i64, days: i64| u64::try_from(consumed.checked_div(days).unwrap_or(0)).unwrap_or(0);
    Report {
        now_ms: input.now_ms,
        available: input.available,
        provider_balance: input.provider_balance,
        revenue: input.revenue,
        consumed_total: input.consumed_total,
        provider_cost_minor_units: cost_minor,
        margin_minor_units: margin,
        consumed_24h,
        consumed_7d,
        runway_24h: runway(per_day(consumed_24h, 1), input.available, input.provider_balance),
        runway_7d: runway(per_day(consumed_7d, 7), input.available, input.provider_balance),
        band: ReserveBand::of(input.available),
        to_reach_minimum: shortfall(ReserveBand::MINIMUM, input.available),
        to_reach_comfortable: shortfall(ReserveBand::COMFORTABLE, input.available),
        to_reach_ideal: shortfall(ReserveBand::IDEAL, input.available),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    #[test]
    fn a_report_computed_by_hand() {
        let now = 30 * DAY_MS;
        let input = ReportInput {
            now_ms: now,
            revenue: Money::new(13_998, Currency::EUR).expect("small"),
            consumed_total: ProviderCredits::new(12_345).expect("small"),
            cost_micros_per_credit: 1_000,
            available: 1_500,
            provider_balance: ProviderCredits::new(4_800).expect("small"),
            // 2 days ago 1 000, 10 hours ago 480, 1 hour ago a refund of 40, 8 days ago 5 000 (outside).
            consumption: vec![
                (now - 8 * DAY_MS, 5_000),
                (now - 2 * DAY_MS, 1_000),
                (now - 10 * 3_600_000, 480),
                (now - 3_600_000, -40),
            ],
        };
        let report = report(&input);
        // 12 345 credits × €0.001 = €12.345 → 1 235 cents (half up).
        assert_eq!(report.provider_cost_minor_units, 1_235);
        assert_eq!(report.margin_minor_units, 13_998 - 1_235);
        assert_eq!((report.consumed_24h, report.consumed_7d), (440, 1_440));
        // 24 h: 440/day; available 1 500 → 1 500/440 days = 294 545 s; balance 4 800 → 942 545 s.
        assert_eq!(report.runway_24h.burn_per_day, 440);
        assert_eq!(report.runway_24h.available_seconds, Some(294_545));
        assert_eq!(report.runway_24h.provider_balance_seconds, Some(942_545));
        // 7 d: 1 440 / 7 = 205/day; 1 500 × 86 400 / 205 = 632 195 s.
        assert_eq!(report.runway_7d.burn_per_day, 205);
        assert_eq!(report.runway_7d.available_seconds, Some(632_195));
        assert_eq!(report.band, ReserveBand::Minimum);
        assert_eq!((report.to_reach_minimum, report.to_reach_comfortable, report.to_reach_ideal), (0, 500, 8_500));
    }

    #[test]
    fn nothing_burning_means_no_runway_and_a_negative_available_needs_more() {
        let input = ReportInput {
            now_ms: DAY_MS,
            revenue: Money::zero(Currency::EUR),
            consumed_total: ProviderCredits::ZERO,
            cost_micros_per_credit: 1_000,
            available: -300,
            provider_balance: ProviderCredits::new(500).expect("small"),
            consumption: Vec::new(),
        };
        let report = report(&input);
        assert_eq!(report.runway_7d.available_seconds, None);
        assert_eq!(report.to_reach_minimum, 700);
        assert_eq!(report.band, ReserveBand::BelowMinimum);
    }
}
