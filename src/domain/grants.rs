//! Credit grants (SPEC §13): every credit in a wallet belongs to a grant,
//! and a wallet's balance is the sum of its grants' remaining credits.
//!
//! This module is the arithmetic of one user's grants, with no IO: the burn
//! order a spend draws in ([`draw`]), a refund back into the grants a spend
//! drew from ([`give_back`]), and what leaves at an expiry or a void
//! ([`Grant::close`]). The decider keeps the grants and writes what these
//! functions decide.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Currency, Money, QuantityError, UserCredits};

/// A grant's id: `grant_` and the ledger sequence number of the entry that
/// made it (a purchase, a capture, or an admin's `grantCreated`), so the id
/// orders grants by age and names the entry that tells whose grant it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GrantId(pub u64);

/// Not a grant id (`grant_` and a sequence number).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a grant id is grant_ and a number")]
pub struct BadGrantId;

impl GrantId {
    /// # Errors
    /// [`BadGrantId`] for anything but `grant_` and a positive number
    /// without leading zeros.
    pub fn parse(value: &str) -> Result<Self, BadGrantId> {
        let digits = value.strip_prefix("grant_").ok_or(BadGrantId)?;
        if digits.is_empty()
            || digits.len() > 19
            || digits.starts_with('0')
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(BadGrantId);
        }
        digits.parse().map(Self).map_err(|_| BadGrantId)
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "grant_{}", self.0)
    }
}

/// How far ahead a wallet's `expiring` (and the gauge of credits expiring
/// soon) looks: seven days (SPEC §13).
pub const EXPIRING_WITHIN_MS: u64 = 7 * super::DAY_MS;

/// A grant's deadline, opened (`open`) or closed by a change: the store
/// keeps the open ones, so that the books know at start whose grants will
/// expire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantDeadline {
    pub expires_at_ms: u64,
    pub grant: GrantId,
    pub user: super::UserId,
    pub open: bool,
    /// What the grant has left, for the books' gauge of credits expiring
    /// soon; the stores keep only the deadline (start-up reads the wallet).
    pub remaining: UserCredits,
}

/// Where a grant's credits came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum GrantKind {
    /// A purchase or a captured hold.
    Paid,
    /// Given by an admin (`POST /api/admin/grants`).
    Promotional,
}

impl GrantKind {
    /// The wire name (`paid`, `promotional`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Promotional => "promotional",
        }
    }
}

/// How a grant stopped counting: its remaining credits left the wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Closed {
    Expired { at_ms: u64 },
    Voided { at_ms: u64 },
}

/// One grant of one user, as the decider keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Grant ids are `grant_` and the ledger sequence number of the entry
    /// that made the grant, so the id orders grants by age too.
    pub seq: u64,
    pub kind: GrantKind,
    /// What it granted.
    pub credits: UserCredits,
    /// What is left of it: never below 0, never above `credits`.
    pub remaining: UserCredits,
    /// What the user paid for it, in minor units of the store's currency
    /// (zero for a promotional grant): the revenue its expired credits had
    /// earned is `price × expired / credits`. (No currency per grant: a
    /// wallet is rewritten on every change, and its grants stay small.)
    pub price_minor: u64,
    pub created_at_ms: u64,
    /// `None`: never expires.
    pub expires_at_ms: Option<u64>,
    pub closed: Option<Closed>,
    /// When a spend emptied it or it closed (`None` while it holds
    /// credits): a wallet forgets a settled grant only once no open spend
    /// can still give credits back to it ([`retire`]).
    pub settled_at_ms: Option<u64>,
}

/// The credits a spend took from one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    /// The grant's [`Grant::seq`].
    pub grant: u64,
    pub credits: UserCredits,
}

/// A spend larger than what the user's live grants hold at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the live grants hold {available} credits")]
pub struct NotEnough {
    pub available: UserCredits,
}

impl Grant {
    /// A new, open grant of `credits`, made by the ledger entry `seq` (its
    /// id) at `created_at_ms`, bought for `price_minor` (0 for a
    /// promotional grant).
    pub fn new(
        seq: u64,
        kind: GrantKind,
        credits: UserCredits,
        price_minor: u64,
        created_at_ms: u64,
        expires_at_ms: Option<u64>,
    ) -> Self {
        Grant {
            seq,
            kind,
            credits,
            remaining: credits,
            price_minor,
            created_at_ms,
            expires_at_ms,
            closed: None,
            settled_at_ms: None,
        }
    }

