//! Starting on a store: `init` (a new sled store) and `recover` (the
//! checks of SPEC §4.5 before anything is served).

use crate::actors::setup::{Recovered, Settings};
use crate::clock::Clock;
use crate::domain::{Package, UserCredits};
use crate::store::records::{InventoryRecord, MetaRecord, PackageOverride};
use crate::store::{SledStore, Store, StoreError, WriteSet};

/// Why the engine would not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "the store was created with ratio {stored}, but ratio {configured} is configured: \
         every stored amount was computed with {stored}; configure ratio {stored}"
    )]
    RatioChanged { stored: u64, configured: u64 },
    #[error(
        "the store was created with currency {stored}, but currency {configured} is configured: \
         its revenue is in {stored}; configure currency {stored}"
    )]
    CurrencyChanged { stored: String, configured: String },
    #[error("the stored state breaks an invariant: {0}")]
    Invariant(String),
}

impl StartError {
    /// The operator must change the configuration or the directory: `serve`
    /// exits 2 (SPEC §11) rather than 1.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::RatioChanged { .. }
                | Self::CurrencyChanged { .. }
                | Self::Store(StoreError::Uninitialised(_) | StoreError::Foreign(_) | StoreError::NotEmpty(_))
        )
    }
}

/// The configured packages, with the operators' stored settings over them.
/// A stored price in another currency than the configured one is ignored.
fn packages_with_overrides(store: &Store, settings: &Settings) -> Result<Vec<Package>, StoreError> {
    let overrides: std::collections::HashMap<String, PackageOverride> =
        store.package_overrides()?.into_iter().collect();
    Ok(settings
        .packages
        .iter()
        .map(|package| match overrides.get(package.id.as_str()) {
            Some(stored) if stored.price.currency() == package.price.currency() => Package {
                id: package.id.clone(),
                credits: stored.credits,
                price: stored.price,
                enabled: stored.enabled,
                expires_after_days: stored.expires_after_days,
            },
            Some(_) => {
                tracing::warn!(package = %package.id, "ignoring a stored package price in another currency");
                package.clone()
            }
            None => package.clone(),
        })
        .collect())
}

/// `creditd init` (SPEC §11): makes a new store in `directory`, which must
/// be missing or empty, recording the configured ratio (in the meta record)
/// and currency (in the revenue of the first inventory record).
///
/// # Errors
/// The directory holds something already, or cannot be written.
pub fn init(directory: &std::path::Path, settings: &Settings, clock: &dyn Clock) -> Result<(), StartError> {
    let store = SledStore::create(directory)?;
    let meta = MetaRecord { ratio: settings.ratio, created_at_ms: clock.now_ms() };
    let state = InventoryRecord::empty(settings.revenue_zero);
    let mut writes = WriteSet::default();
    writes.meta(meta);
    writes.inventory(state);
    store.write_durably([&writes])?;
    store.mark()?;
    Ok(())
}

