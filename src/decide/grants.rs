//! Grants (SPEC §13) as the decider keeps them: every credit in a wallet
//! belongs to a grant of that wallet ([`WalletRecord::grants`]). Every
//! change to a wallet starts from [`Books::wallet_for_change`], which closes
//! the grants past their `expiresAt` first (a `grantExpired` entry each,
//! `reserved` down) and forgets the ones no refund can reach; the expiry
//! sweep is a change of that alone ([`Books::decide_expire_grants`]).
//! Promotional grants and voids are decided here; purchases, captures,
//! spends and refunds move grants in `wallets.rs`.

use super::change::{Change, Decision};
use super::{Books, EngineError, Fingerprint, Now, Prefetched};
use crate::domain::grants::{self, Closed, Grant};
use crate::domain::{GrantId, GrantKind, Money, Reason, ScopedKey, UserCredits, UserId};
use crate::store::records::{
    legacy_grant, EntryKind, ExpiredDay, GrantEffect, GrantReceipt, LedgerEntry, Operation, Receipt, VoidReceipt,
    WalletRecord,
};
use crate::store::writes::Write;

/// How much longer than a spend stays open a wallet keeps an emptied or
/// expired grant: a refund gives credits back only to grants it still has.
const RETIRE_MARGIN_MS: u64 = 3_600_000;

/// How credits left a wallet with their grant.
#[derive(Debug, Clone, Copy)]
pub(super) enum Removal {
    /// At the grant's `expiresAt` (`at_ms`), which dates them by day.
    Expired {
        breakage: Money,
        at_ms: u64,
    },
    Voided,
}

impl Books {
    /// `user`'s wallet, as the change at hand will leave it (version + 1):
    /// the newest ([`Books::wallet`]), with its grants past their
    /// `expiresAt` closed and those no refund can reach any more forgotten.
    pub(super) fn wallet_for_change(
        &self,
        change: &mut Change,
        prefetched: &Prefetched,
        user: &UserId,
    ) -> Result<WalletRecord, EngineError> {
        let mut wallet = self.wallet(prefetched, user)?;
        wallet.version =
            wallet.version.checked_add(1).ok_or(EngineError::Storage("wallet version exhausted".into()))?;
        self.expire_due(change, user, &mut wallet)?;
        let keep_ms = self.spend_complete_after_ms.saturating_add(RETIRE_MARGIN_MS);
        grants::retire(&mut wallet.grants, change.at_ms, keep_ms);
        Ok(wallet)
    }

    /// Closes the grants of `wallet` past their `expiresAt`, each with a
    /// `grantExpired` entry (SPEC §13).
    fn expire_due(&self, change: &mut Change, user: &UserId, wallet: &mut WalletRecord) -> Result<(), EngineError> {
        for id in grants::due(&wallet.grants, change.at_ms) {
            let Some(grant) = wallet.grants.iter_mut().find(|grant| grant.id() == id) else { continue };
            let expires_at_ms = grant.expires_at_ms.unwrap_or(change.at_ms);
            let credits = grant.close(Closed::Expired { at_ms: expires_at_ms });
            let grant = grant.clone();
            wallet.balance = wallet.balance.checked_sub(credits)?;
            let breakage = grant.revenue_of(credits, change.next.revenue.currency());
            self.take_out(change, grant.kind, credits, Removal::Expired { breakage, at_ms: expires_at_ms })?;
            change.grant_deadline(expires_at_ms, id, user, false, UserCredits::ZERO);
            let kind = EntryKind::GrantExpired { grant_id: id, kind: grant.kind, credits, breakage, expires_at_ms };
            let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
            wallet.note_entry(seq);
        }
        Ok(())
    }

    /// Takes `credits` of a grant of `kind` out of the wallets: `reserved`
    /// loses `ratio ×` them (they return to capacity), and the totals count
    /// them as expired (with their breakage) or voided.
    pub(super) fn take_out(
        &self,
        change: &mut Change,
        kind: GrantKind,
        credits: UserCredits,
        how: Removal,
    ) -> Result<(), EngineError> {
        change.next.reserved = change.next.reserved.checked_sub(self.ratio.backing(credits)?)?;
        change.next.wallets_total = change.next.wallets_total.checked_sub(credits)?;
        self.count_removal(change, kind, credits, how)
    }

