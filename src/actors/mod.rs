//! The actors of creditd (SPEC §10) and the errors their messages answer.
//!
//! - [`wallet::WalletActor`]: one per active user; keeps the user's
//!   requests in order, loads the wallet and reads what each decision about
//!   the user needs, then hands the command to the inventory.
//! - [`inventory::InventoryActor`] owns the books (`crate::decide::Books`:
//!   the provider balance, `reserved`, the ledger sequence, what is in
//!   flight); it decides every change with what it is handed, never reading
//!   the store, and hands the change to the commit loop.
//! - [`sync::SyncActor`] fetches the real provider balance.
//! - [`alert::AlertActor`] owns the alerts; [`webhook::WebhookActor`] delivers them.
//! - [`prune::PruneActor`] forgets idempotency records past their retention.

pub mod alert;
pub mod backoff;
pub mod inventory;
pub mod prune;
pub mod setup;
pub mod sync;
pub mod wallet;
pub mod webhook;

pub use crate::decide::EngineError;

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