    /// Whether the grant counts at `now_ms`: not closed, and not past its
    /// `expiresAt` (every answer after `expiresAt` reflects the expiry,
    /// before the `grantExpired` entry is written).
    pub fn live(&self, now_ms: u64) -> bool {
        self.closed.is_none() && self.expires_at_ms.is_none_or(|expires| now_ms < expires)
    }

    /// Closes the grant; answers the credits that leave the wallet with it
    /// (0 when it was already closed).
    pub fn close(&mut self, how: Closed) -> UserCredits {
        if self.closed.is_some() {
            return UserCredits::ZERO;
        }
        self.closed = Some(how);
        self.settled_at_ms = Some(match how {
            Closed::Expired { at_ms } | Closed::Voided { at_ms } => at_ms,
        });
        std::mem::replace(&mut self.remaining, UserCredits::ZERO)
    }

    /// Whether it expires by time at `now_ms` but has not been closed yet:
    /// the decision at hand closes it first ([`due`]).
    pub fn is_due(&self, now_ms: u64) -> bool {
        self.closed.is_none() && self.expires_at_ms.is_some_and(|expires| expires <= now_ms)
    }

    pub fn id(&self) -> GrantId {
        GrantId(self.seq)
    }

    /// The revenue `credits` of this grant had earned: its price pro rata,
    /// rounded down, so that the parts of one grant never add up to more
    /// than its price.
    pub fn revenue_of(&self, credits: UserCredits, currency: Currency) -> Money {
        let share = u128::from(self.price_minor)
            .checked_mul(u128::from(credits.get()))
            .and_then(|product| product.checked_div(u128::from(self.credits.get())))
            .and_then(|share| u64::try_from(share).ok())
            .unwrap_or(0);
        Money::new(share.min(self.price_minor), currency).unwrap_or(Money::zero(currency))
    }
}

/// The grants that expire by time at `now_ms` and are not closed yet, in
/// the order of their ids.
pub fn due(grants: &[Grant], now_ms: u64) -> Vec<GrantId> {
    grants.iter().filter(|grant| grant.is_due(now_ms)).map(Grant::id).collect()
}

/// Forgets the grants nothing can change any more: expired, or emptied and
/// never expiring, and untouched for `keep_ms` (longer than any spend stays
/// open, so no refund can still give credits back to them). An emptied
/// grant that will expire is kept until it closes, so that its expiry is
/// written and its deadline forgotten; a voided one is kept for good (voids
/// are rare), so that voiding it again answers the first void.
pub fn retire(grants: &mut Vec<Grant>, now_ms: u64, keep_ms: u64) {
    grants.retain(|grant| {
        let settled = match grant.closed {
            Some(Closed::Expired { .. }) => true,
            Some(Closed::Voided { .. }) => false,
            None => grant.remaining.is_zero() && grant.expires_at_ms.is_none(),
        };
        let quiet = grant.settled_at_ms.is_some_and(|at_ms| at_ms.saturating_add(keep_ms) < now_ms);
        !(settled && quiet)
    });
}

/// The grants a wallet answer shows at `now_ms` (SPEC §13): those with
/// credits left that still count, in the burn order.
pub fn shown(grants: &[Grant], now_ms: u64) -> Vec<&Grant> {
    let mut live: Vec<&Grant> =
        grants.iter().filter(|grant| grant.live(now_ms) && !grant.remaining.is_zero()).collect();
    live.sort_by(|a, b| burn_order(a, b));
    live
}

/// SPEC §13's burn order: the soonest `expiresAt` first (grants that never
/// expire last), `promotional` before `paid` at the same expiry, then the
/// oldest.
pub fn burn_order(a: &Grant, b: &Grant) -> Ordering {
    let expiry = |grant: &Grant| grant.expires_at_ms.unwrap_or(u64::MAX);
    let promotional_first = |grant: &Grant| grant.kind != GrantKind::Promotional;
    expiry(a)
        .cmp(&expiry(b))
        .then_with(|| promotional_first(a).cmp(&promotional_first(b)))
        .then_with(|| a.seq.cmp(&b.seq))
}

/// The credits the live grants hold at `now_ms`: the wallet's balance.
///
/// # Errors
/// An overflow (a bug: every quantity is bounded).
pub fn balance(grants: &[Grant], now_ms: u64) -> Result<UserCredits, QuantityError> {
    grants
        .iter()
        .filter(|grant| grant.live(now_ms))
        .try_fold(UserCredits::ZERO, |total, grant| total.checked_add(grant.remaining))
}

