//! Credit grants (SPEC §13): every credit in a wallet belongs to a grant,
//! and a wallet's balance is the sum of its grants' remaining credits.
//!
//! This module is the arithmetic of one user's grants, with no IO: the burn
//! order a spend draws in ([`draw`]), a refund back into the grants a spend
//! drew from ([`give_back`]), and what leaves at an expiry or a void
//! ([`Grant::close`]). The decider keeps the grants and writes what these
//! functions decide.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::{QuantityError, UserCredits};

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
    pub created_at_ms: u64,
    /// `None`: never expires.
    pub expires_at_ms: Option<u64>,
    pub closed: Option<Closed>,
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
        std::mem::replace(&mut self.remaining, UserCredits::ZERO)
    }
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
    let mut order: Vec<usize> = (0..grants.len()).filter(|index| grants[*index].live(now_ms)).collect();
    order.sort_by(|a, b| burn_order(&grants[*a], &grants[*b]));
    let mut left = credits;
    let mut draws = Vec::new();
    for index in order {
        if left.is_zero() {
            break;
        }
        let grant = &mut grants[index];
        let taken = grant.remaining.min(left);
        if taken.is_zero() {
            continue;
        }
        grant.remaining = grant.remaining.checked_sub(taken).unwrap_or(UserCredits::ZERO);
        left = left.checked_sub(taken).unwrap_or(UserCredits::ZERO);
        draws.push(Draw { grant: grant.seq, credits: taken });
    }
    Ok(draws)
}

/// What a refund did to one grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
            created_at_ms: seq,
            expires_at_ms,
            closed: None,
        }
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
                    for pair in draws.windows(2) {
                        let (a, b) = (&grants[pair[0].grant as usize - 1], &grants[pair[1].grant as usize - 1]);
                        prop_assert_eq!(burn_order(a, b), Ordering::Less);
                    }
                    // Every grant the draws passed over was emptied first.
                    for draw in &draws[..draws.len().saturating_sub(1)] {
                        prop_assert!(after[draw.grant as usize - 1].remaining.is_zero());
                    }
                    for grant in &after {
                        prop_assert!(grant.remaining <= grant.credits);
                    }
                    give_back(&mut after, &draws).expect("their own draws");
                    prop_assert_eq!(&after, &grants);
                }
            }
        }
    }
}
