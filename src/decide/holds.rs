//! Holds (SPEC §5): created and released here, captured through the
//! wallet (`wallets.rs`), expired by time (`Books::decide_expiries`).

use super::change::{id_from_seq, Decision};
use super::{Books, EngineError, Fingerprint, Now, Prefetched};
use crate::domain::{Caller, HoldId, KeyId, PackageId, ScopedKey, UserCredits, UserId};
use crate::store::records::{EntryKind, GrantEffect, HoldReceipt, HoldRecord, HoldState, Operation, Receipt};

/// The answer to a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseReceipt {
    pub hold_id: HoldId,
    pub user_id: UserId,
    pub credits: UserCredits,
}

impl Books {
    /// Reserves `package_id` for `user` for `ttl_ms`.
    // The command's fields, as the other decisions take theirs.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_hold(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        package_id: &PackageId,
        ttl_ms: u64,
        key: Option<&ScopedKey>,
        fingerprint: Fingerprint,
        owner: &KeyId,
    ) -> Result<Decision<HoldReceipt>, EngineError> {
        if let Some(key) = key {
            match self.check_key(prefetched, Operation::Hold, key, &fingerprint)? {
                Some(Receipt::Hold(receipt)) => return Ok(Decision::Replay(receipt)),
                Some(_) => return Err(EngineError::IdempotencyKeyReused),
                None => {}
            }
        }
        let open = self.holds_per_user.get(user).copied().unwrap_or(0);
        if open >= self.max_open_holds_per_user {
            return Err(EngineError::TooManyHolds(self.max_open_holds_per_user));
        }
        let made = self.holds_per_key.get(owner).copied().unwrap_or(0);
        if made >= self.max_open_holds_per_key {
            return Err(EngineError::TooManyHoldsForKey(self.max_open_holds_per_key));
        }
        let (package, needed) = self.sellable_package(package_id)?;
        let mut change = self.begin(inputs);
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        change.next.holds_total = change.next.holds_total.checked_add(package.credits)?;
        assert!(change.next.reserved <= change.next.provider_balance, "a hold never reserves more than the balance");
        let hold_id = id_from_seq("hold", change.next_seq(), HoldId::parse)?;
        let expires_at_ms =
            change.at_ms.checked_add(ttl_ms).ok_or(EngineError::Quantity(crate::domain::QuantityError::Overflow))?;
        let kind = EntryKind::HoldCreated {
            hold_id: hold_id.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
            expires_at_ms,
        };
        let terms = GrantEffect::HoldTerms { expires_after_days: package.expires_after_days };
        change.record_entry(Some(user), key, Some(owner), kind, None, Some(terms))?;
        change.put_hold(HoldRecord {
            hold_id: hold_id.clone(),
            user: user.clone(),
            package_id: package.id.clone(),
            credits: package.credits,
            price: package.price,
            created_at_ms: change.at_ms,
            expires_at_ms,
            state: HoldState::Open,
            owner: Some(owner.clone()),
            expires_after_days: package.expires_after_days,
        })?;
        let receipt = HoldReceipt {
            hold_id,
            user_id: user.clone(),
            package_id: package.id,
            credits: package.credits,
            expires_at_ms,
        };
        if let Some(key) = key {
            change.remember(Operation::Hold, key, fingerprint, Receipt::Hold(receipt.clone()))?;
        }
        Ok(Decision::Apply(Box::new(change), receipt))
    }

    /// Gives an open hold's capacity back; a second release answers the first.
    pub fn decide_release(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        hold_id: &HoldId,
        by: &Caller,
    ) -> Result<Decision<ReleaseReceipt>, EngineError> {
        let hold = self.finishable_hold(prefetched, user, hold_id, by)?;
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
