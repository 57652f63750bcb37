//! Why a decision refused, or why the engine could not perform an
//! operation: each variant becomes an HTTP status and error code in
//! `http::error`, and nowhere else.

use crate::domain::{GrantId, HoldId, KeyId, PackageId, QuantityError, SpendId};

/// Why the engine refused or could not perform an operation. Each variant is
/// mapped to an HTTP status and error code in `http::error`, and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("not ready: {0}")]
    NotReady(&'static str),
    #[error("unknown package {0}")]
    UnknownPackage(PackageId),
    #[error("unknown user")]
    UnknownUser,
    #[error("unknown hold {0}")]
    UnknownHold(HoldId),
    #[error("unknown spend {0}")]
    UnknownSpend(SpendId),
    #[error("unknown API key {0}")]
    UnknownApiKey(KeyId),
    #[error("unknown grant {0}")]
    UnknownGrant(GrantId),
    #[error("the grant has expired")]
    GrantClosed,
    /// A new grant whose `expiresAt` is not in the future (checked after its
    /// key, so that a retry of a grant made earlier gets its first answer).
    #[error("expiresAt: must be in the future")]
    ExpiryPassed,
    #[error("the hold was captured")]
    HoldCaptured,
    #[error("the hold was released")]
    HoldReleased,
    #[error("the hold expired")]
    HoldExpired,
    #[error("the wallet holds fewer credits than the spend")]
    InsufficientFunds,
    #[error("the spend was already refunded")]
    AlreadyRefunded,
    #[error("the spend is completed: the provider did the work, so it cannot be refunded")]
    SpendCompleted,
    #[error("the provider balance cannot cover the spend")]
    EnhancementUnavailable,
    #[error("package {0} is disabled")]
    PackageDisabled(PackageId),
    #[error("not enough capacity")]
    InsufficientCapacity,
    #[error("purchases are disabled")]
    PurchasesDisabled,
    #[error("the idempotency key was used for another request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still in flight")]
    IdempotencyKeyInUse,
    #[error("the user already holds {0} open holds, the most allowed")]
    TooManyHolds(u32),
    #[error("this API key already has {0} open holds, the most allowed")]
    TooManyHoldsForKey(u32),
    #[error("amount: {0}")]
    Quantity(#[from] QuantityError),
    /// Storage failed and nothing of this request was applied.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The change was handed to storage, but its durability could not be
    /// confirmed (a failed sync, or a timeout waiting for the commit): it
    /// may or may not be applied; a retry with the same key tells.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    /// A prefetched record may have moved while its command waited: the
    /// wallet actor reads it again ([`super::Decision::Refetch`]). Never an
    /// answer: `decide` turns it into a refetch.
    #[error("a prefetched record moved; read it again")]
    Stale,
}

impl EngineError {
    /// A refusal that names a resource's state (captured, released, expired,
    /// refunded): like a replay, it may only be said once that state is durable.
    pub fn names_a_state(&self) -> bool {
        matches!(
            self,
            Self::HoldCaptured
                | Self::HoldReleased
                | Self::HoldExpired
                | Self::AlreadyRefunded
                | Self::SpendCompleted
                | Self::GrantClosed
        )
    }

    /// A short, stable label for metrics (`outcome="insufficient_capacity"`).
    pub fn label(&self) -> &'static str {
        match self {
            Self::NotReady(_) => "not_ready",
            Self::UnknownPackage(_) => "unknown_package",
            Self::UnknownUser => "unknown_user",
            Self::UnknownHold(_) => "unknown_hold",
            Self::UnknownSpend(_) => "unknown_spend",
            Self::UnknownApiKey(_) => "unknown_api_key",
            Self::UnknownGrant(_) => "unknown_grant",
            Self::GrantClosed => "grant_closed",
            Self::ExpiryPassed => "invalid_request",
            Self::HoldCaptured => "hold_captured",
            Self::HoldReleased => "hold_released",
            Self::HoldExpired => "hold_expired",
            Self::InsufficientFunds => "insufficient_funds",
            Self::AlreadyRefunded => "already_refunded",
            Self::SpendCompleted => "spend_completed",
            Self::EnhancementUnavailable => "enhancement_unavailable",
            Self::PackageDisabled(_) => "package_disabled",
            Self::InsufficientCapacity => "insufficient_capacity",
            Self::PurchasesDisabled => "purchases_disabled",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::IdempotencyKeyInUse => "idempotency_key_in_use",
            Self::TooManyHolds(_) | Self::TooManyHoldsForKey(_) => "too_many_holds",
            Self::Quantity(_) => "invalid_amount",
            Self::Storage(_) => "storage_failed",
            Self::OutcomeUnknown(_) => "outcome_unknown",
            Self::Overloaded(_) => "overloaded",
            Self::Stale => "refetch",
        }
    }
}
