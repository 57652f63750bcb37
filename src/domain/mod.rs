//! Domain types: quantities, money, identifiers, packages and the capacity
//! rules of SPEC §2, §3 and §5. Pure: no IO, no clocks, no actors.
//!
//! Every quantity is a `u64` newtype with a private field, bounded by
//! [`QUANTITY_MAX`] so that it survives a trip through JSON into a JavaScript
//! storefront unchanged, and changed only by checked arithmetic.

#![deny(clippy::arithmetic_side_effects)]

mod access;
mod capacity;
mod credits;
pub mod grants;
mod ids;
pub mod ledger;
mod money;
mod package;
pub mod report;

pub use access::{ApiKeyRecord, Caller, Needs, NoScopes, Scope, Scopes, UnknownScope};
pub use capacity::{under_level, Capacity, Levels, PlatformStatus, ReserveBand};
pub use credits::{ProviderCredits, QuantityError, Ratio, UserCredits, QUANTITY_MAX};
pub use grants::{GrantId, GrantKind};
pub use ids::{HoldId, IdError, IdempotencyKey, KeyId, KeyName, PackageId, Reason, ScopedKey, SpendId, UserId};
pub use money::{Currency, Money, MoneyError};
pub use package::{
    package_credits, package_price, Package, PackageError, DAY_MS, PACKAGE_CREDITS_MAX, PACKAGE_EXPIRY_DAYS_MAX,
    PACKAGE_PRICE_MAX,
};