/// Opens the state of a store `init` made and checks SPEC §4.5 before
/// anything is served: the reserve against the stored totals, Σ open holds
/// against the holds on disk, the ledger's tail against the state, and, if
/// `verify_wallets_at_start`, Σ wallets against every wallet. Start-up time
/// does not grow with the number of users unless asked to.
///
/// # Errors
/// The store is unreadable, was made with another ratio or currency, or its
/// state is inconsistent.
pub fn recover(store: &Store, settings: &Settings) -> Result<Recovered, StartError> {
    let meta = store.meta()?.ok_or_else(|| StoreError::Foreign(store.location()))?;
    if meta.ratio != settings.ratio {
        return Err(StartError::RatioChanged { stored: meta.ratio.get(), configured: settings.ratio.get() });
    }
    let state = store.inventory()?.ok_or_else(|| StartError::Invariant("the inventory record is missing".into()))?;
    let (stored, configured) = (state.revenue.currency(), settings.revenue_zero.currency());
    if stored != configured {
        return Err(StartError::CurrencyChanged { stored: stored.to_string(), configured: configured.to_string() });
    }
    if settings.verify_wallets_at_start {
        verify_wallets(store, &state)?;
    }
    let open_holds = store.open_holds()?;
    let holds_total = open_holds
        .iter()
        .try_fold(UserCredits::ZERO, |sum, hold| sum.checked_add(hold.credits))
        .map_err(|error| StartError::Invariant(format!("Σ open holds: {error}")))?;
    if holds_total != state.holds_total {
        return Err(StartError::Invariant(format!(
            "Σ open holds on disk is {holds_total}, the inventory record says {}",
            state.holds_total
        )));
    }
    let open_spends = store.open_spends()?;
    let spends_total = open_spends
        .iter()
        .try_fold(UserCredits::ZERO, |sum, spend| sum.checked_add(spend.credits))
        .map_err(|error| StartError::Invariant(format!("Σ open spends: {error}")))?;
    if spends_total != state.open_spends {
        return Err(StartError::Invariant(format!(
            "Σ open spends on disk is {spends_total}, the inventory record says {}",
            state.open_spends
        )));
    }
    let spoken_for = state
        .wallets_total
        .checked_add(state.holds_total)
        .and_then(|credits| meta.ratio.backing(credits))
        .map_err(|error| StartError::Invariant(format!("ratio × (Σ wallets + Σ holds): {error}")))?;
    if spoken_for != state.reserved {
        return Err(StartError::Invariant(format!(
            "reserved is {}, but ratio × (Σ wallets + Σ open holds) is {spoken_for}",
            state.reserved
        )));
    }
    let last = state.next_seq.saturating_sub(1);
    let last_at_ms = match store.ledger_entry(last)? {
        Some(entry) => entry.at_ms,
        None if last == 0 => 0,
        None => return Err(StartError::Invariant(format!("ledger entry {last} is missing"))),
    };
    if store.ledger_entry(state.next_seq)?.is_some() {
        return Err(StartError::Invariant(format!("ledger entry {} exists beyond the state", state.next_seq)));
    }
    let packages = packages_with_overrides(store, settings)?;
    let api_keys = store.api_keys()?;
    // What each expiring grant has left is in its wallet: one read per user
    // with such a grant (the gauge of credits expiring soon starts right).
    let mut grant_deadlines = store.grant_deadlines()?;
    let mut wallets = std::collections::HashMap::new();
    for deadline in &mut grant_deadlines {
        if !wallets.contains_key(&deadline.user) {
            wallets.insert(deadline.user.clone(), store.wallet(&deadline.user)?);
        }
        let grant = wallets
            .get(&deadline.user)
            .and_then(Option::as_ref)
            .and_then(|wallet| wallet.grants.iter().find(|grant| grant.id() == deadline.grant));
        match grant {
            Some(grant) => deadline.remaining = grant.remaining,
            None => {
                return Err(StartError::Invariant(format!(
                    "{} of {:?} has a deadline but is not in its wallet",
                    deadline.grant,
                    deadline.user.as_str()
                )))
            }
        }
    }
    let expired_by_day = store.expired_days()?;
    Ok(Recovered { state, open_holds, open_spends, packages, last_at_ms, api_keys, grant_deadlines, expired_by_day })
}

/// Σ wallets on disk against the inventory record's total: O(users), so only
/// when asked (`verify_wallets_at_start`); `creditd check` always does it.
fn verify_wallets(store: &Store, state: &InventoryRecord) -> Result<(), StartError> {
    let mut wallets_total = UserCredits::ZERO;
    for (_, wallet) in store.all_wallets()? {
        wallets_total = wallets_total
            .checked_add(wallet.balance)
            .map_err(|error| StartError::Invariant(format!("Σ wallets: {error}")))?;
    }
    if wallets_total != state.wallets_total {
        return Err(StartError::Invariant(format!(
            "Σ wallets on disk is {wallets_total}, the inventory record says {}",
            state.wallets_total
        )));
    }
    Ok(())
}
