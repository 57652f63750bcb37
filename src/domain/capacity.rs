//! What can be sold now (SPEC §2, §5): the arithmetic behind every capacity
//! decision, the catalogue and the platform status.

use serde::{Deserialize, Serialize};

use super::{ProviderCredits, QuantityError, Ratio, UserCredits};

/// The inventory's numbers at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    pub provider_balance: ProviderCredits,
    pub reserved: ProviderCredits,
    pub ratio: Ratio,
    /// What the last sync held back and no refund has given back since: the
    /// provider may already have consumed it, or may not (SPEC §6).
    pub held_back: ProviderCredits,
}

impl Capacity {
    /// `providerBalance − reserved`; negative only after a sync lowered the
    /// balance below what is spoken for (SPEC §6). Both operands are bounded
    /// by `QUANTITY_MAX` < 2^53, so the difference always fits an `i64`.
    pub fn available(&self) -> i64 {
        let balance = i64::try_from(self.provider_balance.get()).unwrap_or(i64::MAX);
        let reserved = i64::try_from(self.reserved.get()).unwrap_or(i64::MAX);
        balance.checked_sub(reserved).unwrap_or(i64::MIN)
    }

    /// `available` floored at zero, in provider credits.
    pub fn available_non_negative(&self) -> ProviderCredits {
        self.provider_balance.saturating_sub(self.reserved)
    }

    /// User credits that can still be sold: `max(0, available) / ratio`.
    pub fn user_credits(&self) -> UserCredits {
        self.ratio.user_credits_backed_by(self.available_non_negative())
    }

    /// How many times a package of `credits` can still be sold.
    pub fn times_sellable(&self, credits: UserCredits) -> u64 {
        self.user_credits().get().checked_div(credits.get()).unwrap_or(0)
    }

    /// True when `reserved` exceeds what the provider can back even if every
    /// spend the last sync held back had already been consumed (SPEC §6):
    /// `providerBalance + held_back < reserved`. Held-back spends alone never
    /// make it true: a balance they push below `reserved` only leaves nothing
    /// to sell.
    pub fn overcommitted(&self) -> bool {
        self.provider_balance.get().saturating_add(self.held_back.get()) < self.reserved.get()
    }

    /// Whether `credits` more user credits can be reserved without oversell,
    /// and the provider credits they need.
    ///
    /// # Errors
    /// An overflow of the backing amount.
    pub fn fits(&self, credits: UserCredits) -> Result<Option<ProviderCredits>, QuantityError> {
        let needed = self.ratio.backing(credits)?;
        if self.overcommitted() {
            return Ok(None);
        }
        let after = self.reserved.checked_add(needed)?;
        Ok((after <= self.provider_balance).then_some(needed))
    }
}

/// The alert levels on `available` provider credits (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    pub warning: ProviderCredits,
    pub low: ProviderCredits,
    pub critical: ProviderCredits,
}

impl Levels {
    pub const DEFAULT: Self = Self {
        warning: ProviderCredits::constant(500),
        low: ProviderCredits::constant(100),
        critical: ProviderCredits::constant(40),
    };
}

/// How far past its level a value must come back before a level alert
/// clears (SPEC §7): 10 % of the level.
pub const CLEAR_MARGIN_PERCENT: u64 = 10;

/// Whether a level alert on `value` holds (SPEC §7): it starts when `value`
/// goes under `level`, and once `firing` it holds until `value` is back at
/// `level` plus [`CLEAR_MARGIN_PERCENT`] of it, so a hold and its release
/// across the level fire and clear it at most once.
pub fn under_level(value: i64, level: u64, firing: bool) -> bool {
    let margin = level.saturating_mul(CLEAR_MARGIN_PERCENT).checked_div(100).unwrap_or(0);
    let threshold = if firing { level.saturating_add(margin) } else { level };
    value < i64::try_from(threshold).unwrap_or(i64::MAX)
}

/// The reserve bands operators plan purchases by (SPEC §7), on `available`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReserveBand {
    BelowMinimum,
    Minimum,
    Comfortable,
    Ideal,
}

impl ReserveBand {
    /// The lower bound of each band above `BelowMinimum`, in provider credits.
    pub const MINIMUM: u64 = 400;
    pub const COMFORTABLE: u64 = 2_000;
    pub const IDEAL: u64 = 10_000;