/// Adds `grant` at its place in the burn order ([`burn_order`] is fixed
/// for a grant: its expiry, kind and age), so that `grants` kept by
/// [`insert`] alone is always in the burn order and [`draw`] never sorts. A
/// never-expiring paid grant, the common case, goes last.
pub fn insert(grants: &mut Vec<Grant>, grant: Grant) {
    let at = grants.partition_point(|other| burn_order(other, &grant) != Ordering::Greater);
    grants.insert(at, grant);
}

/// Draws `credits` from the live grants in the burn order; answers what
/// was taken from each, in that order, and takes it from `grants`.
///
/// # Errors
/// [`NotEnough`] when the live grants hold less; `grants` is unchanged then.
pub fn draw(grants: &mut [Grant], credits: UserCredits, now_ms: u64) -> Result<Vec<Draw>, NotEnough> {
    let available = balance(grants, now_ms).map_err(|_| NotEnough { available: UserCredits::ZERO })?;
    if available < credits {
        return Err(NotEnough { available });
    }
    // Kept in the burn order by `insert`, they need no sort (a wallet of
    // many grants then pays for the grants a spend takes, not for all);
    // grants in another order (none that `insert` made) are sorted first.
    if !grants.windows(2).all(|pair| burn_order(&pair[0], &pair[1]) != Ordering::Greater) {
        grants.sort_by(burn_order);
    }
    let mut left = credits;
    let mut draws = Vec::new();
    for grant in grants.iter_mut() {
        if left.is_zero() {
            break;
        }
        if !grant.live(now_ms) {
            continue;
        }
        let taken = grant.remaining.min(left);
        if taken.is_zero() {
            continue;
        }
        grant.remaining = grant.remaining.checked_sub(taken).unwrap_or(UserCredits::ZERO);
        if grant.remaining.is_zero() {
            grant.settled_at_ms = Some(now_ms);
        }
        left = left.checked_sub(taken).unwrap_or(UserCredits::ZERO);
        draws.push(Draw { grant: grant.seq, credits: taken });
    }
    Ok(draws)
}

/// What a refund did to one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GivenBack {
    pub grant: u64,
    pub credits: UserCredits,
    /// The grant had closed (expired or voided) meanwhile: the credits left
    /// the wallet again at once, counted as such.
    pub left_again: Option<Closed>,
}

/// Gives a refunded spend's `draws` back to the grants they came from
/// (SPEC §13). Credits given back to a grant closed meanwhile leave the
/// wallet again at once; the answer says so per grant.
///
/// # Errors
/// A draw names no grant of `grants`, or would raise a grant above what it
/// granted: the draws are not this user's (a bug); nothing is changed then.
pub fn give_back(grants: &mut [Grant], draws: &[Draw]) -> Result<Vec<GivenBack>, QuantityError> {
    let mut next = grants.to_vec();
    let mut given = Vec::with_capacity(draws.len());
    for draw in draws {
        let grant = next.iter_mut().find(|grant| grant.seq == draw.grant).ok_or(QuantityError::Overflow)?;
        match grant.closed {
            Some(closed) => given.push(GivenBack { grant: grant.seq, credits: draw.credits, left_again: Some(closed) }),
            None => {
                let remaining = grant.remaining.checked_add(draw.credits)?;
                if remaining > grant.credits {
                    return Err(QuantityError::Overflow);
                }
                grant.remaining = remaining;
                grant.settled_at_ms = None;
                given.push(GivenBack { grant: grant.seq, credits: draw.credits, left_again: None });
            }
        }
    }
    grants.clone_from_slice(&next);
    Ok(given)
}

/// The credits of the live grants that expire before `before_ms` (the
/// wallet's `expiring`, SPEC §13).
///
/// # Errors
/// An overflow (a bug: every quantity is bounded).
pub fn expiring(grants: &[Grant], now_ms: u64, before_ms: u64) -> Result<UserCredits, QuantityError> {
    grants
        .iter()
        .filter(|grant| grant.live(now_ms) && grant.expires_at_ms.is_some_and(|expires| expires < before_ms))
        .try_fold(UserCredits::ZERO, |total, grant| total.checked_add(grant.remaining))
}

