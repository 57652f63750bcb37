//! Identifiers that arrive from the outside: user ids, package ids and
//! idempotency keys. Each is validated once, when it is parsed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} bytes")]
    TooLong { max: usize },
    #[error("must contain only printable characters")]
    NotPrintable,
}

/// Printable: no control characters (this also refuses NUL, newlines and
/// escape sequences that would corrupt logs or the ledger export).
fn validate(value: &str, max_bytes: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > max_bytes {
        return Err(IdError::TooLong { max: max_bytes });
    }
    if value.chars().any(char::is_control) {
        return Err(IdError::NotPrintable);
    }
    Ok(())
}

macro_rules! identifier {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The largest length in bytes.
            pub const BYTES_MAX: usize = $max;

            /// # Errors
            /// The rule the value breaks.
            pub fn parse(value: &str) -> Result<Self, IdError> {
                validate(value, Self::BYTES_MAX)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                validate(&value, Self::BYTES_MAX)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
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

identifier!(
    /// A storefront user (1–128 printable bytes).
    UserId,
    128
);
identifier!(
    /// A package of the catalogue (1–128 printable bytes).
    PackageId,
    128
);
identifier!(
    /// A client's `Idempotency-Key` header (1–255 printable bytes, SPEC §9).
    IdempotencyKey,
    255
);
identifier!(
    /// A hold, as named in `/api/credits/holds/{id}/...`.
    HoldId,
    128
);
identifier!(
    /// A spend, as named in `/api/credits/spend/{id}/refund`.
    SpendId,
    128
);
identifier!(
    /// Why credits were spent, as the enhancement service says (at most 256 bytes).
    Reason,
    256
);
identifier!(
    /// An API key's id (`key_…`), as named in `/api/admin/keys/{id}`; never the key itself.
    KeyId,
    128
);
identifier!(
    /// An API key's name, as the operator who made it called it (at most 128 bytes).
    KeyName,
    128
);

/// An `Idempotency-Key` as one caller sent it (SPEC §9.1): the same key from
/// two API keys is two operations, and no caller can replay or block
/// another's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopedKey {
    /// The API key that sent it.
    pub caller: KeyId,
    pub key: IdempotencyKey,
}

impl ScopedKey {
    pub fn new(caller: KeyId, key: IdempotencyKey) -> Self {
        Self { caller, key }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_user_id_of_128_bytes_is_accepted_and_129_refused() {
        assert!(UserId::parse(&"u".repeat(128)).is_ok());
        assert_eq!(UserId::parse(&"u".repeat(129)), Err(IdError::TooLong { max: 128 }));
    }

    #[test]
    fn empty_and_control_characters_are_refused() {
        assert_eq!(PackageId::parse(""), Err(IdError::Empty));
        assert_eq!(UserId::parse("a\nb"), Err(IdError::NotPrintable));
        assert_eq!(UserId::parse("a\u{0}"), Err(IdError::NotPrintable));
        assert!(UserId::parse("élodie@example.com").is_ok());
    }

    #[test]
    fn idempotency_keys_may_be_255_bytes() {
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    proptest! {
        #[test]
        fn whatever_parses_round_trips_and_respects_the_rules(s in any::<String>()) {
            if let Ok(id) = UserId::parse(&s) {
                prop_assert!(!id.as_str().is_empty() && id.as_str().len() <= 128);
                prop_assert!(!id.as_str().chars().any(char::is_control));
                prop_assert_eq!(id.as_str(), s.as_str());
            }
        }
    }
}
