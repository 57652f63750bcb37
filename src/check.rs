//! `creditd check`: rebuild the state from the ledger alone and compare it
//! with what is stored (SPEC §4.5, §4.6). Offline, on a stopped server's
//! data directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::domain::{Money, ProviderCredits, Ratio, UserCredits, UserId};
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

/// The state the ledger alone describes.
struct Replay {
    ratio: Ratio,
    wallets: BTreeMap<UserId, UserCredits>,
    provider_balance: ProviderCredits,
    reserved: ProviderCredits,
    revenue: Option<Money>,
    next_seq: u64,
    violations: Vec<String>,
}

impl Replay {
    fn violation(&mut self, seq: u64, what: impl fmt::Display) {
        self.violations.push(format!("ledger entry {seq}: {what}"));
    }

    fn apply(&mut self, seq: u64, entry: &LedgerEntry) {
        if seq != self.next_seq || entry.seq != seq {
            self.violation(
                seq,
                format!(
                    "expected sequence number {} (gap or disorder)",
                    self.next_seq
                ),
            );
        }
        self.next_seq = seq.saturating_add(1);
        match &entry.kind {
            EntryKind::Purchase { credits, price, .. } => {
                let Some(user) = &entry.user else {
                    return self.violation(seq, "purchase without a user");
                };
                let wallet = self.wallets.entry(user.clone()).or_default();
                match wallet.checked_add(*credits) {
                    Ok(after) => *wallet = after,
                    Err(error) => return self.violation(seq, format!("wallet overflow: {error}")),
                }
                let after = *wallet;
                if entry.wallet_after != Some(after) {
                    self.violation(
                        seq,
                        format!(
                            "wallet after is {:?}, the replay gives {after}",
                            entry.wallet_after
                        ),
                    );
                }
                match self
                    .ratio
                    .backing(*credits)
                    .and_then(|needed| self.reserved.checked_add(needed))
                {
                    Ok(reserved) => self.reserved = reserved,
                    Err(error) => self.violation(seq, format!("reserved overflow: {error}")),
                }
                if self.reserved > self.provider_balance {
                    self.violation(
                        seq,
                        format!(
                            "oversold: reserved {} > provider balance {}",
                            self.reserved, self.provider_balance
                        ),
                    );
                }
                self.revenue = match self.revenue {
                    None => Some(*price),
                    Some(total) => total.checked_add(*price).ok(),
                };
            }
            EntryKind::ProviderSync {
                real,
                consumed_in_flight,
                ..
            } => {
                self.provider_balance = real.saturating_sub(*consumed_in_flight);
            }
        }
        if entry.provider_balance_after != self.provider_balance {
            self.violation(
                seq,
                format!(
                    "provider balance after is {}, the replay gives {}",
                    entry.provider_balance_after, self.provider_balance
                ),
            );
        }
        if entry.reserved_after != self.reserved {
            self.violation(
                seq,
                format!(
                    "reserved after is {}, the replay gives {}",
                    entry.reserved_after, self.reserved
                ),
            );
        }
    }

    fn compare(&mut self, state: &InventoryRecord, stored_wallets: &BTreeMap<UserId, UserCredits>) {
        let mut push = |what: String| self.violations.push(what);
        for (user, replayed) in &self.wallets {
            let name = user.as_str();
            match stored_wallets.get(user) {
                Some(stored) if stored == replayed => {}
                Some(stored) => push(format!(
                    "wallet {name:?}: stored {stored}, the ledger gives {replayed}"
                )),
                None => push(format!(
                    "wallet {name:?}: missing, the ledger gives {replayed}"
                )),
            }
        }
        for (user, stored) in stored_wallets {
            let name = user.as_str();
            if !self.wallets.contains_key(user) {
                push(format!(
                    "wallet {name:?}: stored {stored}, but no ledger entry credits it"
                ));
            }
        }
        if state.provider_balance != self.provider_balance {
            push(format!(
                "provider balance: stored {}, the ledger gives {}",
                state.provider_balance, self.provider_balance
            ));
        }
        if state.reserved != self.reserved {
            push(format!(
                "reserved: stored {}, the ledger gives {}",
                state.reserved, self.reserved
            ));
        }
        if state.next_seq != self.next_seq {
            push(format!(
                "next sequence: stored {}, the ledger ends before {}",
                state.next_seq, self.next_seq
            ));
        }
        if let Some(revenue) = self.revenue {
            if state.revenue != revenue {
                push(format!(
                    "revenue: stored {:?}, the ledger gives {revenue:?}",
                    state.revenue
                ));
            }
        }
        let stored_total = stored_wallets
            .values()
            .try_fold(UserCredits::ZERO, |sum, credits| sum.checked_add(*credits));
        match stored_total {
            Ok(total) if total == state.wallets_total => {}
            Ok(total) => push(format!(
                "Σ wallets: stored total {}, the wallets add up to {total}",
                state.wallets_total
            )),
            Err(error) => push(format!("Σ wallets: {error}")),
        }
        match state
            .wallets_total
            .checked_add(state.holds_total)
            .and_then(|credits| self.ratio.backing(credits))
        {
            Ok(spoken_for) if spoken_for == state.reserved => {}
            Ok(spoken_for) => push(format!(
                "§4.5: reserved {} ≠ ratio × (Σ wallets + Σ open holds) = {spoken_for}",
                state.reserved
            )),
            Err(error) => push(format!("§4.5: {error}")),
        }
    }
}

/// Checks the data directory at `directory`.
///
/// # Errors
/// The directory is not a creditd data directory or cannot be read; a
/// directory that reads but is inconsistent is a report with violations.
pub fn check(directory: &Path) -> Result<CheckReport, CheckError> {
    if !directory.join("db").exists() {
        return Err(CheckError::NotADataDirectory(
            directory.display().to_string(),
        ));
    }
    let store = Store::open(directory)?;
    let meta = store
        .meta()?
        .ok_or_else(|| CheckError::NotADataDirectory(directory.display().to_string()))?;
    let state = store
        .inventory()?
        .ok_or_else(|| CheckError::NotADataDirectory(directory.display().to_string()))?;
    let mut replay = Replay {
        ratio: meta.ratio,
        wallets: BTreeMap::new(),
        provider_balance: ProviderCredits::ZERO,
        reserved: ProviderCredits::ZERO,
        revenue: None,
        next_seq: 1,
        violations: Vec::new(),
    };
    let mut entries = 0u64;
    for item in store.ledger() {
        let (seq, entry) = item?;
        replay.apply(seq, &entry);
        entries = entries.saturating_add(1);
    }
    let mut stored_wallets = BTreeMap::new();
    for item in store.wallets() {
        let (user, wallet) = item?;
        stored_wallets.insert(user, wallet.balance);
    }
    replay.compare(&state, &stored_wallets);
    Ok(CheckReport {
        entries,
        wallets: stored_wallets.len(),
        provider_balance: state.provider_balance.get(),
        reserved: state.reserved.get(),
        violations: replay.violations,
    })
}
