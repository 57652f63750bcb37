//! `creditd check`: rebuild the state from the ledger alone and compare it
//! with what is stored (SPEC §4.5, §4.6). Offline, on a stopped server's
//! data directory.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::domain::grants::Grant;
use crate::domain::{HoldId, KeyId, Money, SpendId, UserCredits, UserId};
use crate::replay::Replay;
use crate::store::records::{
    ApiKeyRecord, ExpiredDay, HoldState, InventoryRecord, PackageOverride, SpendState, WalletRecord,
};
use crate::store::{SledStore, StoreError};

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

/// What the stored records say that the ledger does not: every divergence.
fn compare(replay: &Replay, stored: &Stored) -> Vec<String> {
    let mut violations = stored.stale_recent.clone();
    let mut push = |what: String| violations.push(what);
    let state = &stored.state;
    let replayed_state = &replay.state;
    for (user, replayed) in &replay.wallets {
        let (name, replayed) = (user.as_str(), replayed.balance);
        match stored.wallets.get(user) {
            Some(wallet) if *wallet == replayed => {}
            Some(wallet) => push(format!("wallet {name:?}: stored {wallet}, the ledger gives {replayed}")),
            None => push(format!("wallet {name:?}: missing, the ledger gives {replayed}")),
        }
    }
    for (user, wallet) in &stored.wallets {
        if !replay.wallets.contains_key(user) {
            push(format!("wallet {:?}: stored {wallet}, but no ledger entry moves it", user.as_str()));
        }
    }
    compare_grants(replay, stored, &mut push);
    for (id, hold) in &replay.holds {
        let replayed = hold.state.name();
        match stored.holds.get(id) {
            Some(state) if *state == replayed => {}
            Some(state) => push(format!("hold {id}: stored {state}, the ledger gives {replayed}")),
            None => push(format!("hold {id}: missing, the ledger gives {replayed}")),
        }
        if (hold.state == HoldState::Open) != stored.open_index.contains(id) {
            push(format!("hold {id}: the open-hold index disagrees with the ledger ({replayed})"));
        }
    }
    for id in stored.holds.keys().filter(|id| !replay.holds.contains_key(*id)) {
        push(format!("hold {id}: stored, but the ledger never created it"));
    }
    for (id, spend) in &replay.spends {
        let replayed = spend.state.name();
        match stored.spends.get(id) {
            Some(state) if *state == replayed => {}
            Some(state) => push(format!("spend {id}: stored {state}, the ledger gives {replayed}")),
            None => push(format!("spend {id}: missing")),
        }
        if (spend.state == SpendState::Open) != stored.open_spends.contains(id) {
            push(format!("spend {id}: the open-spend index disagrees with the ledger ({replayed})"));
        }
    }
    for id in stored.spends.keys().filter(|id| !replay.spends.contains_key(*id)) {
        push(format!("spend {id}: stored, but the ledger never made it"));
    }
    if replayed_state.open_spends != state.open_spends {
        push(format!("Σ open spends: stored {}, the ledger gives {}", state.open_spends, replayed_state.open_spends));
    }
    if replayed_state.held_back != state.held_back {
        push(format!("held back: stored {}, the ledger gives {}", state.held_back, replayed_state.held_back));
    }
    if replayed_state.last_sync != state.last_sync {
        push(format!("last sync: stored {:?}, the ledger gives {:?}", state.last_sync, replayed_state.last_sync));
    }
    if replayed_state.holds_total != state.holds_total {
        push(format!("Σ open holds: stored {}, the ledger gives {}", state.holds_total, replayed_state.holds_total));
    }
    if state.provider_balance != replayed_state.provider_balance {
        push(format!(
            "provider balance: stored {}, the ledger gives {}",
            state.provider_balance, replayed_state.provider_balance
        ));
    }
    if state.reserved != replayed_state.reserved {
        push(format!("reserved: stored {}, the ledger gives {}", state.reserved, replayed_state.reserved));
    }
    if state.consumed_total != replayed_state.consumed_total {
        push(format!("consumed: stored {}, the ledger gives {}", state.consumed_total, replayed_state.consumed_total));
    }
    if (state.purchases_enabled, &state.disabled_reason)
        != (replayed_state.purchases_enabled, &replayed_state.disabled_reason)
    {
        push(format!(
            "kill switch: stored enabled={} ({:?}), the ledger gives {} ({:?})",
            state.purchases_enabled,
            state.disabled_reason,
            replayed_state.purchases_enabled,
            replayed_state.disabled_reason
        ));
    }
    if state.next_seq != replayed_state.next_seq {
        push(format!("next sequence: stored {}, the ledger ends before {}", state.next_seq, replayed_state.next_seq));
    }
    if state.revenue != replayed_state.revenue {
        push(format!("revenue: stored {:?}, the ledger gives {:?}", state.revenue, replayed_state.revenue));
    }
    for (id, replayed) in &replay.packages {
        if stored.packages.get(id.as_str()) != Some(replayed) {
            push(format!("package {id}: stored {:?}, the ledger gives {replayed:?}", stored.packages.get(id.as_str())));
        }
    }
    for id in stored.packages.keys().filter(|id| !replay.packages.keys().any(|known| known.as_str() == *id)) {
        push(format!("package {id}: stored settings, but no ledger entry changed it"));
    }
    // `lastUsedAt` is not a ledger fact: everything else of a key is.
    for (id, replayed) in &replay.api_keys {
        let without_use = |key: &ApiKeyRecord| ApiKeyRecord { last_used_at_ms: None, ..key.clone() };
        match stored.api_keys.get(id) {
            Some(key) if without_use(key) == *replayed => {}
            Some(key) => push(format!(
                "API key {id}: stored revoked={}, the ledger gives revoked={} (or another name, scopes or hash)",
                key.revoked_at_ms.is_some(),
                replayed.revoked_at_ms.is_some()
            )),
            None => push(format!("API key {id}: missing")),
        }
    }
    for id in stored.api_keys.keys().filter(|id| !replay.api_keys.contains_key(*id)) {
        push(format!("API key {id}: stored, but the ledger never created it"));
    }
    let stored_total = stored.wallets.values().try_fold(UserCredits::ZERO, |sum, credits| sum.checked_add(*credits));
    match stored_total {
        Ok(total) if total == state.wallets_total => {}
        Ok(total) => push(format!("Σ wallets: stored total {}, the wallets add up to {total}", state.wallets_total)),
        Err(error) => push(format!("Σ wallets: {error}")),
    }
    match state.wallets_total.checked_add(state.holds_total).and_then(|credits| replay.ratio().backing(credits)) {
        Ok(spoken_for) if spoken_for == state.reserved => {}
        Ok(spoken_for) => {
            push(format!("§4.5: reserved {} ≠ ratio × (Σ wallets + Σ open holds) = {spoken_for}", state.reserved))
        }
        Err(error) => push(format!("§4.5: {error}")),
    }
    violations
}

