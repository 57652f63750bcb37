//! `creditd check`: rebuild the state from the ledger alone and compare it
//! with what is stored (SPEC §4.5, §4.6). Offline, on a stopped server's
//! data directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::domain::{HoldId, Money, ProviderCredits, Ratio, SpendId, UserCredits, UserId};
use crate::store::records::{EntryKind, InventoryRecord, LedgerEntry};
use crate::store::{Store, StoreError};

/// What `check` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub entries: u64,
    pub wallets: usize,
    pub provider_balance: u64,
    pub reserved: u64,
    /// Every violation, in the order found; the first is the first divergence.
    pub violations: Vec<String>,
}

impl CheckReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ledger entries: {}\nwallets: {}\nprovider balance: {}\nreserved: {}",
            self.entries, self.wallets, self.provider_balance, self.reserved
        )?;
        if self.passed() {
            writeln!(f, "OK: the state rebuilt from the ledger equals the stored state; every invariant holds")
        } else {
            writeln!(f, "FAILED: {} violation(s)", self.violations.len())?;
            for violation in &self.violations {
                writeln!(f, "  - {violation}")?;
            }
            Ok(())
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{0} is not a creditd data directory")]
    NotADataDirectory(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A hold as the ledger describes it.
struct ReplayedHold {
    user: UserId,
    credits: UserCredits,
    state: &'static str,
}

/// A spend as the ledger describes it.
struct ReplayedSpend {
    user: UserId,
    credits: UserCredits,
    refunded: bool,
}

/// The state the ledger alone describes.
struct Replay {
    ratio: Ratio,
    wallets: BTreeMap<UserId, UserCredits>,
    holds: BTreeMap<HoldId, ReplayedHold>,
    spends: BTreeMap<SpendId, ReplayedSpend>,
    provider_balance: ProviderCredits,
    reserved: ProviderCredits,
    revenue: Option<Money>,
    consumed_total: ProviderCredits,
    purchases_enabled: bool,
    next_seq: u64,
    violations: Vec<String>,
}

impl Replay {
    fn new(ratio: Ratio) -> Self {
        Self {
            ratio,
            wallets: BTreeMap::new(),
            holds: BTreeMap::new(),
            spends: BTreeMap::new(),
            provider_balance: ProviderCredits::ZERO,
            reserved: ProviderCredits::ZERO,
            revenue: None,
            consumed_total: ProviderCredits::ZERO,
            purchases_enabled: true,
            next_seq: 1,
            violations: Vec::new(),
        }
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

    /// Moves a wallet by `credits` (up or down); a wallet never goes negative (§4.4).
    fn move_wallet(&mut self, seq: u64, user: &UserId, credits: UserCredits, up: bool) -> Option<UserCredits> {
        let wallet = self.wallets.entry(user.clone()).or_default();
        let moved = if up { wallet.checked_add(credits) } else { wallet.checked_sub(credits) };
        match moved {
            Ok(after) => {
                *wallet = after;
                Some(after)
            }
            Err(error) => {
                self.violation(seq, format!("wallet of {:?} by {credits}: {error}", user.as_str()));
                None
            }
        }
    }

    fn reserve(&mut self, seq: u64, credits: UserCredits, up: bool) {
        let provider = self.backing(seq, credits);
        let moved = if up { self.reserved.checked_add(provider) } else { self.reserved.checked_sub(provider) };
        match moved {
            Ok(reserved) => self.reserved = reserved,
            Err(error) => self.violation(seq, format!("reserved by {provider}: {error}")),
        }
    }

    fn move_balance(&mut self, seq: u64, credits: UserCredits, up: bool) {
        let provider = self.backing(seq, credits);
        let moved =
            if up { self.provider_balance.checked_add(provider) } else { self.provider_balance.checked_sub(provider) };
        match moved {
            Ok(balance) => self.provider_balance = balance,
            Err(error) => self.violation(seq, format!("provider balance by {provider}: {error}")),
        }
    }

    fn no_oversell(&mut self, seq: u64) {
        if self.reserved > self.provider_balance {
            let what = format!("oversold: reserved {} > provider balance {}", self.reserved, self.provider_balance);
            self.violation(seq, what);
        }
    }

    fn earn(&mut self, price: Money) {
        self.revenue = match self.revenue {
            None => Some(price),
            Some(total) => total.checked_add(price).ok(),
        };
    }

    /// Closes an open hold; returns its user and credits if it was open.
    fn close_hold(&mut self, seq: u64, id: &HoldId, state: &'static str) -> Option<(UserId, UserCredits)> {
        match self.holds.get_mut(id) {
            Some(hold) if hold.state == "open" => {
                hold.state = state;
                Some((hold.user.clone(), hold.credits))
            }
            Some(hold) => {
                let was = hold.state;
                self.violation(seq, format!("hold {id} {state} but it was {was}"));
                None
            }
            None => {
                self.violation(seq, format!("hold {id} {state} but was never created"));
                None
            }
        }
    }

    fn apply(&mut self, seq: u64, entry: &LedgerEntry) {
        if seq != self.next_seq || entry.seq != seq {
            self.violation(seq, format!("expected sequence number {} (gap or disorder)", self.next_seq));
        }
        self.next_seq = seq.saturating_add(1);
        let user = entry.user.clone();
        let wallet_after = self.apply_kind(seq, entry, user.as_ref());
        if wallet_after.is_some() && entry.wallet_after != wallet_after {
            self.violation(seq, format!("wallet after is {:?}, the replay gives {wallet_after:?}", entry.wallet_after));
        }
        if entry.provider_balance_after != self.provider_balance {
            let what = format!(
                "provider balance after is {}, the replay gives {}",
                entry.provider_balance_after, self.provider_balance
            );
            self.violation(seq, what);
        }
        if entry.reserved_after != self.reserved {
            self.violation(
                seq,
                format!("reserved after is {}, the replay gives {}", entry.reserved_after, self.reserved),
            );
        }
    }

    /// Applies one entry; returns the wallet it moved, if any.
    fn apply_kind(&mut self, seq: u64, entry: &LedgerEntry, user: Option<&UserId>) -> Option<UserCredits> {
        match &entry.kind {
            EntryKind::ProviderSync { real, consumed_in_flight, .. } => {
                self.provider_balance = real.saturating_sub(*consumed_in_flight);
                return None;
            }
            EntryKind::PurchasesDisabled { .. } => {
                self.purchases_enabled = false;
                return None;
            }
            EntryKind::PurchasesEnabled => {
                self.purchases_enabled = true;
                return None;
            }
            EntryKind::PackageChanged { .. } => return None,
            _ => {}
        }
        let Some(user) = user else {
            self.violation(seq, format!("{} without a user", entry.kind.name()));
            return None;
        };
        match &entry.kind {
            EntryKind::ProviderSync { .. }
            | EntryKind::PurchasesDisabled { .. }
            | EntryKind::PurchasesEnabled
            | EntryKind::PackageChanged { .. } => None,
            EntryKind::Purchase { credits, price, .. } => {
                let after = self.move_wallet(seq, user, *credits, true);
                self.reserve(seq, *credits, true);
                self.no_oversell(seq);
                self.earn(*price);
                after
            }
            EntryKind::HoldCreated { hold_id, credits, .. } => {
                if self.holds.contains_key(hold_id) {
                    self.violation(seq, format!("hold {hold_id} created twice"));
                }
                self.holds
                    .insert(hold_id.clone(), ReplayedHold { user: user.clone(), credits: *credits, state: "open" });
                self.reserve(seq, *credits, true);
                self.no_oversell(seq);
                None
            }
            EntryKind::HoldCaptured { hold_id, credits, price, .. } => {
                self.close_hold(seq, hold_id, "captured");
                self.earn(*price);
                self.move_wallet(seq, user, *credits, true)
            }
            EntryKind::HoldReleased { hold_id, credits } => {
                self.close_hold(seq, hold_id, "released");
                self.reserve(seq, *credits, false);
                None
            }
            EntryKind::HoldExpired { hold_id, credits, expires_at_ms } => {
                self.close_hold(seq, hold_id, "expired");
                if entry.at_ms < *expires_at_ms {
                    self.violation(seq, format!("hold {hold_id} expired before its deadline"));
                }
                self.reserve(seq, *credits, false);
                None
            }
            EntryKind::Spend { spend_id, credits, .. } => {
                let after = self.move_wallet(seq, user, *credits, false);
                self.move_balance(seq, *credits, false);
                let provider = self.backing(seq, *credits);
                self.consumed_total = self.consumed_total.checked_add(provider).unwrap_or(self.consumed_total);
                self.reserve(seq, *credits, false);
                self.spends
                    .insert(spend_id.clone(), ReplayedSpend { user: user.clone(), credits: *credits, refunded: false });
                after
            }
            EntryKind::Refund { spend_id, credits } => {
                match self.spends.get_mut(spend_id) {
                    Some(spend) if !spend.refunded && spend.credits == *credits && &spend.user == user => {
                        spend.refunded = true;
                    }
                    _ => self.violation(seq, format!("refund of {spend_id}, which is unknown, refunded or different")),
                }
                self.move_balance(seq, *credits, true);
                self.reserve(seq, *credits, true);
                let provider = self.backing(seq, *credits);
                self.consumed_total = self.consumed_total.saturating_sub(provider);
                self.move_wallet(seq, user, *credits, true)
            }
        }
    }

    fn compare(&mut self, stored: &Stored) {
        self.violations.extend(stored.stale_recent.iter().cloned());
        let mut push = |what: String| self.violations.push(what);
        let state = &stored.state;
        for (user, replayed) in &self.wallets {
            let name = user.as_str();
            match stored.wallets.get(user) {
                Some(wallet) if wallet == replayed => {}
                Some(wallet) => push(format!("wallet {name:?}: stored {wallet}, the ledger gives {replayed}")),
                None => push(format!("wallet {name:?}: missing, the ledger gives {replayed}")),
            }
        }
        for (user, wallet) in &stored.wallets {
            if !self.wallets.contains_key(user) {
                push(format!("wallet {:?}: stored {wallet}, but no ledger entry moves it", user.as_str()));
            }
        }
        for (id, hold) in &self.holds {
            match stored.holds.get(id) {
                Some(state) if state == &hold.state => {}
                Some(state) => push(format!("hold {id}: stored {state}, the ledger gives {}", hold.state)),
                None => push(format!("hold {id}: missing, the ledger gives {}", hold.state)),
            }
        }
        for (id, hold) in &self.holds {
            if (hold.state == "open") != stored.open_index.contains(id) {
                push(format!("hold {id}: the open-hold index disagrees with the ledger ({})", hold.state));
            }
        }
        for id in stored.holds.keys().filter(|id| !self.holds.contains_key(*id)) {
            push(format!("hold {id}: stored, but the ledger never created it"));
        }
        for (id, spend) in &self.spends {
            match stored.spends.get(id) {
                Some(refunded) if *refunded == spend.refunded => {}
                Some(refunded) => {
                    push(format!("spend {id}: stored refunded={refunded}, the ledger gives {}", spend.refunded))
                }
                None => push(format!("spend {id}: missing")),
            }
        }
        let open = self
            .holds
            .values()
            .filter(|hold| hold.state == "open")
            .try_fold(UserCredits::ZERO, |sum, hold| sum.checked_add(hold.credits));
        match open {
            Ok(open) if open == state.holds_total => {}
            Ok(open) => push(format!("Σ open holds: stored {}, the ledger gives {open}", state.holds_total)),
            Err(error) => push(format!("Σ open holds: {error}")),
        }
        if state.provider_balance != self.provider_balance {
            push(format!(
                "provider balance: stored {}, the ledger gives {}",
                state.provider_balance, self.provider_balance
            ));
        }
        if state.reserved != self.reserved {
            push(format!("reserved: stored {}, the ledger gives {}", state.reserved, self.reserved));
        }
        if state.consumed_total != self.consumed_total {
            push(format!("consumed: stored {}, the ledger gives {}", state.consumed_total, self.consumed_total));
        }
        if state.purchases_enabled != self.purchases_enabled {
            push(format!(
                "kill switch: stored enabled={}, the ledger gives {}",
                state.purchases_enabled, self.purchases_enabled
            ));
        }
        if state.next_seq != self.next_seq {
            push(format!("next sequence: stored {}, the ledger ends before {}", state.next_seq, self.next_seq));
        }
        if let Some(revenue) = self.revenue {
            if state.revenue != revenue {
                push(format!("revenue: stored {:?}, the ledger gives {revenue:?}", state.revenue));
            }
        }
        let stored_total =
            stored.wallets.values().try_fold(UserCredits::ZERO, |sum, credits| sum.checked_add(*credits));
        match stored_total {
            Ok(total) if total == state.wallets_total => {}
            Ok(total) => {
                push(format!("Σ wallets: stored total {}, the wallets add up to {total}", state.wallets_total))
            }
            Err(error) => push(format!("Σ wallets: {error}")),
        }
        match state.wallets_total.checked_add(state.holds_total).and_then(|credits| self.ratio.backing(credits)) {
            Ok(spoken_for) if spoken_for == state.reserved => {}
            Ok(spoken_for) => {
                push(format!("§4.5: reserved {} ≠ ratio × (Σ wallets + Σ open holds) = {spoken_for}", state.reserved))
            }
            Err(error) => push(format!("§4.5: {error}")),
        }
    }
}

/// What the data directory stores besides the ledger.
struct Stored {
    state: InventoryRecord,
    wallets: BTreeMap<UserId, UserCredits>,
    holds: BTreeMap<HoldId, &'static str>,
    /// The open-hold index.
    open_index: std::collections::BTreeSet<HoldId>,
    /// Wallets whose latest entry does not show their balance.
    stale_recent: Vec<String>,
    spends: BTreeMap<SpendId, bool>,
}

fn read_stored(store: &Store, state: InventoryRecord) -> Result<Stored, StoreError> {
    let mut stored = Stored {
        state,
        wallets: BTreeMap::new(),
        holds: BTreeMap::new(),
        open_index: store.open_hold_ids()?.into_iter().collect(),
        stale_recent: Vec::new(),
        spends: BTreeMap::new(),
    };
    for item in store.wallets() {
        let (user, wallet) = item?;
        // The wallet's last recent entry is the one that left it at its balance.
        let latest = match wallet.recent.last() {
            Some(&seq) => store.ledger_entry(seq)?,
            None => None,
        };
        let consistent = latest
            .is_some_and(|entry| entry.user.as_ref() == Some(&user) && entry.wallet_after == Some(wallet.balance));
        if !consistent {
            stored.stale_recent.push(format!(
                "wallet {:?}: its latest recent entry {:?} does not show its balance {}",
                user.as_str(),
                wallet.recent.last(),
                wallet.balance
            ));
        }
        stored.wallets.insert(user, wallet.balance);
    }
    for hold in store.holds() {
        let hold = hold?;
        stored.holds.insert(hold.hold_id, hold.state.name());
    }
    for spend in store.spends() {
        let spend = spend?;
        stored.spends.insert(spend.spend_id, spend.refund.is_some());
    }
    Ok(stored)
}

/// Checks the data directory at `directory`.
///
/// # Errors
/// The directory is not a creditd data directory or cannot be read; a
/// directory that reads but is inconsistent is a report with violations.
pub fn check(directory: &Path) -> Result<CheckReport, CheckError> {
    if !directory.join("db").exists() {
        return Err(CheckError::NotADataDirectory(directory.display().to_string()));
    }
    let store = Store::open(directory)?;
    let meta = store.meta()?.ok_or_else(|| CheckError::NotADataDirectory(directory.display().to_string()))?;
    let state = store.inventory()?.ok_or_else(|| CheckError::NotADataDirectory(directory.display().to_string()))?;
    let mut replay = Replay::new(meta.ratio);
    let mut entries = 0u64;
    for item in store.ledger() {
        let (seq, entry) = item?;
        replay.apply(seq, &entry);
        entries = entries.saturating_add(1);
    }
    let stored = read_stored(&store, state)?;
    replay.compare(&stored);
    Ok(CheckReport {
        entries,
        wallets: stored.wallets.len(),
        provider_balance: stored.state.provider_balance.get(),
        reserved: stored.state.reserved.get(),
        violations: replay.violations,
    })
}