#[cfg(test)]
// Test data: small generated numbers and indices, far from any bound.
#[allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn credits(n: u64) -> UserCredits {
        UserCredits::new(n).expect("small")
    }

    fn grant(seq: u64, kind: GrantKind, amount: u64, expires_at_ms: Option<u64>) -> Grant {
        Grant {
            seq,
            kind,
            credits: credits(amount),
            remaining: credits(amount),
            price_minor: amount * 100,
            created_at_ms: seq,
            expires_at_ms,
            closed: None,
            settled_at_ms: None,
        }
    }

    #[test]
    fn grant_ids_are_grant_and_a_sequence_number() {
        assert_eq!(GrantId::parse("grant_17"), Ok(GrantId(17)));
        assert_eq!(GrantId(17).to_string(), "grant_17");
        for bad in
            ["grant_", "grant_0", "grant_017", "grant_1x", "grant_-1", "17", "hold_17", "grant_99999999999999999999"]
        {
            assert_eq!(GrantId::parse(bad), Err(BadGrantId), "{bad}");
        }
        // At most 19 digits, although some numbers of 20 fit in a u64.
        assert_eq!(GrantId::parse("grant_1000000000000000000"), Ok(GrantId(1_000_000_000_000_000_000)));
        assert_eq!(GrantId::parse("grant_10000000000000000000"), Err(BadGrantId), "20 digits");
    }

    /// A wallet's `expiring` looks seven days ahead (SPEC §13).
    #[test]
    fn expiring_counts_what_expires_within_seven_days() {
        let now = 1_000;
        let grants = vec![
            grant(1, GrantKind::Paid, 3, Some(now + 6 * crate::domain::DAY_MS)),
            grant(2, GrantKind::Promotional, 5, Some(now + EXPIRING_WITHIN_MS - 1)),
            grant(3, GrantKind::Paid, 7, Some(now + 8 * crate::domain::DAY_MS)),
            grant(4, GrantKind::Paid, 11, None),
        ];
        let before = now + EXPIRING_WITHIN_MS;
        assert_eq!(expiring(&grants, now, before), Ok(credits(8)), "6 days and just under 7, not 8 or never");
    }

    /// Breakage is the price pro rata, rounded down: the parts of one grant
    /// never add up to more than what it was paid.
    #[test]
    fn expired_credits_earned_their_share_of_the_price() {
        let eur = Currency::EUR;
        let paid = grant(1, GrantKind::Paid, 3, None); // 300 minor units for 3 credits
        assert_eq!(paid.revenue_of(credits(1), eur).minor_units(), 100);
        assert_eq!(paid.revenue_of(credits(3), eur), Money::new(300, eur).expect("small"));
        let odd = Grant { price_minor: 1000, ..paid };
        let parts = [1, 1, 1].map(|n| odd.revenue_of(credits(n), eur).minor_units());
        assert_eq!(parts, [333, 333, 333]);
        assert_eq!(odd.revenue_of(credits(2), eur).minor_units(), 666);
        let promotional = Grant { price_minor: 0, ..odd };
        assert_eq!(promotional.revenue_of(credits(3), eur).minor_units(), 0);
    }

    #[test]
    fn due_names_the_unclosed_grants_past_their_expiry() {
        let mut grants = vec![
            grant(1, GrantKind::Paid, 10, Some(1_000)),
            grant(2, GrantKind::Paid, 10, Some(2_000)),
            grant(3, GrantKind::Paid, 10, None),
        ];
        assert!(due(&grants, 999).is_empty());
        assert_eq!(due(&grants, 1_000), [GrantId(1)], "due at its expiresAt");
        assert_eq!(due(&grants, 5_000), [GrantId(1), GrantId(2)]);
        grants[0].close(Closed::Expired { at_ms: 1_000 });
        assert_eq!(due(&grants, 5_000), [GrantId(2)], "a closed grant is not due again");
        assert_eq!(grants[0].settled_at_ms, Some(1_000), "closing settles it");
    }

    /// A wallet forgets only what no refund can reach: expired grants, and
    /// emptied grants that never expire, once untouched for `keep_ms`.
    #[test]
    fn retire_forgets_settled_grants_once_no_refund_can_reach_them() {
        let mut emptied = grant(1, GrantKind::Paid, 10, None);
        emptied.remaining = UserCredits::ZERO;
        emptied.settled_at_ms = Some(1_000);
        let mut emptied_expiring = grant(2, GrantKind::Paid, 10, Some(90_000));
        emptied_expiring.remaining = UserCredits::ZERO;
        emptied_expiring.settled_at_ms = Some(1_000);
        let mut expired = grant(3, GrantKind::Promotional, 10, Some(1_000));
        expired.close(Closed::Expired { at_ms: 1_000 });
        let live = grant(4, GrantKind::Paid, 10, None);
        let mut voided = grant(5, GrantKind::Paid, 10, None);
        voided.close(Closed::Voided { at_ms: 1_000 });
        let all = vec![emptied, emptied_expiring, expired, live, voided];
        let mut kept = all.clone();
        retire(&mut kept, 1_500, 500);
        assert_eq!(kept, all, "touched 500 ms ago: a refund may still come");
        retire(&mut kept, 1_501, 500);
        let ids: Vec<u64> = kept.iter().map(|grant| grant.seq).collect();
        assert_eq!(ids, [2, 4, 5], "the emptied expiring grant waits for its expiry; live and voided ones stay");
    }

    #[test]
    fn kinds_have_their_wire_names() {
        assert_eq!([GrantKind::Paid.as_str(), GrantKind::Promotional.as_str()], ["paid", "promotional"]);
    }

    /// SPEC §13's order, case by case: expiry first (never last), then
    /// promotional before paid, then the oldest.
    #[test]
    fn a_spend_burns_the_soonest_expiry_then_promotional_then_the_oldest() {
        let mut grants = vec![
            grant(1, GrantKind::Paid, 10, None),
            grant(2, GrantKind::Paid, 10, Some(5_000)),
            grant(3, GrantKind::Promotional, 10, Some(5_000)),
            grant(4, GrantKind::Promotional, 10, Some(9_000)),
            grant(5, GrantKind::Promotional, 10, None),
            grant(6, GrantKind::Paid, 10, Some(5_000)),
        ];
        let draws = draw(&mut grants, credits(55), 0).expect("60 live");
        let order: Vec<u64> = draws.iter().map(|draw| draw.grant).collect();
        assert_eq!(order, [3, 2, 6, 4, 5, 1]);
        assert_eq!(draws.last().map(|draw| draw.credits.get()), Some(5), "the last grant gives only what is left");
        assert_eq!(balance(&grants, 0).map(UserCredits::get), Ok(5));
        let kept: Vec<u64> = grants.iter().map(|grant| grant.seq).collect();
        assert_eq!(kept, [3, 2, 6, 4, 5, 1], "grants out of order are left in the burn order");
        let mut inserted = Vec::new();
        for seq in [1, 2, 3, 4, 5, 6] {
            let spec = [
                (GrantKind::Paid, None),
                (GrantKind::Paid, Some(5_000)),
                (GrantKind::Promotional, Some(5_000)),
                (GrantKind::Promotional, Some(9_000)),
                (GrantKind::Promotional, None),
                (GrantKind::Paid, Some(5_000)),
            ][seq as usize - 1];
            insert(&mut inserted, grant(seq, spec.0, 10, spec.1));
        }
        let order: Vec<u64> = inserted.iter().map(|grant| grant.seq).collect();
        assert_eq!(order, [3, 2, 6, 4, 5, 1], "insert keeps the burn order");
    }

    #[test]
    fn expired_and_closed_grants_neither_count_nor_burn() {
        let mut grants = vec![grant(1, GrantKind::Paid, 10, Some(1_000)), grant(2, GrantKind::Paid, 10, None)];
        assert_eq!(balance(&grants, 999).map(UserCredits::get), Ok(20));
        assert_eq!(balance(&grants, 1_000).map(UserCredits::get), Ok(10), "gone at its expiresAt");
        assert_eq!(draw(&mut grants, credits(11), 1_000), Err(NotEnough { available: credits(10) }));
        assert_eq!(grants[1].remaining.get(), 10, "a refused draw changes nothing");
        let left = grants[1].close(Closed::Voided { at_ms: 1_500 });
        assert_eq!((left.get(), grants[1].remaining.get()), (10, 0));
        assert_eq!(grants[1].close(Closed::Expired { at_ms: 2_000 }).get(), 0, "closes once");
        assert_eq!(grants[1].closed, Some(Closed::Voided { at_ms: 1_500 }));
    }

    /// A refund goes back to the grants the spend drew from; what goes back
    /// to a grant closed meanwhile leaves again at once.
    #[test]
    fn a_refund_returns_to_the_same_grants_and_a_closed_one_lets_it_go() {
        let mut grants = vec![grant(1, GrantKind::Promotional, 5, Some(1_000)), grant(2, GrantKind::Paid, 10, None)];
        let draws = draw(&mut grants, credits(8), 0).expect("15 live");
        assert_eq!(draws, [Draw { grant: 1, credits: credits(5) }, Draw { grant: 2, credits: credits(3) }]);
        grants[0].close(Closed::Expired { at_ms: 1_000 });
        let given = give_back(&mut grants, &draws).expect("their own draws");
        assert_eq!(given[0].left_again, Some(Closed::Expired { at_ms: 1_000 }));
        assert_eq!(given[1].left_again, None);
        assert_eq!((grants[0].remaining.get(), grants[1].remaining.get()), (0, 10));
        let foreign = [Draw { grant: 9, credits: credits(1) }];
        assert!(give_back(&mut grants, &foreign).is_err(), "a draw of no grant of this user");
        let too_much = [Draw { grant: 2, credits: credits(1) }];
        assert!(give_back(&mut grants, &too_much).is_err(), "never above what it granted");
        assert_eq!(grants[1].remaining.get(), 10, "a refused refund changes nothing");
    }

    #[test]
    fn expiring_counts_the_live_grants_expiring_before_the_bound() {
        let grants = vec![
            grant(1, GrantKind::Paid, 10, Some(5_000)),
            grant(2, GrantKind::Paid, 20, Some(9_000)),
            grant(3, GrantKind::Paid, 40, None),
        ];
        assert_eq!(expiring(&grants, 0, 8_000).map(UserCredits::get), Ok(10));
        assert_eq!(expiring(&grants, 0, 5_000).map(UserCredits::get), Ok(0), "at the bound is not before it");
        assert_eq!(expiring(&grants, 0, 5_001).map(UserCredits::get), Ok(10));
        assert_eq!(expiring(&grants, 0, 10_000).map(UserCredits::get), Ok(30));
        assert_eq!(expiring(&grants, 6_000, 10_000).map(UserCredits::get), Ok(20), "the expired one is gone");
    }

    fn grants_strategy() -> impl Strategy<Value = Vec<Grant>> {
        let one = (any::<bool>(), 1..50u64, proptest::option::of(0..10u64), 0..3u64);
        proptest::collection::vec(one, 0..8).prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(index, (promotional, amount, expiry, _))| {
                    let kind = if promotional { GrantKind::Promotional } else { GrantKind::Paid };
                    grant(index as u64 + 1, kind, amount, expiry.map(|days| days * 1_000))
                })
                .collect()
        })
    }

    proptest! {
        /// The invariants of §13 under any draw: the balance falls by exactly
        /// the spend, no grant goes below 0, the draws follow the burn
        /// order, and a refund restores every grant that is still live.
        #[test]
        fn draws_keep_every_grant_within_its_bounds(grants in grants_strategy(), spend in 1..200u64, now in 0..6_000u64) {
            let mut after = grants.clone();
            let before = balance(&grants, now).expect("bounded");
            match draw(&mut after, credits(spend), now) {
                Err(NotEnough { available }) => {
                    prop_assert!(available < credits(spend));
                    prop_assert_eq!(&after, &grants);
                }
                Ok(draws) => {
                    let total = draws.iter().try_fold(UserCredits::ZERO, |sum, draw| sum.checked_add(draw.credits)).expect("bounded");
                    prop_assert_eq!(total.get(), spend);
                    prop_assert_eq!(balance(&after, now).expect("bounded").get(), before.get() - spend);
                    let by_seq = |list: &[Grant], seq: u64| list.iter().find(|grant| grant.seq == seq).cloned().expect("a grant");
                    for pair in draws.windows(2) {
                        let (a, b) = (by_seq(&grants, pair[0].grant), by_seq(&grants, pair[1].grant));
                        prop_assert_eq!(burn_order(&a, &b), Ordering::Less);
                    }
                    // Every grant the draws passed over was emptied first.
                    for draw in &draws[..draws.len().saturating_sub(1)] {
                        prop_assert!(by_seq(&after, draw.grant).remaining.is_zero());
                    }
                    for grant in &after {
                        prop_assert!(grant.remaining <= grant.credits);
                    }
                    for draw in &draws {
                        let drawn = by_seq(&after, draw.grant);
                        let settled = drawn.remaining.is_zero().then_some(now);
                        prop_assert_eq!(drawn.settled_at_ms, settled, "a draw that empties a grant settles it");
                    }
                    give_back(&mut after, &draws).expect("their own draws");
                    let remaining = |list: &[Grant]| {
                        let mut pairs: Vec<(u64, UserCredits)> = list.iter().map(|grant| (grant.seq, grant.remaining)).collect();
                        pairs.sort_unstable();
                        pairs
                    };
                    prop_assert_eq!(remaining(&after), remaining(&grants));
                }
            }
        }
    }
}