/// SPEC §13 in a store: every wallet is the sum of its open grants, no
/// grant holds less than 0 or more than it granted, every stored grant is
/// what the ledger made of it, and every grant the ledger leaves with
/// credits is in its wallet (a wallet forgets only settled grants).
fn compare_grants(replay: &Replay, stored: &Stored, push: &mut impl FnMut(String)) {
    for (user, grants) in &stored.grants {
        let name = user.as_str();
        let balance = stored.wallets.get(user).copied().unwrap_or(UserCredits::ZERO);
        let wallet = WalletRecord { balance, version: 0, recent: Vec::new(), grants: grants.clone() };
        if !wallet.grants_agree() {
            push(format!("wallet {name:?}: its balance {balance} is not the sum of its open grants (§13)"));
        }
        let replayed = replay.wallets.get(user).map_or(&[][..], |wallet| wallet.grants.as_slice());
        for grant in grants {
            match replayed.iter().find(|other| other.seq == grant.seq) {
                Some(other) if other == grant => {}
                Some(other) => {
                    push(format!("wallet {name:?}: {} stored as {grant:?}, the ledger gives {other:?}", grant.id()))
                }
                None => push(format!("wallet {name:?}: {} stored, but the ledger never made it", grant.id())),
            }
        }
    }
    for (user, wallet) in &replay.wallets {
        let kept = stored.grants.get(user).map_or(&[][..], Vec::as_slice);
        for grant in wallet.grants.iter().filter(|grant| grant.closed.is_none() && !grant.remaining.is_zero()) {
            if !kept.iter().any(|other| other.seq == grant.seq) {
                push(format!(
                    "wallet {:?}: {} has {} left by the ledger, but is missing",
                    user.as_str(),
                    grant.id(),
                    grant.remaining
                ));
            }
        }
    }
    let replayed: std::collections::BTreeSet<(u64, u64)> =
        replay.grant_deadlines().iter().map(|deadline| (deadline.expires_at_ms, deadline.grant.0)).collect();
    if replayed != stored.grant_deadlines {
        let missing: Vec<_> = replayed.difference(&stored.grant_deadlines).collect();
        let extra: Vec<_> = stored.grant_deadlines.difference(&replayed).collect();
        let of = |seq: u64| {
            replay.wallets.iter().find_map(|(user, wallet)| {
                let grant = wallet.grants.iter().find(|grant| grant.seq == seq)?;
                let stored = stored.grants.get(user).and_then(|grants| grants.iter().find(|g| g.seq == seq));
                Some(format!("{user}: ledger {grant:?}, stored {stored:?}"))
            })
        };
        let detail: Vec<_> = missing.iter().map(|(_, seq)| of(*seq)).collect();
        push(format!(
            "grant deadlines: missing {missing:?}, not in the ledger {extra:?} (expiresAt ms, grant); {detail:?}"
        ));
    }
    if stored.expired_days != replay.expired_by_day {
        push(format!("expired by day: stored {:?}, the ledger gives {:?}", stored.expired_days, replay.expired_by_day));
    }
    let (totals, replayed) = (&stored.state.grants, &replay.state.grants);
    if totals != replayed {
        push(format!("grant totals: stored {totals:?}, the ledger gives {replayed:?}"));
    }
}

