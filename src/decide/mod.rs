//! The decisions, as a state machine apart from every actor and store
//! (TigerBeetle's shape: prefetch, then execute).
//!
//! [`Books`] is the state every decision reads and changes. A decision
//! takes the books, a command, what was read for it beforehand
//! ([`Prefetched`]) and the time ([`Now`]), and gives a [`Change`] (the next
//! state, its ledger entries and its writes as typed records) and the
//! answer, or a refusal, or [`Decision::Refetch`] when a prefetched record
//! may have moved since it was read ([`settled`]). Nothing here does IO,
//! waits, sends a message, or knows how a store lays out its keys: the
//! wallet actors fetch, the inventory actor sequences ([`Books::adopt`] once
//! a change is queued, [`Books::settle`] once it is durable), and the
//! store writes.
//!
//! Files: `books.rs` (the state and what every decision shares),
//! `wallets.rs` (purchase, capture, spend, refund), `holds.rs` (create,
//! release, expire), `spends.rs` (complete, by the service or by time),
//! `operators.rs` (provider sync, kill switch, packages), `api_keys.rs`,
//! `settled.rs` (the check of prefetched records), `change.rs`, `error.rs`.

mod api_keys;
mod books;
mod change;
mod error;
mod grants;
mod holds;
pub mod memory;
mod operators;
pub mod settled;
mod spends;
mod wallets;

pub use api_keys::{CreateApiKey, KeyBook, RevokeApiKey};
pub use books::{Books, Recovered, Rules};
pub use change::{outcome_label, Change, Consumption, Decision, KeyInFlight};
pub use error::EngineError;
pub use grants::granted_by;
pub use holds::ReleaseReceipt;
pub use operators::{ApplySync, PurchasesState, SetPurchasesEnabled, SyncOutcome, SyncToken, UpdatePackage};
pub use settled::Touched;

use std::sync::Arc;

use crate::domain::{Caller, GrantId, HoldId, KeyId, PackageId, Reason, ScopedKey, SpendId, UserCredits, UserId};
use crate::store::records::{
    CaptureReceipt, CompletionReceipt, GrantReceipt, HoldReceipt, HoldRecord, IdempotencyRecord, LedgerEntry,
    Operation, PurchaseReceipt, RefundReceipt, SpendReceipt, SpendRecord, VoidReceipt, WalletRecord,
};

/// A SHA-256 fingerprint of a canonical request.
pub type Fingerprint = [u8; 32];

/// What a decision reads besides the books, its command and its prefetched records.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Wall time, for the ledger and for people.
    pub now_ms: u64,
    /// Monotonic time, for deadlines.
    pub monotonic_ms: u64,
    /// Storage has not failed.
    pub writable: bool,
    /// The provider has been synced once since start.
    pub synced: bool,
}

/// A command about one user, decided by the inventory with what that
/// user's wallet actor read for it ([`UserCommand::needs`]).
#[derive(Debug, Clone)]
pub enum UserCommand {
    Purchase {
        package_id: PackageId,
        key: ScopedKey,
        fingerprint: Fingerprint,
    },
    Spend {
        credits: UserCredits,
        reason: Option<Reason>,
        key: ScopedKey,
        fingerprint: Fingerprint,
    },
    Capture {
        hold_id: HoldId,
        by: Caller,
    },
    Refund {
        spend_id: SpendId,
        by: Caller,
    },
    /// `owner`: the API key that makes the hold, and alone (with admin keys)
    /// may capture or release it.
    Hold {
        package_id: PackageId,
        ttl_ms: u64,
        key: Option<ScopedKey>,
        fingerprint: Fingerprint,
        owner: KeyId,
    },
    Release {
        hold_id: HoldId,
        by: Caller,
    },
    Complete {
        spend_id: SpendId,
        by: Caller,
    },
    /// An admin's promotional grant (SPEC §13).
    Grant {
        credits: UserCredits,
        expires_at_ms: Option<u64>,
        reason: Reason,
        key: ScopedKey,
        fingerprint: Fingerprint,
    },
    /// An admin's void of one grant; `origin` is the ledger entry its id
    /// names, read to route it to its user.
    Void {
        grant: GrantId,
        reason: Reason,
        origin: Option<Arc<LedgerEntry>>,
    },
    /// The expiry sweep: close the user's grants past their `expiresAt`.
    ExpireGrants,
}

/// What a command needs read before it is decided.
#[derive(Debug, Clone, Copy)]
pub struct Needs<'a> {
    /// The user's wallet (the commands that move it).
    pub wallet: bool,
    pub key: Option<(Operation, &'a ScopedKey)>,
    pub hold: Option<&'a HoldId>,
    pub spend: Option<&'a SpendId>,
}

