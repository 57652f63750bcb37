//! Holds (create, release) and the owners of holds and spends.

use actix::prelude::*;

use super::change::{id_from_seq, outcome_label, Decision, Reply};
use super::Books;
use super::Inputs;
use super::{Fingerprint, InventoryActor};
use crate::actors::EngineError;
use crate::domain::{HoldId, PackageId, ScopedKey, SpendId, UserCredits, UserId};
use crate::store::records::{EntryKind, HoldReceipt, HoldRecord, HoldState, Operation, Receipt};

/// Reserve a package for `user` for `ttl_ms`.
#[derive(Debug)]
pub struct CreateHold {
    pub user: UserId,
    pub package_id: PackageId,
    pub ttl_ms: u64,
    pub key: Option<ScopedKey>,
    pub fingerprint: Fingerprint,
}

impl Message for CreateHold {
    type Result = Result<HoldReceipt, EngineError>;
}

impl Handler<CreateHold> for InventoryActor {
    type Result = Reply<HoldReceipt>;

    fn handle(&mut self, message: CreateHold, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let decision =
            self.books.ensure_ready(&self.inputs()).and_then(|()| self.books.decide_hold(&self.inputs(), &message));
        let decision = self.note_refusal(decision);
        let outcome = outcome_label(&decision);
        metrics::counter!("creditd_holds_total", "operation" => "create", "outcome" => outcome).increment(1);
        self.respond(decision)
    }
}

impl Books {
    pub(super) fn decide_hold(
        &self,
        inputs: &Inputs<'_>,
        message: &CreateHold,
    ) -> Result<Decision<HoldReceipt>, EngineError> {
        if let Some(key) = &message.key {
            match self.check_key(inputs, Operation::Hold, key, &message.fingerprint)? {
                Some(Receipt::Hold(receipt)) => return Ok(Decision::Replay(receipt)),
                Some(_) => return Err(EngineError::IdempotencyKeyReused),
                None => {}
            }
        }
        let open = self.holds_per_user.get(&message.user).copied().unwrap_or(0);
        if open >= self.max_open_holds_per_user {
            return Err(EngineError::TooManyHolds(self.max_open_holds_per_user));
        }
        let (package, needed) = self.sellable_package(&message.package_id)?;
        let mut change = self.begin(inputs);
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        change.next.holds_total = change.next.holds_total.checked_add(package.credits)?;
        assert!(change.next.reserved <= change.next.provider_balance, "a hold never reserves more than the balance");
        let hold_id = id_from_seq("hold", change.next_seq(), HoldId::parse)?;
        let expires_at_ms = change
            .at_ms
            .checked_add(message.ttl_ms)
            .ok_or(EngineError::Quantity(crate::domain::QuantityError::Overflow))?;
        let kind = EntryKind::HoldCreated {
            hold_id: hold_id.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
            expires_at_ms,
        };
        change.record(Some(&message.user), message.key.as_ref(), kind, None)?;
        change.put_hold(HoldRecord {
            hold_id: hold_id.clone(),
            user: message.user.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
            created_at_ms: change.at_ms,
            expires_at_ms,
            state: HoldState::Open,
        })?;
        let receipt = HoldReceipt {
            hold_id,
            user_id: message.user.clone(),
            package_id: package.id,
            credits: package.credits,
            expires_at_ms,
        };
        if let Some(key) = &message.key {
            change.remember(Operation::Hold, key, message.fingerprint, Receipt::Hold(receipt.clone()))?;
        }
        Ok(Decision::Apply(Box::new(change), receipt))
    }
}

/// Give a hold's capacity back.
#[derive(Debug)]
pub struct ReleaseHold {
    pub hold_id: HoldId,
}

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseReceipt {
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub credits: UserCredits,
}

impl Message for ReleaseHold {
    type Result = Result<ReleaseReceipt, EngineError>;
}

impl Handler<ReleaseHold> for InventoryActor {
    type Result = Reply<ReleaseReceipt>;

    fn handle(&mut self, message: ReleaseHold, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let decision = self
            .books
            .ensure_ready(&self.inputs())
            .and_then(|()| self.books.decide_release(&self.inputs(), &message.hold_id));
        let outcome = outcome_label(&decision);
        metrics::counter!("creditd_holds_total", "operation" => "release", "outcome" => outcome).increment(1);
        self.respond(decision)
    }
}

impl Books {
    pub(super) fn decide_release(
        &self,
        inputs: &Inputs<'_>,
        hold_id: &HoldId,
    ) -> Result<Decision<ReleaseReceipt>, EngineError> {
        let hold = self.hold(inputs, hold_id)?;
        let receipt =
            ReleaseReceipt { hold_id: hold.hold_id.clone(), user_id: hold.user.clone(), credits: hold.credits };
        let mut change = self.begin(inputs);
        match hold.state {
            HoldState::Released => return Ok(Decision::Replay(receipt)),
            HoldState::Captured(_) => return Err(EngineError::HoldCaptured),
            HoldState::Expired => return Err(EngineError::HoldExpired),
            HoldState::Open if self.is_due(&hold.hold_id, change.monotonic_ms) => return Err(EngineError::HoldExpired),
            HoldState::Open => {}
        }
        change.next.holds_total = change.next.holds_total.checked_sub(hold.credits)?;
        change.next.reserved = change.next.reserved.checked_sub(self.ratio.backing(hold.credits)?)?;
        let kind = EntryKind::HoldReleased { hold_id: hold.hold_id.clone(), credits: hold.credits };
        change.record(Some(&hold.user), None, kind, None)?;
        change.put_hold(HoldRecord { state: HoldState::Released, ..hold })?;
        Ok(Decision::Apply(Box::new(change), receipt))
    }
}

/// Whose hold is this? The engine asks before routing a capture to a wallet.
#[derive(Debug)]
pub struct HoldOwner(pub HoldId);

impl Message for HoldOwner {
    type Result = Result<UserId, EngineError>;
}

impl Handler<HoldOwner> for InventoryActor {
    type Result = Result<UserId, EngineError>;

    fn handle(&mut self, message: HoldOwner, _: &mut Self::Context) -> Self::Result {
        Ok(self.books.hold(&self.inputs(), &message.0)?.user)
    }
}

/// Whose spend is this? The engine asks before routing a refund to a wallet.
#[derive(Debug)]
pub struct SpendOwner(pub SpendId);

impl Message for SpendOwner {
    type Result = Result<UserId, EngineError>;
}

impl Handler<SpendOwner> for InventoryActor {
    type Result = Result<UserId, EngineError>;

    fn handle(&mut self, message: SpendOwner, _: &mut Self::Context) -> Self::Result {
        let spend = self.store.spend(&message.0)?.ok_or_else(|| EngineError::UnknownSpend(message.0.clone()))?;
        Ok(spend.user)
    }
}

// ---------------------------------------------------------------------------
// What can be sold now.
