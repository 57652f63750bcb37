//! Changes to a wallet: purchase, capture, spend, refund, each decided on
//! the newest state of the wallet ([`Books::wallet`]).

use super::change::{credited, debited, id_from_seq, Consumption, Decision};
use super::{Books, EngineError, Fingerprint, Now, Prefetched, UserReceipt};
use crate::domain::{Caller, HoldId, PackageId, Reason, ScopedKey, SpendId, UserCredits, UserId};
use crate::store::records::{
    CaptureReceipt, EntryKind, HoldRecord, HoldState, Operation, PurchaseReceipt, Receipt, RefundReceipt, SpendReceipt,
    SpendRecord, SpendState,
};

impl Books {
    pub fn decide_purchase(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        package_id: &PackageId,
        key: &ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<Decision<UserReceipt>, EngineError> {
        match self.check_key(prefetched, Operation::Purchase, key, &fingerprint)? {
            Some(Receipt::Purchase(receipt)) => return Ok(Decision::Replay(UserReceipt::Purchase(receipt))),
            Some(_) => return Err(EngineError::IdempotencyKeyReused),
            None => {}
        }
        let (package, needed) = self.sellable_package(package_id)?;
        let mut wallet = credited(self.wallet(prefetched, user)?, package.credits)?;
        let mut change = self.begin(inputs);
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(package.credits)?;
        change.next.revenue =
            change.next.revenue.checked_add(package.price).map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        assert!(change.next.reserved <= change.next.provider_balance, "a sale never reserves more than the balance");
        let purchase_id = format!("pur_{}", change.next_seq());
        let kind = EntryKind::Purchase {
            purchase_id: purchase_id.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
        };
        let seq = change.record(Some(user), Some(key), kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = PurchaseReceipt {
            purchase_id,
            user_id: user.clone(),
            package_id: package.id,
            credits: package.credits,
            balance: wallet.balance,
        };
        change.remember(Operation::Purchase, key, fingerprint, Receipt::Purchase(receipt.clone()))?;
        Ok(Decision::Apply(Box::new(change), UserReceipt::Purchase(receipt)))
    }

    pub fn decide_capture(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        hold_id: &HoldId,
        by: &Caller,
    ) -> Result<Decision<UserReceipt>, EngineError> {
        let hold = self.finishable_hold(prefetched, user, hold_id, by)?;
        let mut change = self.begin(inputs);
        match &hold.state {
            HoldState::Captured(receipt) => return Ok(Decision::Replay(UserReceipt::Capture(receipt.clone()))),
            HoldState::Released => return Err(EngineError::HoldReleased),
            HoldState::Expired => return Err(EngineError::HoldExpired),
            HoldState::Open if self.is_due(&hold.hold_id, change.monotonic_ms) => return Err(EngineError::HoldExpired),
            HoldState::Open => {}
        }
        let mut wallet = credited(self.wallet(prefetched, user)?, hold.credits)?;
        change.next.holds_total = change.next.holds_total.checked_sub(hold.credits)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(hold.credits)?;
        change.next.revenue =
            change.next.revenue.checked_add(hold.price).map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        let kind = EntryKind::HoldCaptured {
            hold_id: hold.hold_id.clone(),
            package_id: hold.package_id.clone(),
            credits: hold.credits,
            price: hold.price,
        };
        let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = CaptureReceipt {
            hold_id: hold.hold_id.clone(),
            user_id: user.clone(),
            package_id: hold.package_id.clone(),
            credits: hold.credits,
            balance: wallet.balance,
        };
        change.put_hold(HoldRecord { state: HoldState::Captured(receipt.clone()), ..hold })?;
        Ok(Decision::Apply(Box::new(change), UserReceipt::Capture(receipt)))
    }

    // The command's fields, as the other decisions take theirs.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_spend(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        credits: UserCredits,
        reason: Option<Reason>,
        key: &ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<Decision<UserReceipt>, EngineError> {
        match self.check_key(prefetched, Operation::Spend, key, &fingerprint)? {
            Some(Receipt::Spend(receipt)) => return Ok(Decision::Replay(UserReceipt::Spend(receipt))),
            Some(_) => return Err(EngineError::IdempotencyKeyReused),
            None => {}
        }
        let wallet = self.wallet(prefetched, user)?;
        if wallet.version == 0 {
            return Err(EngineError::UnknownUser);
        }
        let mut wallet = debited(wallet, credits)?;
        let provider = self.ratio.backing(credits)?;
        if provider > self.state.provider_balance {
            return Err(EngineError::EnhancementUnavailable);
        }
        let mut change = self.begin(inputs);
        change.next.provider_balance = change.next.provider_balance.checked_sub(provider)?;
        change.next.reserved = change.next.reserved.checked_sub(provider)?;
        change.next.wallets_total = change.next.wallets_total.checked_sub(credits)?;
        change.next.consumed_total = change.next.consumed_total.checked_add(provider)?;
        change.next.open_spends = change.next.open_spends.checked_add(credits)?;
        change.consumption = Consumption::Spent(provider);
        let spend_id = id_from_seq("spend", change.next_seq(), SpendId::parse)?;
        let kind = EntryKind::Spend { spend_id: spend_id.clone(), credits, reason };
        let seq = change.record(Some(user), Some(key), kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        change.put_spend(SpendRecord {
            spend_id: spend_id.clone(),
            user: user.clone(),
            credits,
            seq,
            created_at_ms: change.at_ms,
            state: SpendState::Open,
            owner: Some(key.caller.clone()),
        });
        let receipt = SpendReceipt { spend_id, user_id: user.clone(), credits, balance: wallet.balance };
        change.remember(Operation::Spend, key, fingerprint, Receipt::Spend(receipt.clone()))?;
        Ok(Decision::Apply(Box::new(change), UserReceipt::Spend(receipt)))
    }

    pub fn decide_refund(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        spend_id: &SpendId,
        by: &Caller,
    ) -> Result<Decision<UserReceipt>, EngineError> {
        let spend = self.finishable_spend(prefetched, user, spend_id, by)?;
        match spend.state {
            SpendState::Refunded(_) => return Err(EngineError::AlreadyRefunded),
            SpendState::Completed { .. } => return Err(EngineError::SpendCompleted),
            SpendState::Open if self.spend_is_due(spend_id, inputs.monotonic_ms) => {
                return Err(EngineError::SpendCompleted)
            }
            SpendState::Open => {}
        }
        let mut wallet = credited(self.wallet(prefetched, user)?, spend.credits)?;
        let provider = self.ratio.backing(spend.credits)?;
        let mut change = self.begin(inputs);
        change.next.provider_balance = change.next.provider_balance.checked_add(provider)?;
        change.next.reserved = change.next.reserved.checked_add(provider)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(spend.credits)?;
        change.next.consumed_total = change.next.consumed_total.saturating_sub(provider);
        change.next.open_spends = change.next.open_spends.checked_sub(spend.credits)?;
        // Made before the last sync: that sync held it back, and the refund
        // gives back exactly that (SPEC §6).
        if self.state.last_sync.is_some_and(|sync| spend.seq < sync.seq) {
            change.next.held_back = change.next.held_back.checked_sub(provider)?;
        }
        change.consumption = Consumption::Refunded(provider);
        let kind = EntryKind::Refund { spend_id: spend_id.clone(), credits: spend.credits };
        let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = RefundReceipt {
            spend_id: spend_id.clone(),
            user_id: user.clone(),
            credits: spend.credits,
            balance: wallet.balance,
        };
        change.put_spend(SpendRecord { state: SpendState::Refunded(receipt.clone()), ..spend });
        Ok(Decision::Apply(Box::new(change), UserReceipt::Refund(receipt)))
    }
}
