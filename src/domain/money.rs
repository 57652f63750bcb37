//! Money: integer minor units with an ISO 4217 currency code (SPEC §2).

use serde::{Deserialize, Serialize};
use std::fmt;

use super::credits::QUANTITY_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency must be three upper-case letters (ISO 4217)")]
    BadCurrency,
    #[error("amounts in different currencies cannot be added")]
    CurrencyMismatch,
    #[error("amount exceeds the largest allowed value")]
    Overflow,
}

/// An ISO 4217 code such as `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Self = Self(*b"EUR");

    /// # Errors
    /// [`MoneyError::BadCurrency`] unless three ASCII upper-case letters.
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let bytes: [u8; 3] = code.as_bytes().try_into().map_err(|_| MoneyError::BadCurrency)?;
        if bytes.iter().all(u8::is_ascii_uppercase) {
            Ok(Self(bytes))
        } else {
            Err(MoneyError::BadCurrency)
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII upper-case letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money in minor units (cents).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    minor_units: u64,
    currency: Currency,
}

impl Money {
    /// # Errors
    /// [`MoneyError::Overflow`] above the JSON-safe bound.
    pub const fn new(minor_units: u64, currency: Currency) -> Result<Self, MoneyError> {
        if minor_units > QUANTITY_MAX {
            return Err(MoneyError::Overflow);
        }
        Ok(Self { minor_units, currency })
    }

    pub const fn zero(currency: Currency) -> Self {
        Self { minor_units: 0, currency }
    }

    pub const fn minor_units(self) -> u64 {
        self.minor_units
    }

    pub const fn currency(self) -> Currency {
        self.currency
    }

    /// # Errors
    /// A currency mismatch or an overflow.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch);
        }
        let sum = self.minor_units.checked_add(other.minor_units).ok_or(MoneyError::Overflow)?;
        Self::new(sum, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert_eq!(Currency::parse("EUR"), Ok(Currency::EUR));
        assert_eq!(Currency::parse("eur"), Err(MoneyError::BadCurrency));
        assert_eq!(Currency::parse("EURO"), Err(MoneyError::BadCurrency));
    }

    #[test]
    fn different_currencies_do_not_add() {
        let eur = Money::new(999, Currency::EUR).expect("small");
        let usd = Money::new(1, Currency::parse("USD").expect("valid")).expect("small");
        assert_eq!(eur.checked_add(usd), Err(MoneyError::CurrencyMismatch));
        assert_eq!(eur.checked_add(eur).map(Money::minor_units), Ok(1998));
    }
}
