//! The provider sync (SPEC §6), the kill switch and package changes.

use super::books::SyncWindow;
use super::change::{Change, Decision};
use super::{Books, EngineError, Now};
use crate::domain::{Package, PackageId, ProviderCredits, UserCredits};
use crate::store::records::{EntryKind, PackageOverride, SyncRecord};
use crate::store::writes::Write;

/// Identifies the sync window a real balance belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncToken(u64);

/// Sets the provider balance from a real balance fetched after `token`.
#[derive(Debug, Clone, Copy)]
pub struct ApplySync {
    pub real: ProviderCredits,
    pub token: SyncToken,
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncOutcome {
    pub real: ProviderCredits,
    pub previous: ProviderCredits,
    pub balance: ProviderCredits,
    /// `ratio ×` the spends it held back (SPEC §6).
    pub held_back: ProviderCredits,
    pub drift: Option<i64>,
    /// The drift is within what spends in flight explain (SPEC §6): from
    /// `−` what this sync held back to `+` what the previous one did. Such
    /// a drift raises no `drift` alert.
    pub drift_explained: bool,
}

impl Books {
    /// Opens the window of a sync request that leaves now: from here on,
    /// spends completed are counted so that the sync holds them back (the
    /// provider may not have consumed them when it read its balance, SPEC
    /// §6). A newer window replaces an older one. Answers the window's token.
    pub fn begin_sync(&mut self) -> SyncToken {
        let token = self.next_sync_token;
        self.next_sync_token = self.next_sync_token.saturating_add(1);
        self.sync_window = Some(SyncWindow { token, completed: ProviderCredits::ZERO });
        SyncToken(token)
    }

    /// Closes the sync window: its answer is decided.
    pub fn end_sync(&mut self) {
        self.sync_window = None;
    }

    /// SPEC §6: the provider balance becomes the real balance minus what the
    /// sync holds back, `ratio ×` the spends still open now and those
    /// completed while the request was in flight: the provider may consume
    /// the first later, and may have read its balance before consuming the
    /// second. Counting them as still to come can only under-estimate.
    pub fn decide_sync(&self, inputs: &Now, message: ApplySync) -> Result<(Change, SyncOutcome), EngineError> {
        self.ensure_writable(inputs)?;
        let window = self
            .sync_window
            .filter(|window| window.token == message.token.0)
            .ok_or(EngineError::Overloaded("a newer sync started"))?;
        let held_back = self.ratio.backing(self.state.open_spends)?.checked_add(window.completed)?;
        let previous = self.state.provider_balance;
        let balance = message.real.saturating_sub(held_back);
        // What the provider should have reported if nothing drifted and it
        // had consumed none of the held-back spends.
        let expected = previous.checked_add(held_back)?;
        let drift = self.state.last_sync.map(|_| signed(message.real).saturating_sub(signed(expected)));
        // A held-back spend consumed before the provider read its balance
        // makes the drift negative, down to −held_back; one the previous sync
        // held back and the provider had consumed before that read makes the
        // next drift positive, up to what that sync held back.
        let previous_held_back = self.state.last_sync.map_or(0, |sync| signed(sync.held_back));
        let drift_explained = drift.is_none_or(|drift| (-signed(held_back)..=previous_held_back).contains(&drift));
        let mut change = self.begin(inputs);
        change.next.provider_balance = balance;
        change.next.held_back = held_back;
        change.next.last_sync =
            Some(SyncRecord { at_ms: change.at_ms, real: message.real, drift, seq: change.next_seq(), held_back });
        let kind = EntryKind::ProviderSync { real: message.real, previous, held_back, drift };
        change.record(None, None, kind, None)?;
        let outcome = SyncOutcome { real: message.real, previous, balance, held_back, drift, drift_explained };
        Ok((change, outcome))
    }
}

/// Quantities are bounded by 2^53, so they always fit an `i64`.
fn signed(credits: ProviderCredits) -> i64 {
    i64::try_from(credits.get()).unwrap_or(i64::MAX)
}

/// Turn the kill switch on (`enabled: false`, with a reason) or off.
#[derive(Debug, Clone)]
pub struct SetPurchasesEnabled {
    pub enabled: bool,
    pub reason: Option<String>,
}

/// The kill switch after a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchasesState {
    pub enabled: bool,
    pub reason: Option<String>,
}

