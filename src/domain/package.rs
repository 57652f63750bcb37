//! Packages of the catalogue (SPEC §3).

use serde::{Deserialize, Serialize};

use super::{Money, PackageId, UserCredits};

/// The most user credits one package grants (SPEC §9.2).
pub const PACKAGE_CREDITS_MAX: u64 = 1_000_000;
/// The highest price of one package, in minor units (SPEC §9.2): with
/// credits and price bounded, nothing downstream of a valid package (the
/// reservation, a wallet, the revenue of a sale) can overflow.
pub const PACKAGE_PRICE_MAX: u64 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("must be from 1 to {PACKAGE_CREDITS_MAX} credits")]
    Credits,
    #[error("must be from 0 to {PACKAGE_PRICE_MAX} minor units")]
    Price,
    #[error("must be from 1 to {PACKAGE_EXPIRY_DAYS_MAX} days, or null for never")]
    Expiry,
}

/// A package a user can buy: a number of user credits for a price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub id: PackageId,
    pub credits: UserCredits,
    pub price: Money,
    /// False when an operator disabled it (SPEC §5, admin).
    pub enabled: bool,
    /// The credits a purchase of it gives expire this many days after the
    /// purchase (SPEC §13); `None`: never.
    pub expires_after_days: Option<u32>,
}

/// The most days a package's credits may last before they expire (ten
/// years): a longer setting is refused at the edge.
pub const PACKAGE_EXPIRY_DAYS_MAX: u32 = 3_650;

/// A day in milliseconds.
pub const DAY_MS: u64 = 86_400_000;

impl Package {
    /// # Errors
    /// [`PackageError`] for credits or a price out of their bounds.
    pub fn new(id: PackageId, credits: UserCredits, price: Money, enabled: bool) -> Result<Self, PackageError> {
        package_credits(credits.get())?;
        package_price(price.minor_units())?;
        Ok(Self { id, credits, price, enabled, expires_after_days: None })
    }

    /// The same package, its credits expiring `days` after a purchase
    /// (`None`: never).
    ///
    /// # Errors
    /// [`PackageError::Expiry`] outside 1..=[`PACKAGE_EXPIRY_DAYS_MAX`].
    pub fn expiring_after(self, days: Option<u32>) -> Result<Self, PackageError> {
        if days.is_some_and(|days| days == 0 || days > PACKAGE_EXPIRY_DAYS_MAX) {
            return Err(PackageError::Expiry);
        }
        Ok(Self { expires_after_days: days, ..self })
    }

    /// When the credits of a purchase at `at_ms` expire (`None`: never).
    pub fn grant_expiry(&self, at_ms: u64) -> Option<u64> {
        self.expires_after_days.map(|days| at_ms.saturating_add(u64::from(days).saturating_mul(DAY_MS)))
    }
}

/// `credits` as a package's, at the edge (an operator's update, the configuration).
///
/// # Errors
/// [`PackageError::Credits`] outside 1 ..= [`PACKAGE_CREDITS_MAX`].
pub fn package_credits(credits: u64) -> Result<UserCredits, PackageError> {
    if (1..=PACKAGE_CREDITS_MAX).contains(&credits) {
        UserCredits::new(credits).map_err(|_| PackageError::Credits)
    } else {
        Err(PackageError::Credits)
    }
}

/// `minor_units` as a package's price.
///
/// # Errors
/// [`PackageError::Price`] above [`PACKAGE_PRICE_MAX`].
pub fn package_price(minor_units: u64) -> Result<u64, PackageError> {
    if minor_units <= PACKAGE_PRICE_MAX {
        Ok(minor_units)
    } else {
        Err(PackageError::Price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SPEC §9.2's bounds, at their edges.
    #[test]
    fn credits_and_price_are_bounded() {
        assert_eq!(package_credits(0), Err(PackageError::Credits));
        assert_eq!(package_credits(1).map(UserCredits::get), Ok(1));
        assert_eq!(package_credits(1_000_000).map(UserCredits::get), Ok(1_000_000));
        assert_eq!(package_credits(1_000_001), Err(PackageError::Credits));
        assert_eq!(package_price(0), Ok(0));
        assert_eq!(package_price(100_000_000), Ok(100_000_000));
        assert_eq!(package_price(100_000_001), Err(PackageError::Price));
        let id = PackageId::parse("p").expect("valid");
        let price = |minor| Money::new(minor, crate::domain::Currency::EUR).expect("small");
        let credits = UserCredits::new(10).expect("small");
        assert!(Package::new(id.clone(), credits, price(100_000_000), true).is_ok());
        assert_eq!(Package::new(id.clone(), credits, price(100_000_001), true), Err(PackageError::Price));
        let many = UserCredits::new(1_000_001).expect("small");
        assert_eq!(Package::new(id.clone(), many, price(1), true), Err(PackageError::Credits));
        let package = Package::new(id, credits, price(1), true).expect("valid");
        assert_eq!(package.grant_expiry(5), None, "never expires by default");
        for bad in [0, PACKAGE_EXPIRY_DAYS_MAX + 1] {
            assert_eq!(package.clone().expiring_after(Some(bad)), Err(PackageError::Expiry), "{bad} days");
        }
        let yearly = package.expiring_after(Some(PACKAGE_EXPIRY_DAYS_MAX)).expect("ten years is allowed");
        assert_eq!(yearly.grant_expiry(5), Some(5 + u64::from(PACKAGE_EXPIRY_DAYS_MAX) * DAY_MS));
        let daily = yearly.expiring_after(Some(1)).expect("a day is allowed");
        assert_eq!(daily.grant_expiry(5), Some(5 + DAY_MS));
        assert_eq!(daily.expiring_after(None).expect("never").grant_expiry(5), None);
    }
}
