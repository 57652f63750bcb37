//! User credits, provider credits and the ratio between them (SPEC §1, §2).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest quantity creditd accepts or produces: 2^53 − 1, the largest
/// integer a JSON consumer using IEEE doubles reads back exactly.
pub const QUANTITY_MAX: u64 = (1 << 53) - 1;

/// Why a quantity could not be built or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("must be greater than zero")]
    Zero,
    #[error("must not be negative")]
    Negative,
    #[error("exceeds the largest allowed quantity ({QUANTITY_MAX})")]
    Overflow,
    #[error("would go below zero")]
    Underflow,
    #[error("ratio must be between 1 and 1000000")]
    BadRatio,
}

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
        #[serde(try_from = "u64", into = "u64")]
        pub struct $name(u64);

        impl $name {
            pub const ZERO: Self = Self(0);

            /// Builds a quantity, rejecting values above [`QUANTITY_MAX`].
            ///
            /// # Errors
            /// [`QuantityError::Overflow`] above the bound.
            pub const fn new(value: u64) -> Result<Self, QuantityError> {
                if value > QUANTITY_MAX {
                    Err(QuantityError::Overflow)
                } else {
                    Ok(Self(value))
                }
            }

            /// Builds a strictly positive quantity: what a request may carry.
            ///
            /// # Errors
            /// [`QuantityError::Zero`] or [`QuantityError::Overflow`].
            pub const fn positive(value: u64) -> Result<Self, QuantityError> {
                if value == 0 {
                    return Err(QuantityError::Zero);
                }
                Self::new(value)
            }

            /// Parses a signed amount from a request: zero and negative values are refused.
            ///
            /// # Errors
            /// The reason the amount is not a positive quantity.
            pub fn positive_from_i64(value: i64) -> Result<Self, QuantityError> {
                let value = u64::try_from(value).map_err(|_| QuantityError::Negative)?;
                Self::positive(value)
            }

            pub const fn get(self) -> u64 {
                self.0
            }

            /// A compile-time constant; panics at compile time above [`QUANTITY_MAX`].
            pub const fn constant(value: u64) -> Self {
                assert!(value <= QUANTITY_MAX, "quantity constant out of bounds");
                Self(value)
            }

            pub const fn is_zero(self) -> bool {
                self.0 == 0
            }

            /// # Errors
            /// [`QuantityError::Overflow`] when the sum exceeds [`QUANTITY_MAX`].
            pub fn checked_add(self, other: Self) -> Result<Self, QuantityError> {
                self.0.checked_add(other.0).ok_or(QuantityError::Overflow).and_then(Self::new)
            }

            /// # Errors
            /// [`QuantityError::Underflow`] when `other` is larger.
            pub fn checked_sub(self, other: Self) -> Result<Self, QuantityError> {
                self.0.checked_sub(other.0).map(Self).ok_or(QuantityError::Underflow)
            }

            /// Subtraction floored at zero, for the one place the spec asks for it
            /// (a provider balance cannot be negative).
            #[must_use]
            pub fn saturating_sub(self, other: Self) -> Self {
                Self(self.0.saturating_sub(other.0))
            }
        }

        impl TryFrom<u64> for $name {
            type Error = QuantityError;
            fn try_from(value: u64) -> Result<Self, Self::Error> {
                Self::new(value)
            }
        }

        impl From<$name> for u64 {
            fn from(value: $name) -> u64 {
                value.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

quantity!(
    /// Credits a user holds in a wallet and spends on enhancements.
    UserCredits
);
quantity!(
    /// Credits the platform holds at NanoBanana.
    ProviderCredits
);

/// How many provider credits back one user credit (SPEC §1, default 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Ratio(u64);

impl Ratio {
    pub const DEFAULT: Self = Self(4);
    const MAX: u64 = 1_000_000;

    /// # Errors
    /// [`QuantityError::BadRatio`] outside 1..=1 000 000.
    pub const fn new(value: u64) -> Result<Self, QuantityError> {
        if value == 0 || value > Self::MAX {
            Err(QuantityError::BadRatio)
        } else {
            Ok(Self(value))
        }
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The provider credits that back `credits` user credits.
    ///
    /// # Errors
    /// [`QuantityError::Overflow`] when the product exceeds [`QUANTITY_MAX`].
    pub fn backing(self, credits: UserCredits) -> Result<ProviderCredits, QuantityError> {
        credits.get().checked_mul(self.0).ok_or(QuantityError::Overflow).and_then(ProviderCredits::new)
    }

    /// The user credits that `provider` provider credits can back, rounded down.
    pub fn user_credits_backed_by(self, provider: ProviderCredits) -> UserCredits {
        // Division by a non-zero ratio of a bounded value cannot fail or grow.
        UserCredits(provider.get().checked_div(self.0).unwrap_or(0))
    }
}

impl TryFrom<u64> for Ratio {
    type Error = QuantityError;
    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Ratio> for u64 {
    fn from(value: Ratio) -> u64 {
        value.0
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)] // Tests compare against plain u64 arithmetic on bounded inputs.
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn zero_and_negative_amounts_are_refused() {
        assert_eq!(UserCredits::positive(0), Err(QuantityError::Zero));
        assert_eq!(UserCredits::positive_from_i64(-5), Err(QuantityError::Negative));
        assert_eq!(UserCredits::positive_from_i64(7).map(UserCredits::get), Ok(7));
    }

    #[test]
    fn quantities_above_the_json_safe_bound_are_refused() {
        assert_eq!(ProviderCredits::new(QUANTITY_MAX + 1), Err(QuantityError::Overflow));
        let max = ProviderCredits::new(QUANTITY_MAX).expect("the bound itself is allowed");
        assert_eq!(max.checked_add(ProviderCredits(1)), Err(QuantityError::Overflow));
    }

    #[test]
    fn the_ratio_converts_both_ways_rounding_down() {
        let ratio = Ratio::DEFAULT;
        assert_eq!(ratio.backing(UserCredits(100)), Ok(ProviderCredits(400)));
        assert_eq!(ratio.user_credits_backed_by(ProviderCredits(938)), UserCredits(234));
        assert_eq!(Ratio::new(0), Err(QuantityError::BadRatio));
    }

    proptest! {
        #[test]
        fn checked_arithmetic_never_leaves_the_bound(a in 0..=QUANTITY_MAX, b in 0..=QUANTITY_MAX) {
            let (a, b) = (UserCredits(a), UserCredits(b));
            match a.checked_add(b) {
                Ok(sum) => prop_assert!(sum.get() <= QUANTITY_MAX && sum.get() == a.get() + b.get()),
                Err(e) => prop_assert_eq!(e, QuantityError::Overflow),
            }
            match a.checked_sub(b) {
                Ok(diff) => prop_assert_eq!(diff.get() + b.get(), a.get()),
                Err(e) => { prop_assert_eq!(e, QuantityError::Underflow); prop_assert!(a < b); }
            }
        }

        #[test]
        fn backing_then_backed_by_is_the_identity(credits in 0..=QUANTITY_MAX / 1000, ratio in 1u64..1000) {
            let ratio = Ratio::new(ratio).expect("in range");
            let provider = ratio.backing(UserCredits(credits)).expect("bounded");
            prop_assert_eq!(ratio.user_credits_backed_by(provider), UserCredits(credits));
        }
    }
}