    pub fn of(available: i64) -> Self {
        let floor = |band: u64| i64::try_from(band).unwrap_or(i64::MAX);
        if available >= floor(Self::IDEAL) {
            Self::Ideal
        } else if available >= floor(Self::COMFORTABLE) {
            Self::Comfortable
        } else if available >= floor(Self::MINIMUM) {
            Self::Minimum
        } else {
            Self::BelowMinimum
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::BelowMinimum => "belowMinimum",
            Self::Minimum => "minimum",
            Self::Comfortable => "comfortable",
            Self::Ideal => "ideal",
        }
    }
}

/// The platform status shown by the storefront (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlatformStatus {
    Operational,
    Limited,
    SoldOut,
    Dead,
    Disabled,
}

impl PlatformStatus {
    /// The status for these numbers; the kill switch wins, then an empty
    /// provider account, then no capacity, then the early-warning level.
    pub fn of(capacity: &Capacity, purchases_enabled: bool, warning_level: ProviderCredits) -> Self {
        if !purchases_enabled {
            Self::Disabled
        } else if capacity.provider_balance.is_zero() {
            Self::Dead
        } else if capacity.user_credits().is_zero() {
            Self::SoldOut
        } else if capacity.available() < i64::try_from(warning_level.get()).unwrap_or(i64::MAX) {
            Self::Limited
        } else {
            Self::Operational
        }
    }