    /// Counts credits that left with their grant in the totals (SPEC §13
    /// reports), and out of the promotional credits outstanding.
    pub(super) fn count_removal(
        &self,
        change: &mut Change,
        kind: GrantKind,
        credits: UserCredits,
        how: Removal,
    ) -> Result<(), EngineError> {
        match how {
            Removal::Expired { breakage, at_ms } => {
                // Promotional grants and grants of unknown price earned nothing: a breakage of 0.
                let totals = &mut change.next.grants;
                totals.expired = totals.expired.checked_add(credits)?;
                totals.breakage =
                    totals.breakage.checked_add(breakage).map_err(|_| EngineError::Overloaded("breakage overflow"))?;
                self.count_expired_day(change, at_ms, credits, breakage)?;
            }
            Removal::Voided => change.next.grants.voided = change.next.grants.voided.checked_add(credits)?,
        }
        let totals = &mut change.next.grants;
        if kind == GrantKind::Promotional {
            totals.promotional = totals.promotional.checked_sub(credits)?;
        }
        Ok(())
    }

    /// Adds expired credits to their day's total (`expiredByDay`): the
    /// write carries the day's new total.
    fn count_expired_day(
        &self,
        change: &mut Change,
        at_ms: u64,
        credits: UserCredits,
        breakage: Money,
    ) -> Result<(), EngineError> {
        let day = ExpiredDay::day_of(at_ms);
        let before = change
            .expired_days
            .iter()
            .rev()
            .find(|counted| counted.day == day)
            .or_else(|| self.expired_by_day.get(&day))
            .copied()
            .unwrap_or(ExpiredDay {
                day,
                credits: UserCredits::ZERO,
                breakage: Money::zero(change.next.revenue.currency()),
            });
        let after = ExpiredDay {
            credits: before.credits.checked_add(credits)?,
            breakage: before
                .breakage
                .checked_add(breakage)
                .map_err(|_| EngineError::Overloaded("breakage overflow"))?,
            ..before
        };
        change.expired_days.push(after);
        change.writes.push(Write::ExpiredDay(after));
        Ok(())
    }

    /// Adds `grant` to `wallet` (its credits and, if it expires, its
    /// deadline); the caller moves `reserved` and the totals.
    pub(super) fn add_grant(
        &self,
        change: &mut Change,
        user: &UserId,
        wallet: &mut WalletRecord,
        grant: Grant,
    ) -> Result<(), EngineError> {
        wallet.balance = wallet.balance.checked_add(grant.remaining)?;
        change.next.wallets_total = change.next.wallets_total.checked_add(grant.remaining)?;
        if grant.kind == GrantKind::Promotional {
            change.next.grants.promotional = change.next.grants.promotional.checked_add(grant.remaining)?;
        }
        if let Some(expires_at_ms) = grant.expires_at_ms {
            change.grant_deadline(expires_at_ms, grant.id(), user, true, grant.remaining);
        }
        grants::insert(&mut wallet.grants, grant);
        Ok(())
    }