impl Books {
    pub fn decide_kill_switch(
        &self,
        inputs: &Now,
        message: SetPurchasesEnabled,
    ) -> Result<Decision<PurchasesState>, EngineError> {
        self.ensure_writable(inputs)?;
        let reason = if message.enabled { None } else { message.reason };
        let answer = PurchasesState { enabled: message.enabled, reason: reason.clone() };
        if self.state.purchases_enabled == message.enabled && self.state.disabled_reason == reason {
            return Ok(Decision::Replay(answer));
        }
        let mut change = self.begin(inputs);
        change.next.purchases_enabled = message.enabled;
        change.next.disabled_reason.clone_from(&reason);
        let kind = match reason {
            Some(reason) => EntryKind::PurchasesDisabled { reason },
            None => EntryKind::PurchasesEnabled,
        };
        change.record(None, None, kind, None)?;
        Ok(Decision::Apply(Box::new(change), answer))
    }
}

/// Change a package's settings; `None` keeps a field as it is.
#[derive(Debug, Clone)]
pub struct UpdatePackage {
    pub package_id: PackageId,
    pub enabled: Option<bool>,
    pub credits: Option<UserCredits>,
    pub price_minor_units: Option<u64>,
    /// `Some(None)`: the credits never expire (SPEC §13).
    pub expires_after_days: Option<Option<u32>>,
}

impl Books {
    pub fn decide_package(&self, inputs: &Now, message: &UpdatePackage) -> Result<Decision<Package>, EngineError> {
        self.ensure_writable(inputs)?;
        let current = self
            .packages
            .iter()
            .find(|package| package.id == message.package_id)
            .ok_or_else(|| EngineError::UnknownPackage(message.package_id.clone()))?;
        let price = match message.price_minor_units {
            Some(minor) => crate::domain::Money::new(minor, current.price.currency())
                .map_err(|_| EngineError::Quantity(crate::domain::QuantityError::Overflow))?,
            None => current.price,
        };
        let credits = message.credits.unwrap_or(current.credits);
        let enabled = message.enabled.unwrap_or(current.enabled);
        // The edge bounds an update already; a package out of bounds is never adopted.
        let expires_after_days = message.expires_after_days.unwrap_or(current.expires_after_days);
        let updated = Package::new(current.id.clone(), credits, price, enabled)
            .and_then(|package| package.expiring_after(expires_after_days))
            .map_err(|_| EngineError::Quantity(crate::domain::QuantityError::Overflow))?;
        if &updated == current {
            return Ok(Decision::Replay(updated));
        }
        let mut change = self.begin(inputs);
        let kind = EntryKind::PackageChanged {
            package_id: updated.id.clone(),
            enabled: updated.enabled,
            credits: updated.credits,
            price: updated.price,
        };
        change.record(None, None, kind, None)?;
        if updated.expires_after_days != current.expires_after_days {
            let kind = EntryKind::PackageExpiryChanged {
                package_id: updated.id.clone(),
                expires_after_days: updated.expires_after_days,
            };
            change.record(None, None, kind, None)?;
        }
        let stored = PackageOverride {
            enabled: updated.enabled,
            credits: updated.credits,
            price: updated.price,
            expires_after_days: updated.expires_after_days,
        };
        change.writes.push(Write::Package { id: updated.id.clone(), settings: stored });
        change.package = Some(updated.clone());
        Ok(Decision::Apply(Box::new(change), updated))
    }
}