    /// The wire name (`soldOut`, ...), as in the JSON answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operational => "operational",
            Self::Limited => "limited",
            Self::SoldOut => "soldOut",
            Self::Dead => "dead",
            Self::Disabled => "disabled",
        }
    }

    /// The message the storefront shows its users.
    pub fn message(self) -> &'static str {
        match self {
            Self::Operational => "All systems operational",
            Self::Limited => "Limited availability",
            Self::SoldOut => "Sold out for now: new credits will be available soon",
            Self::Dead => "Service temporarily unavailable",
            Self::Disabled => "Purchases are temporarily disabled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capacity(balance: u64, reserved: u64) -> Capacity {
        Capacity {
            provider_balance: ProviderCredits::new(balance).expect("small"),
            reserved: ProviderCredits::new(reserved).expect("small"),
            ratio: Ratio::DEFAULT,
            held_back: ProviderCredits::ZERO,
        }
    }

    fn credits(n: u64) -> UserCredits {
        UserCredits::new(n).expect("small")
    }

    #[test]
    fn the_worked_example_of_spec_section_2_holds() {
        let start = capacity(938, 0);
        assert_eq!(start.user_credits(), credits(234));
        assert_eq!(start.times_sellable(credits(10)), 23);
        assert_eq!(start.times_sellable(credits(50)), 4);
        assert_eq!(start.times_sellable(credits(100)), 2);
        assert_eq!(start.times_sellable(credits(500)), 0);
        let after_a = capacity(938, 400);
        assert_eq!((after_a.available(), after_a.user_credits()), (538, credits(134)));
        let after_b = capacity(938, 800);
        assert_eq!((after_b.available(), after_b.user_credits()), (138, credits(34)));
        assert_eq!(after_b.fits(credits(50)), Ok(None));
    }

    #[test]
    fn an_overcommitted_inventory_sells_nothing_and_reports_negative_available() {
        let over = capacity(100, 400);
        assert_eq!(over.available(), -300);
        assert_eq!(over.user_credits(), UserCredits::ZERO);
        assert_eq!(over.fits(credits(1)), Ok(None));
        assert_eq!(PlatformStatus::of(&over, true, ProviderCredits::new(500).expect("small")), PlatformStatus::SoldOut);
    }

    #[test]
    fn a_level_alert_fires_under_the_level_and_clears_ten_percent_above_it() {
        assert!(!under_level(500, 500, false), "at the level: not under it");
        assert!(under_level(499, 500, false));
        assert!(under_level(549, 500, true), "firing: holds until 550");
        assert!(!under_level(550, 500, true), "clears at the level plus 10 %");
        assert!(under_level(43, 40, true) && !under_level(44, 40, true), "10 % of 40 is 4");
        assert!(under_level(0, 1, false) && under_level(-5, 1, true), "empty: available ≤ 0");
        assert!(!under_level(1, 1, true), "empty clears once anything is available");
        assert!(!under_level(i64::MAX, u64::MAX, true), "no overflow at the extremes");
        assert!(under_level(i64::MIN, 0, false) && !under_level(0, 0, false));
    }

    #[test]
    fn reserve_bands_follow_section_7() {
        assert_eq!(ReserveBand::of(-5), ReserveBand::BelowMinimum);
        assert_eq!(ReserveBand::of(399), ReserveBand::BelowMinimum);
        assert_eq!(ReserveBand::of(400), ReserveBand::Minimum);
        assert_eq!(ReserveBand::of(1_999), ReserveBand::Minimum);
        assert_eq!(ReserveBand::of(2_000), ReserveBand::Comfortable);
        assert_eq!(ReserveBand::of(10_000), ReserveBand::Ideal);
    }

    /// The boundary where sales must stop (SPEC §6): a balance equal to
    /// `reserved` is fully spoken for but not overcommitted; one credit less is.
    #[test]
    fn overcommitted_starts_one_credit_below_reserved() {
        assert!(!capacity(100, 100).overcommitted(), "balance = reserved: sold out, not overcommitted");
        assert!(capacity(99, 100).overcommitted());
        assert!(!capacity(101, 100).overcommitted());
        assert!(!capacity(0, 0).overcommitted());
        assert_eq!(capacity(100, 100).fits(credits(1)), Ok(None));
        assert_eq!(capacity(104, 100).fits(credits(1)), Ok(Some(ProviderCredits::new(4).expect("small"))));
    }

    /// SPEC §6: spends a sync held back may already be consumed, so a
    /// balance they push below `reserved` leaves nothing to sell but is not
    /// overcommitted; the platform is once even those would not cover it.
    #[test]
    fn held_back_spends_alone_never_overcommit() {
        let held = |balance, reserved, held_back| Capacity {
            held_back: ProviderCredits::new(held_back).expect("small"),
            ..capacity(balance, reserved)
        };
        assert!(!held(200, 600, 400).overcommitted(), "200 + 400 back 600");
        assert!(held(200, 600, 399).overcommitted(), "one credit short");
        assert!(!held(200, 600, 401).overcommitted());
        assert_eq!(held(200, 600, 400).fits(credits(1)), Ok(None), "nothing to sell");
        assert_eq!(held(200, 600, 400).user_credits(), UserCredits::ZERO);
    }

    /// The band names are a contract of the admin API and the report (SPEC §7).
    #[test]
    fn reserve_bands_have_their_wire_names() {
        let names = [ReserveBand::BelowMinimum, ReserveBand::Minimum, ReserveBand::Comfortable, ReserveBand::Ideal]
            .map(ReserveBand::as_str);
        assert_eq!(names, ["belowMinimum", "minimum", "comfortable", "ideal"]);
    }

    /// What the storefront shows for each status (SPEC §5), and its wire name.
    #[test]
    fn each_status_has_its_wire_name_and_the_storefronts_message() {
        let statuses = [
            (PlatformStatus::Operational, "operational", "All systems operational"),
            (PlatformStatus::Limited, "limited", "Limited availability"),
            (PlatformStatus::SoldOut, "soldOut", "Sold out for now: new credits will be available soon"),
            (PlatformStatus::Dead, "dead", "Service temporarily unavailable"),
            (PlatformStatus::Disabled, "disabled", "Purchases are temporarily disabled"),
        ];
        for (status, name, message) in statuses {
            assert_eq!((status.as_str(), status.message()), (name, message));
            assert_eq!(serde_json::to_value(status).expect("serialises"), serde_json::json!(name));
        }
    }

    #[test]
    fn status_precedence_is_disabled_dead_sold_out_limited_operational() {
        let warn = ProviderCredits::new(500).expect("small");
        assert_eq!(PlatformStatus::of(&capacity(938, 0), false, warn), PlatformStatus::Disabled);
        assert_eq!(PlatformStatus::of(&capacity(0, 0), true, warn), PlatformStatus::Dead);
        assert_eq!(PlatformStatus::of(&capacity(3, 0), true, warn), PlatformStatus::SoldOut);
        assert_eq!(PlatformStatus::of(&capacity(499, 0), true, warn), PlatformStatus::Limited);
        assert_eq!(PlatformStatus::of(&capacity(500, 0), true, warn), PlatformStatus::Operational);
    }
}
