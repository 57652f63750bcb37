//! The actors of creditd (SPEC §10) and the errors their messages answer.
//!
//! - [`inventory::InventoryActor`] owns the provider balance, `reserved`, the
//!   ledger sequence, the idempotency keys in flight and the hot wallets
//!   (each active user's wallet, newest state, kept while the user is
//!   active); it decides every change and hands it to the commit loop.
//!   SPEC §10's per-user wallet actors were folded into it (issue 16): the
//!   hop through a per-user actor cost a tenth of the server's CPU, and
//!   every wallet change was already serialised here.
//! - [`sync::SyncActor`] fetches the real provider balance.
//! - [`alert::AlertActor`] owns the alerts; [`webhook::WebhookActor`] delivers them.
//! - [`prune::PruneActor`] forgets idempotency records past their retention.

pub mod alert;
pub mod inventory;
pub mod prune;
pub mod setup;
pub mod sync;
pub mod webhook;

use crate::domain::{HoldId, KeyId, PackageId, QuantityError, SpendId};

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
}

impl From<crate::store::StoreError> for EngineError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Overloaded => Self::Overloaded("the commit queue is full"),
            other => Self::Storage(other.to_string()),
        }
    }
}

impl From<crate::store::codec::CodecError> for EngineError {
    fn from(error: crate::store::codec::CodecError) -> Self {
        Self::Storage(error.to_string())
    }
}

impl EngineError {
    /// A refusal that names a resource's state (captured, released, expired,
    /// refunded): like a replay, it may only be said once that state is durable.
    pub fn names_a_state(&self) -> bool {
        matches!(
            self,
            Self::HoldCaptured | Self::HoldReleased | Self::HoldExpired | Self::AlreadyRefunded | Self::SpendCompleted
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
            Self::TooManyHolds(_) => "too_many_holds",
            Self::Quantity(_) => "invalid_amount",
            Self::Storage(_) => "storage_failed",
            Self::OutcomeUnknown(_) => "outcome_unknown",
            Self::Overloaded(_) => "overloaded",
        }
    }
}
