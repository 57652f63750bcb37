//! Packages of the catalogue (SPEC §3).

use serde::{Deserialize, Serialize};

use super::{Money, PackageId, UserCredits};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    #[error("a package must grant at least one credit")]
    NoCredits,
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
    /// [`PackageError::NoCredits`] for an empty package.
    pub fn new(id: PackageId, credits: UserCredits, price: Money, enabled: bool) -> Result<Self, PackageError> {
        if credits.is_zero() {
            return Err(PackageError::NoCredits);
        }
        Ok(Self { id, credits, price, enabled })
    }
}