impl UserCommand {
    /// What must be read before the command is decided.
    pub fn needs(&self) -> Needs<'_> {
        let none = Needs { wallet: false, key: None, hold: None, spend: None };
        match self {
            Self::Purchase { key, .. } => Needs { wallet: true, key: Some((Operation::Purchase, key)), ..none },
            Self::Spend { key, .. } => Needs { wallet: true, key: Some((Operation::Spend, key)), ..none },
            Self::Capture { hold_id, .. } => Needs { wallet: true, hold: Some(hold_id), ..none },
            Self::Refund { spend_id, .. } => Needs { wallet: true, spend: Some(spend_id), ..none },
            Self::Hold { key, .. } => Needs { key: key.as_ref().map(|key| (Operation::Hold, key)), ..none },
            Self::Release { hold_id, .. } => Needs { hold: Some(hold_id), ..none },
            Self::Complete { spend_id, .. } => Needs { spend: Some(spend_id), ..none },
            Self::Grant { key, .. } => Needs { wallet: true, key: Some((Operation::Grant, key)), ..none },
            Self::Void { .. } | Self::ExpireGrants => Needs { wallet: true, ..none },
        }
    }
}

/// What a wallet actor read for a command, and as of when.
#[derive(Debug, Clone, Default)]
pub struct Prefetched {
    /// Every change up to this ledger sequence number was visible in the
    /// store before the reads began.
    pub seen: u64,
    /// The user's wallet as its actor knows it (`None`: the store has none).
    pub wallet: Option<WalletRecord>,
    /// The stored record of the command's idempotency key.
    pub idempotency: Option<IdempotencyRecord>,
    /// The stored hold or spend the command names.
    pub hold: Option<HoldRecord>,
    pub spend: Option<SpendRecord>,
}

/// The answer to a [`UserCommand`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserReceipt {
    Purchase(PurchaseReceipt),
    Capture(CaptureReceipt),
    Spend(SpendReceipt),
    Refund(RefundReceipt),
    Hold(HoldReceipt),
    Release(ReleaseReceipt),
    Complete(CompletionReceipt),
    Grant(GrantReceipt),
    Void(VoidReceipt),
    /// How many grants the expiry sweep closed.
    Expired(usize),
}

/// Decides `command` for `user` on `books` with what was read for it.
///
/// # Errors
/// The refusal, in the order of SPEC §9.
pub fn decide(
    books: &Books,
    user: &UserId,
    command: &UserCommand,
    prefetched: &Prefetched,
    now: &Now,
) -> Result<Decision<UserReceipt>, EngineError> {
    let decided = books.ensure_ready(now).and_then(|()| match command {
        UserCommand::Purchase { package_id, key, fingerprint } => {
            books.decide_purchase(now, prefetched, user, package_id, key, *fingerprint)
        }
        UserCommand::Spend { credits, reason, key, fingerprint } => {
            books.decide_spend(now, prefetched, user, *credits, reason.clone(), key, *fingerprint)
        }
        UserCommand::Capture { hold_id, by } => books.decide_capture(now, prefetched, user, hold_id, by),
        UserCommand::Refund { spend_id, by } => books.decide_refund(now, prefetched, user, spend_id, by),
        UserCommand::Hold { package_id, ttl_ms, key, fingerprint, owner } => books
            .decide_hold(now, prefetched, user, package_id, *ttl_ms, key.as_ref(), *fingerprint, owner)
            .map(|decision| decision.map(UserReceipt::Hold)),
        UserCommand::Release { hold_id, by } => {
            books.decide_release(now, prefetched, user, hold_id, by).map(|decision| decision.map(UserReceipt::Release))
        }
        UserCommand::Complete { spend_id, by } => books
            .decide_complete(now, prefetched, user, spend_id, by)
            .map(|decision| decision.map(UserReceipt::Complete)),
        UserCommand::Grant { credits, expires_at_ms, reason, key, fingerprint } => books
            .decide_grant(now, prefetched, user, *credits, *expires_at_ms, reason, key, *fingerprint)
            .map(|decision| decision.map(UserReceipt::Grant)),
        UserCommand::Void { grant, reason, origin } => books
            .decide_void(now, prefetched, user, *grant, reason, origin.as_deref())
            .map(|decision| decision.map(UserReceipt::Void)),
        UserCommand::ExpireGrants => {
            books.decide_expire_grants(now, prefetched, user).map(|decision| decision.map(UserReceipt::Expired))
        }
    });
    match decided {
        Err(EngineError::Stale) => Ok(Decision::Refetch),
        other => other,
    }
}
#[cfg(test)]
mod tests;
