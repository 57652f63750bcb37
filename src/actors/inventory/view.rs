//! What the inventory shows: the view computed from the published inputs
//! (the catalogue and status never queue for the actor), and `Snapshot`.

use std::sync::Arc;

use actix::prelude::*;

use super::InventoryActor;
use crate::domain::{Capacity, Package, PlatformStatus, ProviderCredits, Ratio, UserCredits};
use crate::store::records::{InventoryRecord, SyncRecord};

impl InventoryActor {
    pub(super) fn view(&self) -> InventoryView {
        InventoryView::of(&self.view_inputs(), self.books.ensure_ready(&self.now()).is_ok())
    }

    /// What the view is computed from: a few numbers and shared packages, so
    /// that publishing them after every change costs one small allocation.
    pub(super) fn view_inputs(&self) -> ViewInputs {
        ViewInputs {
            state: self.books.state.clone(),
            packages: Arc::clone(&self.books.packages),
            ratio: self.books.ratio,
            warning_level: self.books.warning_level,
            open_holds: self.books.open_counts().0,
            open_spends: self.books.open_counts().1,
        }
    }
}

/// The inventory as of one change, published for the public reads.
#[derive(Debug, Clone)]
pub struct ViewInputs {
    state: InventoryRecord,
    packages: Arc<Vec<Package>>,
    ratio: Ratio,
    warning_level: ProviderCredits,
    open_holds: usize,
    open_spends: usize,
}

impl InventoryView {
    /// The view of `inputs`; `ready` as the engine's health says.
    pub fn of(inputs: &ViewInputs, ready: bool) -> Self {
        let state = &inputs.state;
        let capacity = Capacity {
            provider_balance: state.provider_balance,
            reserved: state.reserved,
            ratio: inputs.ratio,
            held_back: state.held_back,
        };
        let status = PlatformStatus::of(&capacity, state.purchases_enabled, inputs.warning_level);
        let limited = capacity.available() < i64::try_from(inputs.warning_level.get()).unwrap_or(i64::MAX);
        let packages = inputs
            .packages
            .iter()
            .map(|package| {
                let sellable = capacity.times_sellable(package.credits);
                let buyable = package.enabled && sellable > 0 && state.purchases_enabled && !capacity.overcommitted();
                let message = if !state.purchases_enabled {
                    Some(PlatformStatus::Disabled.message())
                } else if !buyable {
                    Some(PACKAGE_UNAVAILABLE)
                } else if limited {
                    Some(PlatformStatus::Limited.message())
                } else {
                    None
                };
                PackageView { package: package.clone(), sellable, disabled: !buyable, message }
            })
            .collect();
        Self {
            capacity,
            status,
            purchases_enabled: state.purchases_enabled,
            disabled_reason: state.disabled_reason.clone(),
            packages,
            last_sync: state.last_sync,
            wallets_total: state.wallets_total,
            holds_total: state.holds_total,
            revenue: state.revenue,
            consumed_total: state.consumed_total,
            grants: state.grants,
            expiring_soon: UserCredits::ZERO,
            open_holds: inputs.open_holds,
            open_spends: inputs.open_spends,
            open_spends_total: state.open_spends,
            ready,
        }
    }
}

/// The message a package that cannot be bought now carries (SPEC §5).
pub const PACKAGE_UNAVAILABLE: &str = "Temporarily unavailable";

/// The catalogue, the status and the numbers behind them.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot;

#[derive(Debug, Clone)]
pub struct PackageView {
    pub package: Package,
    /// How many times it can still be sold (SPEC §2's "sellable 23 times").
    pub sellable: u64,
    pub disabled: bool,
    pub message: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct InventoryView {
    pub capacity: Capacity,
    pub status: PlatformStatus,
    pub purchases_enabled: bool,
    pub disabled_reason: Option<String>,
    pub packages: Vec<PackageView>,
    pub last_sync: Option<SyncRecord>,
    pub wallets_total: UserCredits,
    pub holds_total: UserCredits,
    pub revenue: crate::domain::Money,
    pub consumed_total: ProviderCredits,
    /// What grants gave back, and the promotional credits outstanding (SPEC §13).
    pub grants: crate::store::records::GrantTotals,
    /// Credits of grants that expire within seven days (set by [`Snapshot`]
    /// only: a published view leaves it 0).
    pub expiring_soon: UserCredits,
    pub open_holds: usize,
    /// Spends neither completed nor refunded (SPEC §5), and their credits.
    pub open_spends: usize,
    pub open_spends_total: UserCredits,
    pub ready: bool,
}

impl Message for Snapshot {
    type Result = InventoryView;
}

impl Handler<Snapshot> for InventoryActor {
    type Result = MessageResult<Snapshot>;

    fn handle(&mut self, _: Snapshot, ctx: &mut Self::Context) -> Self::Result {
        self.expire_due(ctx);
        let mut view = self.view();
        view.expiring_soon = self.books.expiring_within(self.now().now_ms, crate::domain::grants::EXPIRING_WITHIN_MS);
        MessageResult(view)
    }
}

// ---------------------------------------------------------------------------
// Backups (SPEC §11).