    /// An admin's promotional grant (SPEC §13): it reserves `ratio ×
    /// credits` like a sale (refused when capacity cannot back it) and
    /// earns no revenue. Idempotent by the caller's key.
    // The command's fields, as the other decisions take theirs.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_grant(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        credits: UserCredits,
        expires_at_ms: Option<u64>,
        reason: &Reason,
        key: &ScopedKey,
        fingerprint: Fingerprint,
    ) -> Result<Decision<GrantReceipt>, EngineError> {
        match self.check_key(prefetched, Operation::Grant, key, &fingerprint)? {
            Some(Receipt::Grant(receipt)) => return Ok(Decision::Replay(receipt)),
            Some(_) => return Err(EngineError::IdempotencyKeyReused),
            None => {}
        }
        let mut change = self.begin(inputs);
        if expires_at_ms.is_some_and(|expires| expires <= change.at_ms) {
            return Err(EngineError::ExpiryPassed);
        }
        let needed = self.capacity().fits(credits)?.ok_or(EngineError::InsufficientCapacity)?;
        let mut wallet = self.wallet_for_change(&mut change, prefetched, user)?;
        change.sale = true;
        change.next.reserved = change.next.reserved.checked_add(needed)?;
        assert!(change.next.reserved <= change.next.provider_balance, "a grant never reserves more than the balance");
        let seq = change.next_seq();
        let grant = Grant::new(seq, GrantKind::Promotional, credits, 0, change.at_ms, expires_at_ms);
        self.add_grant(&mut change, user, &mut wallet, grant)?;
        let kind =
            EntryKind::GrantCreated { kind: GrantKind::Promotional, credits, expires_at_ms, reason: reason.clone() };
        let seq = change.record(Some(user), Some(key), kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        let receipt = GrantReceipt {
            grant_id: GrantId(seq),
            user_id: user.clone(),
            kind: GrantKind::Promotional,
            credits,
            expires_at_ms,
        };
        change.remember(Operation::Grant, key, fingerprint, Receipt::Grant(receipt.clone()))?;
        Ok(Decision::Apply(Box::new(change), receipt))
    }

    /// Voids grant `grant_id` of `user` (SPEC §13): its remaining credits
    /// leave the wallet at once. Voiding it again answers the first void;
    /// an expired grant is `grant_closed`. `origin` is the ledger entry the
    /// id names, read when the grant was routed to its user: it describes a
    /// grant the wallet has forgotten (emptied long ago).
    pub fn decide_void(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        grant_id: GrantId,
        reason: &Reason,
        origin: Option<&LedgerEntry>,
    ) -> Result<Decision<VoidReceipt>, EngineError> {
        let mut change = self.begin(inputs);
        let mut wallet = self.wallet_for_change(&mut change, prefetched, user)?;
        let index = match wallet.grants.iter().position(|grant| grant.id() == grant_id) {
            Some(index) => index,
            None => {
                let grant = origin
                    .and_then(|entry| granted_by(entry, user))
                    .filter(|grant| grant.id() == grant_id)
                    .ok_or(EngineError::UnknownGrant(grant_id))?;
                if grant.expires_at_ms.is_some_and(|expires| expires <= change.at_ms) {
                    return Err(EngineError::GrantClosed);
                }
                // Forgotten while still live: it was emptied, so it had nothing left.
                let forgotten = Grant { remaining: UserCredits::ZERO, ..grant };
                grants::insert(&mut wallet.grants, forgotten);
                wallet
                    .grants
                    .iter()
                    .position(|grant| grant.id() == grant_id)
                    .ok_or(EngineError::UnknownGrant(grant_id))?
            }
        };
        let receipt = |grant: &Grant, voided_at_ms: u64| VoidReceipt {
            grant_id,
            user_id: user.clone(),
            kind: grant.kind,
            credits: grant.credits,
            expires_at_ms: grant.expires_at_ms,
            voided_at_ms,
        };
        let grant = &mut wallet.grants[index];
        match grant.closed {
            Some(Closed::Voided { at_ms }) => return Ok(Decision::Replay(receipt(grant, at_ms))),
            Some(Closed::Expired { .. }) => return Err(EngineError::GrantClosed),
            None => {}
        }
        let at_ms = change.at_ms;
        let credits = grant.close(Closed::Voided { at_ms });
        let grant = grant.clone();
        wallet.balance = wallet.balance.checked_sub(credits)?;
        self.take_out(&mut change, grant.kind, credits, Removal::Voided)?;
        if let Some(expires_at_ms) = grant.expires_at_ms {
            change.grant_deadline(expires_at_ms, grant_id, user, false, UserCredits::ZERO);
        }
        let kind = EntryKind::GrantVoided { grant_id, kind: grant.kind, credits, reason: reason.clone() };
        let seq = change.record(Some(user), None, kind, Some(wallet.balance))?;
        change.put_wallet(user, &mut wallet, seq)?;
        Ok(Decision::Apply(Box::new(change), receipt(&grant, at_ms)))
    }

    /// Closes `user`'s grants past their `expiresAt` (the expiry sweep, for
    /// a wallet no request touches); answers how many closed.
    pub fn decide_expire_grants(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
    ) -> Result<Decision<usize>, EngineError> {
        let mut change = self.begin(inputs);
        let wallet = self.wallet(prefetched, user)?;
        let due = grants::due(&wallet.grants, change.at_ms).len();
        if due == 0 {
            return Ok(Decision::Replay(0));
        }
        let wallet = self.wallet_for_change(&mut change, prefetched, user)?;
        change.write_wallet(user, wallet);
        Ok(Decision::Apply(Box::new(change), due))
    }

    /// The users whose grants have passed their `expiresAt` at `now_ms` and
    /// are not closed yet, at most `limit` of them, soonest first.
    pub fn due_grant_users(&self, now_ms: u64, limit: usize) -> Vec<UserId> {
        let mut users: Vec<UserId> = Vec::new();
        let due = self.grant_deadlines.iter().take_while(|((expires, _), _)| *expires <= now_ms);
        for (_, (user, _)) in due {
            if users.len() >= limit {
                break;
            }
            if !users.contains(user) {
                users.push(user.clone());
            }
        }
        users
    }

    /// The soonest `expiresAt` after `now_ms` of a grant not closed: when
    /// the sweep should look again.
    pub fn next_grant_deadline(&self, now_ms: u64) -> Option<u64> {
        let after = (now_ms.saturating_add(1), GrantId(0));
        self.grant_deadlines.range(after..).next().map(|((expires_at_ms, _), _)| *expires_at_ms)
    }

    /// The credits left in grants not closed that expire within
    /// `within_ms` of `now_ms` (the metrics' credits expiring soon).
    pub fn expiring_within(&self, now_ms: u64, within_ms: u64) -> UserCredits {
        let until = now_ms.saturating_add(within_ms);
        self.grant_deadlines
            .range((now_ms, GrantId(0))..(until, GrantId(0)))
            .fold(UserCredits::ZERO, |total, (_, (_, remaining))| total.checked_add(*remaining).unwrap_or(total))
    }
}