/// What a store holds besides the ledger (a sled directory, or PostgreSQL).
pub(crate) struct Stored {
    pub(crate) state: InventoryRecord,
    pub(crate) wallets: BTreeMap<UserId, UserCredits>,
    /// Each wallet's grants (SPEC §13).
    pub(crate) grants: BTreeMap<UserId, Vec<Grant>>,
    /// The grant deadlines kept (expiresAt in ms, grant seq).
    pub(crate) grant_deadlines: std::collections::BTreeSet<(u64, u64)>,
    /// The credits expired by UTC day.
    pub(crate) expired_days: BTreeMap<u32, ExpiredDay>,
    pub(crate) holds: BTreeMap<HoldId, &'static str>,
    /// The open-hold index.
    pub(crate) open_index: std::collections::BTreeSet<HoldId>,
    /// Wallets whose latest entry does not show their balance.
    pub(crate) stale_recent: Vec<String>,
    pub(crate) spends: BTreeMap<SpendId, &'static str>,
    /// The open-spend index.
    pub(crate) open_spends: std::collections::BTreeSet<SpendId>,
    pub(crate) packages: BTreeMap<String, PackageOverride>,
    pub(crate) api_keys: BTreeMap<KeyId, ApiKeyRecord>,
}

/// The report on a store whose ledger made `replay` (`entries` of them,
/// `misfiled` violations found while reading) and which holds `stored`.
pub(crate) fn report(entries: u64, mut misfiled: Vec<String>, mut replay: Replay, stored: &Stored) -> CheckReport {
    misfiled.append(&mut replay.violations);
    misfiled.extend(compare(&replay, stored));
    CheckReport {
        entries,
        wallets: stored.wallets.len(),
        provider_balance: stored.state.provider_balance.get(),
        reserved: stored.state.reserved.get(),
        violations: misfiled,
    }
}

fn read_stored(store: &SledStore, state: InventoryRecord) -> Result<Stored, StoreError> {
    let mut stored = Stored {
        state,
        wallets: BTreeMap::new(),
        grants: BTreeMap::new(),
        grant_deadlines: store.grant_deadlines()?.iter().map(|d| (d.expires_at_ms, d.grant.0)).collect(),
        expired_days: store.expired_days()?.into_iter().map(|day| (day.day, day)).collect(),
        holds: BTreeMap::new(),
        open_index: store.open_hold_ids()?.into_iter().collect(),
        stale_recent: Vec::new(),
        spends: BTreeMap::new(),
        open_spends: store.open_spend_ids()?.into_iter().collect(),
        packages: store.package_overrides()?.into_iter().collect(),
        api_keys: store.api_keys()?.into_iter().map(|key| (key.id.clone(), key)).collect(),
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
        stored.wallets.insert(user.clone(), wallet.balance);
        stored.grants.insert(user, wallet.grants);
    }
    for hold in store.holds() {
        let hold = hold?;
        stored.holds.insert(hold.hold_id, hold.state.name());
    }
    for spend in store.spends() {
        let spend = spend?;
        stored.spends.insert(spend.spend_id, spend.state.name());
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
    let store = SledStore::open(directory)?;
    let meta = store.meta()?.ok_or_else(|| CheckError::NotADataDirectory(directory.display().to_string()))?;
    let state = store.inventory()?.ok_or_else(|| CheckError::NotADataDirectory(directory.display().to_string()))?;
    let mut replay = Replay::new(meta.ratio, Money::zero(state.revenue.currency()));
    let mut entries = 0u64;
    let mut misfiled = Vec::new();
    for item in store.ledger() {
        let (seq, entry) = item?;
        if entry.seq != seq {
            misfiled.push(format!("ledger entry {seq}: stored under {seq} but numbered {}", entry.seq));
        }
        replay.apply(&entry);
        entries = entries.saturating_add(1);
    }
    let stored = read_stored(&store, state)?;
    Ok(report(entries, misfiled, replay, &stored))
}
