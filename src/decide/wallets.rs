//! Changes to a wallet: purchase, capture, spend, refund, each decided on
//! the newest state of the wallet ([`Books::wallet`]).

use super::change::{id_from_seq, Change, Consumption, Decision};
use super::grants::Removal;
use super::{Books, EngineError, Fingerprint, Now, Prefetched, UserReceipt};
use crate::domain::grants::{self, Closed, Grant};
use crate::domain::{Caller, GrantKind, HoldId, Money, PackageId, Reason, ScopedKey, SpendId, UserCredits, UserId};
use crate::store::records::{
    CaptureReceipt, EntryKind, GrantEffect, HoldRecord, HoldState, Operation, PurchaseReceipt, Receipt, RefundReceipt,
    SpendReceipt, SpendRecord, SpendState, WalletRecord,
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
        let mut change = self.begin(inputs);
        let mut wallet = self.wallet_for_change(&mut change, prefetched, user)?;
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        let expires_at_ms = package.grant_expiry(change.at_ms);
        self.add_paid_grant(&mut change, user, &mut wallet, package.credits, package.price, expires_at_ms)?;
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
        let effect = GrantEffect::Paid { expires_at_ms };
        let seq = change.record_grants(user, Some(key), kind, wallet.balance, effect)?;
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
        let mut wallet = self.wallet_for_change(&mut change, prefetched, user)?;
        change.next.holds_total = change.next.holds_total.checked_sub(hold.credits)?;
        let expires_at_ms = hold.grant_expiry(change.at_ms);
        self.add_paid_grant(&mut change, user, &mut wallet, hold.credits, hold.price, expires_at_ms)?;
        change.next.revenue =
            change.next.revenue.checked_add(hold.price).map_err(|_| EngineError::Overloaded("revenue overflow"))?;
        let kind = EntryKind::HoldCaptured {
            hold_id: hold.hold_id.clone(),
            package_id: hold.package_id.clone(),
            credits: hold.credits,
            price: hold.price,
        };
        let effect = GrantEffect::Paid { expires_at_ms };
        let seq = change.record_grants(user, None, kind, wallet.balance, effect)?;
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
        if !self.has_wallet(prefetched, user)? {
            return Err(EngineError::UnknownUser);
        }
        let mut change = self.begin(inputs);
        let mut wallet = self.wallet_for_change(&mut change, prefetched, user)?;
        let draws =
            grants::draw(&mut wallet.grants, credits, change.at_ms).map_err(|_| EngineError::InsufficientFunds)?;
        wallet.balance = wallet.balance.checked_sub(credits).map_err(|_| EngineError::InsufficientFunds)?;
        let provider = self.ratio.backing(credits)?;
        if provider > self.state.provider_balance {
            return Err(EngineError::EnhancementUnavailable);
        }
        let promotional = drawn_from(&wallet, &draws, GrantKind::Promotional)?;
        change.next.grants.promotional = change.next.grants.promotional.checked_sub(promotional)?;
        change.next.provider_balance = change.next.provider_balance.checked_sub(provider)?;
        change.next.reserved = change.next.reserved.checked_sub(provider)?;
        change.next.wallets_total = change.next.wallets_total.checked_sub(credits)?;
        change.next.consumed_total = change.next.consumed_total.checked_add(provider)?;
        change.next.open_spends = change.next.open_spends.checked_add(credits)?;
        change.consumption = Consumption::Spent(provider);
        let spend_id = id_from_seq("spend", change.next_seq(), SpendId::parse)?;
        let kind = EntryKind::Spend { spend_id: spend_id.clone(), credits, reason };
        let seq = change.record_grants(user, Some(key), kind, wallet.balance, GrantEffect::Drew(draws.clone()))?;
        change.put_wallet(user, &mut wallet, seq)?;
        change.put_spend(SpendRecord {
            spend_id: spend_id.clone(),
            user: user.clone(),
            credits,
            seq,
            created_at_ms: change.at_ms,
            state: SpendState::Open,
            owner: Some(key.caller.clone()),
            draws: Some(draws),
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
        let provider = self.ratio.backing(spend.credits)?;
        let mut change = self.begin(inputs);
        let mut wallet = self.wallet_for_change(&mut change, prefetched, user)?;
        change.next.provider_balance = change.next.provider_balance.checked_add(provider)?;
        change.next.reserved = change.next.reserved.checked_add(provider)?;
        let effect = self.give_back(&mut change, user, &mut wallet, &spend)?;
        change.next.consumed_total = change.next.consumed_total.saturating_sub(provider);
        change.next.open_spends = change.next.open_spends.checked_sub(spend.credits)?;
        // Made before the last sync: that sync held it back, and the refund
        // gives back exactly that (SPEC §6).
        if self.state.last_sync.is_some_and(|sync| spend.seq < sync.seq) {
            change.next.held_back = change.next.held_back.checked_sub(provider)?;
        }
        change.consumption = Consumption::Refunded(provider);
        let kind = EntryKind::Refund { spend_id: spend_id.clone(), credits: spend.credits };
        let seq = change.record_grants(user, None, kind, wallet.balance, effect)?;
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

    /// Adds the paid grant of a purchase or a capture (SPEC §13) to
    /// `wallet`: `grant_{seq}` of the entry about to be recorded.
    fn add_paid_grant(
        &self,
        change: &mut Change,
        user: &UserId,
        wallet: &mut WalletRecord,
        credits: UserCredits,
        price: Money,
        expires_at_ms: Option<u64>,
    ) -> Result<(), EngineError> {
        let grant =
            Grant::new(change.next_seq(), GrantKind::Paid, credits, price.minor_units(), change.at_ms, expires_at_ms);
        self.add_grant(change, user, wallet, grant)
    }

    /// Gives a refunded spend's credits back to the grants it drew from
    /// (SPEC §13); what goes back to a grant closed meanwhile leaves the
    /// wallet again at once, counted as expired or voided, and its provider
    /// credits return to capacity. A spend from before grants gives its
    /// credits back as a new never-expiring paid grant of no price.
    fn give_back(
        &self,
        change: &mut Change,
        user: &UserId,
        wallet: &mut WalletRecord,
        spend: &SpendRecord,
    ) -> Result<GrantEffect, EngineError> {
        let Some(draws) = &spend.draws else {
            let price = Money::zero(change.next.revenue.currency());
            self.add_paid_grant(change, user, wallet, spend.credits, price, None)?;
            return Ok(GrantEffect::Paid { expires_at_ms: None });
        };
        let given = grants::give_back(&mut wallet.grants, draws).map_err(|_| {
            EngineError::Storage(format!("{} drew from grants its wallet no longer has", spend.spend_id))
        })?;
        for back in &given {
            let kind = wallet.grants.iter().find(|grant| grant.seq == back.grant).map_or(GrantKind::Paid, |g| g.kind);
            match back.left_again {
                None => {
                    wallet.balance = wallet.balance.checked_add(back.credits)?;
                    change.next.wallets_total = change.next.wallets_total.checked_add(back.credits)?;
                    if kind == GrantKind::Promotional {
                        change.next.grants.promotional = change.next.grants.promotional.checked_add(back.credits)?;
                    }
                }
                Some(closed) => {
                    // Back into the wallet and out again: `reserved` loses what the refund gave it.
                    change.next.reserved = change.next.reserved.checked_sub(self.ratio.backing(back.credits)?)?;
                    let how = match closed {
                        Closed::Expired { at_ms } => {
                            let grant = wallet.grants.iter().find(|grant| grant.seq == back.grant);
                            let currency = change.next.revenue.currency();
                            let breakage =
                                grant.map_or(Money::zero(currency), |g| g.revenue_of(back.credits, currency));
                            Removal::Expired { breakage, at_ms }
                        }
                        Closed::Voided { .. } => Removal::Voided,
                    };
                    // The promotional credits outstanding never counted them back in.
                    let counted = if kind == GrantKind::Promotional { GrantKind::Paid } else { kind };
                    self.count_removal(change, counted, back.credits, how)?;
                }
            }
        }
        Ok(GrantEffect::GaveBack(given))
    }
}

/// The credits `draws` took from grants of `kind` in `wallet`.
fn drawn_from(wallet: &WalletRecord, draws: &[grants::Draw], kind: GrantKind) -> Result<UserCredits, EngineError> {
    let mut of_kind =
        draws.iter().filter(|draw| wallet.grants.iter().any(|grant| grant.seq == draw.grant && grant.kind == kind));
    Ok(of_kind.try_fold(UserCredits::ZERO, |total, draw| total.checked_add(draw.credits))?)
}
