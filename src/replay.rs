//! The state the ledger alone describes (SPEC §4.6): every stored record
//! rebuilt from the ledger entries, in order, with every rule of SPEC §4
//! checked on the way. No IO.
//!
//! Two users: `creditd check` compares what it rebuilds with what a data
//! directory stores, and `creditd restore` writes what it rebuilds from a
//! backup into a new store. One replay for both, so a restored store is by
//! construction what `check` expects.

use std::collections::BTreeMap;
use std::fmt;

use crate::domain::grants::{Closed, Draw, Grant, GrantDeadline};
use crate::domain::{
    GrantId, GrantKind, HoldId, KeyId, Money, PackageId, ProviderCredits, Ratio, SpendId, UserCredits, UserId,
};
use crate::store::records::{
    legacy_grant, ApiKeyRecord, CaptureReceipt, EntryKind, ExpiredDay, GrantEffect, GrantReceipt, HoldReceipt,
    HoldRecord, HoldState, IdempotencyRecord, InventoryRecord, LedgerEntry, Operation, PackageOverride,
    PurchaseReceipt, Receipt, RefundReceipt, SpendReceipt, SpendRecord, SpendState, SyncRecord, WalletRecord,
};
use crate::store::writes::Write;

/// The records the ledger describes, and what broke a rule on the way.
#[derive(Debug)]
pub struct Replay {
    ratio: Ratio,
    pub state: InventoryRecord,
    pub wallets: BTreeMap<UserId, WalletRecord>,
    pub holds: BTreeMap<HoldId, HoldRecord>,
    pub spends: BTreeMap<SpendId, SpendRecord>,
    /// The operators' package settings, as the last `packageChanged` of each left them.
    pub packages: BTreeMap<PackageId, PackageOverride>,
    /// The API keys (SPEC §9.1), as their `apiKeyCreated` and `apiKeyRevoked` entries left them.
    pub api_keys: BTreeMap<KeyId, ApiKeyRecord>,
    /// The credits expired by UTC day (SPEC §13), as the expiries left them.
    pub expired_by_day: BTreeMap<u32, ExpiredDay>,
    /// Every violation, in the order found; the first is the first divergence.
    pub violations: Vec<String>,
}