/// The grant ledger entry `entry` made for `user`, as it was made: a
/// purchase's or a capture's paid grant, an admin's grant, the grant a
/// refund of a spend from before grants made, or (for an entry from before
/// grants) the grant a wallet of that time became.
pub fn granted_by(entry: &LedgerEntry, user: &UserId) -> Option<Grant> {
    if entry.user.as_ref() != Some(user) {
        return None;
    }
    let made = |kind, credits, price_minor, expires_at_ms| {
        Grant::new(entry.seq, kind, credits, price_minor, entry.at_ms, expires_at_ms)
    };
    match (&entry.kind, &entry.grants) {
        (EntryKind::Purchase { credits, price, .. } | EntryKind::HoldCaptured { credits, price, .. }, grants) => {
            match grants {
                Some(GrantEffect::Paid { expires_at_ms }) => {
                    Some(made(GrantKind::Paid, *credits, price.minor_units(), *expires_at_ms))
                }
                _ => Some(legacy_grant(entry.seq, entry.wallet_after.unwrap_or(*credits))),
            }
        }
        (EntryKind::Refund { credits, .. }, Some(GrantEffect::Paid { expires_at_ms })) => {
            Some(made(GrantKind::Paid, *credits, 0, *expires_at_ms))
        }
        (EntryKind::GrantCreated { kind, credits, expires_at_ms, .. }, _) => {
            Some(made(*kind, *credits, 0, *expires_at_ms))
        }
        (EntryKind::Spend { .. } | EntryKind::Refund { .. }, None) => {
            Some(legacy_grant(entry.seq, entry.wallet_after.unwrap_or(UserCredits::ZERO)))
        }
        _ => None,
    }
}
