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
}

/// A package a user can buy: a number of user credits for a price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub id: PackageId,
    pub credits: UserCredits,
    pub price: Money,
    /// False when an operator disabled it (SPEC §5, admin).
    pub enabled: bool,
}

impl Package {
    /// # Errors
    /// [`PackageError`] for credits or a price out of their bounds.
    pub fn new(id: PackageId, credits: UserCredits, price: Money, enabled: bool) -> Result<Self, PackageError> {
        package_credits(credits.get())?;
        package_price(price.minor_units())?;
        Ok(Self { id, credits, price, enabled })
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
        assert_eq!(Package::new(id, many, price(1), true), Err(PackageError::Credits));
    }
}