impl Replay {
    /// An empty ledger of a store with `ratio`, whose revenue is in the
    /// currency of `revenue_zero`.
    pub fn new(ratio: Ratio, revenue_zero: Money) -> Self {
        Self {
            ratio,
            state: InventoryRecord::empty(revenue_zero),
            wallets: BTreeMap::new(),
            holds: BTreeMap::new(),
            spends: BTreeMap::new(),
            packages: BTreeMap::new(),
            api_keys: BTreeMap::new(),
            expired_by_day: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    pub fn ratio(&self) -> Ratio {
        self.ratio
    }

    fn violation(&mut self, seq: u64, what: impl fmt::Display) {
        self.violations.push(format!("ledger entry {seq}: {what}"));
    }

    fn backing(&mut self, seq: u64, credits: UserCredits) -> ProviderCredits {
        self.ratio.backing(credits).unwrap_or_else(|error| {
            self.violation(seq, format!("ratio × {credits}: {error}"));
            ProviderCredits::ZERO
        })
    }

    /// Moves a wallet by `credits` (up or down), as the engine does: its
    /// version counts the entries that moved it, `recent` keeps the last of
    /// them. A wallet never goes negative (SPEC §4.4).
    fn move_wallet(&mut self, seq: u64, user: &UserId, credits: UserCredits, up: bool) -> Option<UserCredits> {
        let wallet = self.wallets.entry(user.clone()).or_default();
        let moved = if up { wallet.balance.checked_add(credits) } else { wallet.balance.checked_sub(credits) };
        let total = &mut self.state.wallets_total;
        let total_moved = if up { total.checked_add(credits) } else { total.checked_sub(credits) };
        match (moved, total_moved) {
            (Ok(after), Ok(total_after)) => {
                wallet.balance = after;
                wallet.version = wallet.version.saturating_add(1);
                wallet.note_entry(seq);
                *total = total_after;
                Some(after)
            }
            (Err(error), _) | (_, Err(error)) => {
                self.violation(seq, format!("wallet of {:?} by {credits}: {error}", user.as_str()));
                None
            }
        }
    }

    fn reserve(&mut self, seq: u64, credits: UserCredits, up: bool) {
        let provider = self.backing(seq, credits);
        let reserved = self.state.reserved;
        match if up { reserved.checked_add(provider) } else { reserved.checked_sub(provider) } {
            Ok(reserved) => self.state.reserved = reserved,
            Err(error) => self.violation(seq, format!("reserved by {provider}: {error}")),
        }
    }

    fn move_holds_total(&mut self, seq: u64, credits: UserCredits, up: bool) {
        let total = self.state.holds_total;
        match if up { total.checked_add(credits) } else { total.checked_sub(credits) } {
            Ok(total) => self.state.holds_total = total,
            Err(error) => self.violation(seq, format!("Σ open holds by {credits}: {error}")),
        }
    }

    /// Moves the provider balance and the consumption by a spend (down) or a refund (up).
    fn consume(&mut self, seq: u64, credits: UserCredits, refund: bool) {
        let provider = self.backing(seq, credits);
        let balance = self.state.provider_balance;
        match if refund { balance.checked_add(provider) } else { balance.checked_sub(provider) } {
            Ok(balance) => self.state.provider_balance = balance,
            Err(error) => self.violation(seq, format!("provider balance by {provider}: {error}")),
        }
        let consumed = self.state.consumed_total;
        self.state.consumed_total =
            if refund { consumed.saturating_sub(provider) } else { consumed.checked_add(provider).unwrap_or(consumed) };
    }

    fn no_oversell(&mut self, seq: u64) {
        if self.state.reserved > self.state.provider_balance {
            let what = format!(
                "oversold: reserved {} > provider balance {}",
                self.state.reserved, self.state.provider_balance
            );
            self.violation(seq, what);
        }
    }

    fn earn(&mut self, seq: u64, price: Money) {
        match self.state.revenue.checked_add(price) {
            Ok(revenue) => self.state.revenue = revenue,
            Err(error) => self.violation(seq, format!("revenue by {price:?}: {error:?}")),
        }
    }

    /// Closes an open hold into `state`; returns it if it was open.
    fn close_hold(&mut self, seq: u64, id: &HoldId, state: HoldState) -> Option<HoldRecord> {
        let name = state.name();
        match self.holds.get_mut(id) {
            Some(hold) if hold.state == HoldState::Open => {
                hold.state = state;
                Some(hold.clone())
            }
            Some(hold) => {
                let was = hold.state.name();
                self.violation(seq, format!("hold {id} {name} but it was {was}"));
                None
            }
            None => {
                self.violation(seq, format!("hold {id} {name} but was never created"));
                None
            }
        }
    }

    fn move_open_spends(&mut self, seq: u64, credits: UserCredits, up: bool) {
        let total = self.state.open_spends;
        match if up { total.checked_add(credits) } else { total.checked_sub(credits) } {
            Ok(total) => self.state.open_spends = total,
            Err(error) => self.violation(seq, format!("Σ open spends by {credits}: {error}")),
        }
    }

    /// Closes an open spend of `user` for `credits` into `state`; returns it
    /// as it was if it was open.
    fn close_spend(
        &mut self,
        seq: u64,
        id: &SpendId,
        credits: UserCredits,
        user: &UserId,
        state: SpendState,
    ) -> Option<SpendRecord> {
        let name = state.name();
        match self.spends.get_mut(id) {
            Some(spend) if spend.state == SpendState::Open && spend.credits == credits && &spend.user == user => {
                let was = spend.clone();
                spend.state = state;
                self.move_open_spends(seq, credits, false);
                Some(was)
            }
            Some(spend) => {
                let what =
                    format!("spend {id} {name} but it was {} (or of another user or amount)", spend.state.name());
                self.violation(seq, what);
                None
            }
            None => {
                self.violation(seq, format!("spend {id} {name} but was never made"));
                None
            }
        }
    }

    /// Applies the next entry, checking it against the replay.
    pub fn apply(&mut self, entry: &LedgerEntry) {
        let seq = entry.seq;
        if seq != self.state.next_seq {
            self.violation(seq, format!("expected sequence number {} (gap or disorder)", self.state.next_seq));
        }
        self.state.next_seq = seq.saturating_add(1);
        let wallet_after = self.apply_kind(entry);
        if wallet_after.is_some() && entry.wallet_after != wallet_after {
            self.violation(seq, format!("wallet after is {:?}, the replay gives {wallet_after:?}", entry.wallet_after));
        }
        if entry.provider_balance_after != self.state.provider_balance {
            let what = format!(
                "provider balance after is {}, the replay gives {}",
                entry.provider_balance_after, self.state.provider_balance
            );
            self.violation(seq, what);
        }
        if entry.reserved_after != self.state.reserved {
            let what = format!("reserved after is {}, the replay gives {}", entry.reserved_after, self.state.reserved);
            self.violation(seq, what);
        }
    }

    /// Applies one entry's kind; returns the wallet it moved, if any.
    fn apply_kind(&mut self, entry: &LedgerEntry) -> Option<UserCredits> {
        let seq = entry.seq;
        match &entry.kind {
            EntryKind::ProviderSync { real, held_back, drift, .. } => {
                self.state.provider_balance = real.saturating_sub(*held_back);
                self.state.held_back = *held_back;
                let sync = SyncRecord { at_ms: entry.at_ms, real: *real, drift: *drift, seq, held_back: *held_back };
                self.state.last_sync = Some(sync);
                return None;
            }
            EntryKind::PurchasesDisabled { reason } => {
                self.state.purchases_enabled = false;
                self.state.disabled_reason = Some(reason.clone());
                return None;
            }
            EntryKind::PurchasesEnabled => {
                self.state.purchases_enabled = true;
                self.state.disabled_reason = None;
                return None;
            }
            EntryKind::PackageChanged { package_id, enabled, credits, price } => {
                let days = self.packages.get(package_id).and_then(|stored| stored.expires_after_days);
                let stored =
                    PackageOverride { enabled: *enabled, credits: *credits, price: *price, expires_after_days: days };
                self.packages.insert(package_id.clone(), stored);
                return None;
            }
            EntryKind::PackageExpiryChanged { package_id, expires_after_days } => {
                match self.packages.get_mut(package_id) {
                    Some(stored) => stored.expires_after_days = *expires_after_days,
                    None => self.violation(seq, format!("package {package_id} expiry changed before its settings")),
                }
                return None;
            }
            EntryKind::ApiKeyCreated { key_id, name, scopes, key_hash } => {
                let record = ApiKeyRecord {
                    id: key_id.clone(),
                    name: name.clone(),
                    scopes: *scopes,
                    key_hash: *key_hash,
                    created_at_ms: entry.at_ms,
                    last_used_at_ms: None,
                    revoked_at_ms: None,
                };
                if self.api_keys.insert(key_id.clone(), record).is_some() {
                    self.violation(seq, format!("API key {key_id} created twice"));
                }
                return None;
            }
            EntryKind::ApiKeyRevoked { key_id } => {
                match self.api_keys.get_mut(key_id) {
                    Some(record) if record.revoked_at_ms.is_none() => record.revoked_at_ms = Some(entry.at_ms),
                    Some(_) => self.violation(seq, format!("API key {key_id} revoked twice")),
                    None => self.violation(seq, format!("API key {key_id} revoked but never created")),
                }
                return None;
            }
            _ => {}
        }
        let Some(user) = entry.user.clone() else {
            self.violation(seq, format!("{} without a user", entry.kind.name()));
            return None;
        };
        match &entry.kind {
            EntryKind::Purchase { credits, price, .. } => {
                let after = self.move_wallet(seq, &user, *credits, true);
                self.paid_grant(entry, &user, *credits, *price);
                self.reserve(seq, *credits, true);
                self.no_oversell(seq);
                self.earn(seq, *price);
                after
            }
            EntryKind::HoldCreated { hold_id, package_id, credits, price, expires_at_ms } => {
                if self.holds.contains_key(hold_id) {
                    self.violation(seq, format!("hold {hold_id} created twice"));
                }
                let hold = HoldRecord {
                    hold_id: hold_id.clone(),
                    user,
                    package_id: package_id.clone(),
                    credits: *credits,
                    price: *price,
                    created_at_ms: entry.at_ms,
                    expires_at_ms: *expires_at_ms,
                    state: HoldState::Open,
                    owner: entry.caller.clone(),
                    expires_after_days: match &entry.grants {
                        Some(GrantEffect::HoldTerms { expires_after_days }) => *expires_after_days,
                        _ => None,
                    },
                };
                self.holds.insert(hold_id.clone(), hold);
                self.move_holds_total(seq, *credits, true);
                self.reserve(seq, *credits, true);
                self.no_oversell(seq);
                None
            }
            EntryKind::HoldCaptured { hold_id, package_id, credits, price } => {
                let after = self.move_wallet(seq, &user, *credits, true);
                self.paid_grant(entry, &user, *credits, *price);
                let receipt = CaptureReceipt {
                    hold_id: hold_id.clone(),
                    user_id: user,
                    package_id: package_id.clone(),
                    credits: *credits,
                    balance: after.unwrap_or_default(),
                };
                self.close_hold(seq, hold_id, HoldState::Captured(receipt));
                self.move_holds_total(seq, *credits, false);
                self.earn(seq, *price);
                after
            }
            EntryKind::HoldReleased { hold_id, credits } => {
                self.close_hold(seq, hold_id, HoldState::Released);
                self.move_holds_total(seq, *credits, false);
                self.reserve(seq, *credits, false);
                None
            }
            EntryKind::HoldExpired { hold_id, credits, expires_at_ms } => {
                self.close_hold(seq, hold_id, HoldState::Expired);
                if entry.at_ms < *expires_at_ms {
                    self.violation(seq, format!("hold {hold_id} expired before its deadline"));
                }
                self.move_holds_total(seq, *credits, false);
                self.reserve(seq, *credits, false);
                None
            }
            EntryKind::Spend { spend_id, credits, .. } => {
                let after = self.move_wallet(seq, &user, *credits, false);
                let draws = self.draw(entry, &user);
                self.consume(seq, *credits, false);
                self.reserve(seq, *credits, false);
                if self.spends.contains_key(spend_id) {
                    self.violation(seq, format!("spend {spend_id} made twice"));
                }
                let spend = SpendRecord {
                    spend_id: spend_id.clone(),
                    user,
                    credits: *credits,
                    seq,
                    created_at_ms: entry.at_ms,
                    state: SpendState::Open,
                    owner: entry.caller.clone(),
                    draws,
                };
                self.spends.insert(spend_id.clone(), spend);
                self.move_open_spends(seq, *credits, true);
                after
            }
            EntryKind::Refund { spend_id, credits } => {
                let left = self.left_again(entry, &user);
                let kept = credits.checked_sub(left).unwrap_or_else(|error| {
                    self.violation(seq, format!("refund of {credits} left {left} again: {error}"));
                    UserCredits::ZERO
                });
                let after = self.move_wallet(seq, &user, kept, true);
                self.give_back(entry, &user, *credits);
                self.consume(seq, *credits, true);
                self.reserve(seq, kept, true);
                let receipt = RefundReceipt {
                    spend_id: spend_id.clone(),
                    user_id: user.clone(),
                    credits: *credits,
                    balance: after.unwrap_or_default(),
                };
                if let Some(spend) = self.close_spend(seq, spend_id, *credits, &user, SpendState::Refunded(receipt)) {
                    // Made before the last sync: that sync held it back, and
                    // the refund gives back exactly that (SPEC §6).
                    if self.state.last_sync.is_some_and(|sync| spend.seq < sync.seq) {
                        let provider = self.backing(seq, *credits);
                        match self.state.held_back.checked_sub(provider) {
                            Ok(left) => self.state.held_back = left,
                            Err(error) => self.violation(seq, format!("held back by {provider}: {error}")),
                        }
                    }
                }
                after
            }
            EntryKind::SpendCompleted { spend_id, credits, by } => {
                let state = SpendState::Completed { by: *by, at_ms: entry.at_ms };
                self.close_spend(seq, spend_id, *credits, &user, state);
                None
            }
            EntryKind::GrantCreated { kind, credits, expires_at_ms, .. } => {
                let after = self.move_wallet(seq, &user, *credits, true);
                let grant = Grant::new(seq, *kind, *credits, 0, entry.at_ms, *expires_at_ms);
                self.add_grant(&user, grant);
                self.reserve(seq, *credits, true);
                self.no_oversell(seq);
                after
            }
            EntryKind::GrantExpired { grant_id, credits, breakage, expires_at_ms, .. } => {
                if entry.at_ms < *expires_at_ms {
                    self.violation(seq, format!("{grant_id} expired before its expiresAt"));
                }
                self.close_grant(
                    entry,
                    &user,
                    *grant_id,
                    *credits,
                    Closed::Expired { at_ms: *expires_at_ms },
                    *breakage,
                )
            }
            EntryKind::GrantVoided { grant_id, credits, .. } => {
                let breakage = Money::zero(self.state.revenue.currency());
                self.close_grant(entry, &user, *grant_id, *credits, Closed::Voided { at_ms: entry.at_ms }, breakage)
            }
            EntryKind::ProviderSync { .. }
            | EntryKind::PurchasesDisabled { .. }
            | EntryKind::PurchasesEnabled
            | EntryKind::PackageChanged { .. }
            | EntryKind::PackageExpiryChanged { .. }
            | EntryKind::ApiKeyCreated { .. }
            | EntryKind::ApiKeyRevoked { .. } => None,
        }
    }
}

/// `a + b`: quantities are bounded far below where this could saturate.
fn add(a: UserCredits, b: UserCredits) -> UserCredits {
    a.checked_add(b).unwrap_or(a)
}

/// Grants (SPEC §13), as the entries' recorded effects move them; an entry
/// from before grants leaves its user's wallet one grant of its balance,
/// as a wallet of that time reads (`records::legacy_grant`).
impl Replay {
    /// The deadlines of the grants the ledger leaves open that will expire.
    pub fn grant_deadlines(&self) -> Vec<GrantDeadline> {
        let mut deadlines = Vec::new();
        for (user, wallet) in &self.wallets {
            for grant in wallet.grants.iter().filter(|grant| grant.closed.is_none()) {
                if let Some(expires_at_ms) = grant.expires_at_ms {
                    deadlines.push(GrantDeadline {
                        expires_at_ms,
                        grant: grant.id(),
                        user: user.clone(),
                        open: true,
                        remaining: grant.remaining,
                    });
                }
            }
        }
        deadlines
    }

    fn grant_mut(&mut self, seq: u64, user: &UserId, id: GrantId) -> Option<&mut Grant> {
        let found =
            self.wallets.get_mut(user).and_then(|wallet| wallet.grants.iter_mut().find(|grant| grant.id() == id));
        if found.is_none() {
            self.violations.push(format!("ledger entry {seq}: {id} is not a grant of {:?}", user.as_str()));
        }
        // Borrowed again: the violation above needed `self`.
        self.wallets.get_mut(user).and_then(|wallet| wallet.grants.iter_mut().find(|grant| grant.id() == id))
    }

    /// An entry from before grants: the wallet is one grant of its balance.
    fn legacy(&mut self, entry: &LedgerEntry, user: &UserId) {
        if let Some(wallet) = self.wallets.get_mut(user) {
            wallet.grants =
                if wallet.balance.is_zero() { Vec::new() } else { vec![legacy_grant(entry.seq, wallet.balance)] };
        }
    }

    fn add_grant(&mut self, user: &UserId, grant: Grant) {
        if grant.kind == GrantKind::Promotional {
            self.state.grants.promotional = add(self.state.grants.promotional, grant.remaining);
        }
        if let Some(wallet) = self.wallets.get_mut(user) {
            crate::domain::grants::insert(&mut wallet.grants, grant);
        }
    }

    /// The paid grant of a purchase or a capture (after its wallet moved).
    fn paid_grant(&mut self, entry: &LedgerEntry, user: &UserId, credits: UserCredits, price: Money) {
        match &entry.grants {
            Some(GrantEffect::Paid { expires_at_ms }) => {
                let grant =
                    Grant::new(entry.seq, GrantKind::Paid, credits, price.minor_units(), entry.at_ms, *expires_at_ms);
                self.add_grant(user, grant);
            }
            None => self.legacy(entry, user),
            Some(other) => self.violation(entry.seq, format!("a sale with grant effect {other:?}")),
        }
    }

    /// A spend's draws (after its wallet moved): answers them for its record.
    fn draw(&mut self, entry: &LedgerEntry, user: &UserId) -> Option<Vec<Draw>> {
        let seq = entry.seq;
        let draws = match &entry.grants {
            Some(GrantEffect::Drew(draws)) => draws.clone(),
            None => {
                self.legacy(entry, user);
                return None;
            }
            Some(other) => {
                self.violation(seq, format!("a spend with grant effect {other:?}"));
                return None;
            }
        };
        for draw in &draws {
            let Some(grant) = self.grant_mut(seq, user, GrantId(draw.grant)) else { continue };
            let kind = grant.kind;
            let taken = grant.remaining.checked_sub(draw.credits);
            let live = grant.closed.is_none() && grant.expires_at_ms.is_none_or(|expires| entry.at_ms < expires);
            match taken {
                Ok(left) if live => {
                    grant.remaining = left;
                    if left.is_zero() {
                        grant.settled_at_ms = Some(entry.at_ms);
                    }
                    if kind == GrantKind::Promotional {
                        self.state.grants.promotional =
                            self.state.grants.promotional.checked_sub(draw.credits).unwrap_or(UserCredits::ZERO);
                    }
                }
                _ => self
                    .violation(seq, format!("drew {} from grant_{} which could not give it", draw.credits, draw.grant)),
            }
        }
        Some(draws)
    }

    /// What a refund gave back to grants closed meanwhile (it leaves again).
    fn left_again(&self, entry: &LedgerEntry, _user: &UserId) -> UserCredits {
        match &entry.grants {
            Some(GrantEffect::GaveBack(given)) => given
                .iter()
                .filter(|back| back.left_again.is_some())
                .fold(UserCredits::ZERO, |total, back| add(total, back.credits)),
            _ => UserCredits::ZERO,
        }
    }

    /// A refund's credits back into the grants its spend drew from (after
    /// its wallet moved by what stayed).
    fn give_back(&mut self, entry: &LedgerEntry, user: &UserId, credits: UserCredits) {
        let seq = entry.seq;
        match &entry.grants {
            Some(GrantEffect::GaveBack(given)) => {
                for back in given {
                    let currency = self.state.revenue.currency();
                    let Some(grant) = self.grant_mut(seq, user, GrantId(back.grant)) else { continue };
                    let (kind, closed) = (grant.kind, grant.closed);
                    match (back.left_again, closed) {
                        (None, None) => match grant.remaining.checked_add(back.credits) {
                            Ok(remaining) if remaining <= grant.credits => {
                                grant.remaining = remaining;
                                grant.settled_at_ms = None;
                                if kind == GrantKind::Promotional {
                                    let promotional = self.state.grants.promotional;
                                    self.state.grants.promotional = add(promotional, back.credits);
                                }
                            }
                            _ => self.violation(seq, format!("grant_{} given back above what it granted", back.grant)),
                        },
                        (Some(Closed::Expired { .. }), Some(Closed::Expired { at_ms })) => {
                            let breakage = grant.revenue_of(back.credits, currency);
                            self.count_removal(seq, back.credits, Some((breakage, at_ms)));
                        }
                        (Some(Closed::Voided { .. }), Some(Closed::Voided { .. })) => {
                            self.count_removal(seq, back.credits, None);
                        }
                        (said, was) => {
                            self.violation(
                                seq,
                                format!("grant_{} given back as {said:?} but it is {was:?}", back.grant),
                            );
                        }
                    }
                }
            }
            Some(GrantEffect::Paid { expires_at_ms: None }) => {
                let grant = Grant::new(seq, GrantKind::Paid, credits, 0, entry.at_ms, None);
                self.add_grant(user, grant);
            }
            None => self.legacy(entry, user),
            Some(other) => self.violation(seq, format!("a refund with grant effect {other:?}")),
        }
    }

    /// Counts credits that left with a closed grant: expired (with their
    /// breakage) or voided (`breakage` `None`).
    fn count_removal(&mut self, seq: u64, credits: UserCredits, expired: Option<(Money, u64)>) {
        let totals = &mut self.state.grants;
        match expired {
            Some((breakage, at_ms)) => {
                totals.expired = add(totals.expired, credits);
                let day = ExpiredDay::day_of(at_ms);
                let zero = Money::zero(self.state.revenue.currency());
                let counted = self.expired_by_day.entry(day).or_insert(ExpiredDay {
                    day,
                    credits: UserCredits::ZERO,
                    breakage: zero,
                });
                counted.credits = add(counted.credits, credits);
                let (total, on_day) =
                    (self.state.grants.breakage.checked_add(breakage), counted.breakage.checked_add(breakage));
                match (total, on_day) {
                    (Ok(total), Ok(on_day)) => {
                        self.state.grants.breakage = total;
                        counted.breakage = on_day;
                    }
                    (Err(error), _) | (_, Err(error)) => self.violation(seq, format!("breakage: {error:?}")),
                }
            }
            None => totals.voided = add(totals.voided, credits),
        }
    }

    /// A grant's expiry or void: its remaining `credits` leave the wallet.
    fn close_grant(
        &mut self,
        entry: &LedgerEntry,
        user: &UserId,
        id: GrantId,
        credits: UserCredits,
        how: Closed,
        breakage: Money,
    ) -> Option<UserCredits> {
        let seq = entry.seq;
        let currency = self.state.revenue.currency();
        let grant = self.grant_mut(seq, user, id)?;
        if grant.closed.is_some() || grant.remaining != credits {
            let what =
                format!("{id} closed with {credits} but it had {} (closed: {:?})", grant.remaining, grant.closed);
            self.violation(seq, what);
            return None;
        }
        let kind = grant.kind;
        let expected = grant.revenue_of(credits, currency);
        grant.close(how);
        if matches!(how, Closed::Expired { .. })
            && expected != breakage
            && !(breakage.minor_units() == 0 && expected.minor_units() == 0)
        {
            self.violation(seq, format!("{id}: breakage {breakage:?}, the grant's price gives {expected:?}"));
        }
        if kind == GrantKind::Promotional {
            self.state.grants.promotional =
                self.state.grants.promotional.checked_sub(credits).unwrap_or(UserCredits::ZERO);
        }
        let expired = match how {
            Closed::Expired { at_ms } => Some((breakage, at_ms)),
            Closed::Voided { .. } => None,
        };
        self.count_removal(seq, credits, expired);
        let after = self.move_wallet(seq, user, credits, false);
        self.reserve(seq, credits, false);
        after
    }
}

/// The idempotency record an entry's change left, as the write that keeps
/// it (scoped to the entry's caller), given the
/// request's `fingerprint` (kept by the store, carried by a backup): the
/// receipt is rebuilt from the entry. `None` for an entry without a key.
pub fn idempotency_record(entry: &LedgerEntry, fingerprint: [u8; 32]) -> Option<Write> {
    let key = entry.idempotency_key.clone()?;
    let user = entry.user.clone()?;
    let balance = entry.wallet_after.unwrap_or_default();
    let (operation, receipt) = match &entry.kind {
        EntryKind::Purchase { purchase_id, package_id, credits, .. } => (
            Operation::Purchase,
            Receipt::Purchase(PurchaseReceipt {
                purchase_id: purchase_id.clone(),
                user_id: user,
                package_id: package_id.clone(),
                credits: *credits,
                balance,
            }),
        ),
        EntryKind::HoldCreated { hold_id, package_id, credits, expires_at_ms, .. } => (
            Operation::Hold,
            Receipt::Hold(HoldReceipt {
                hold_id: hold_id.clone(),
                user_id: user,
                package_id: package_id.clone(),
                credits: *credits,
                expires_at_ms: *expires_at_ms,
            }),
        ),
        EntryKind::Spend { spend_id, credits, .. } => (
            Operation::Spend,
            Receipt::Spend(SpendReceipt { spend_id: spend_id.clone(), user_id: user, credits: *credits, balance }),
        ),
        EntryKind::GrantCreated { kind, credits, expires_at_ms, .. } => (
            Operation::Grant,
            Receipt::Grant(GrantReceipt {
                grant_id: GrantId(entry.seq),
                user_id: user,
                kind: *kind,
                credits: *credits,
                expires_at_ms: *expires_at_ms,
            }),
        ),
        _ => return None,
    };
    let record = IdempotencyRecord { fingerprint, receipt, at_ms: entry.at_ms };
    Some(Write::Remember { operation, caller: entry.caller.clone(), key, record })
}
