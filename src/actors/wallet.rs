//! Wallet actors: one per active user, owning that user's wallet.
//!
//! A wallet actor loads its wallet from the store on first use, handles one
//! operation at a time (each waits for the inventory's durable answer before
//! the next starts, so the wallet it reports is always the one on disk), and
//! retires itself after [`Settings::wallet_idle`] without use.
//!
//! Retirement is the delicate part: an actor removes itself from the
//! [`WalletDirectory`] and sets `retired` in the same step, and a retired
//! actor refuses every later message with [`WalletError::Retired`], which the
//! caller answers by asking the directory again. So at most one actor per
//! user ever changes a wallet, and the next one starts from the disk. The
//! store double-checks this with the wallet's version on every write.
//!
//! Messages: [`ApplyToWallet`] (from `engine::Engine`). Sends:
//! `inventory::WalletChange`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::inventory::{InventoryActor, WalletChange, WalletCommand, WalletReceipt};
use super::EngineError;
use crate::domain::UserId;
use crate::store::records::WalletRecord;
use crate::store::Store;

/// Why a wallet actor did not perform an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    #[error("this wallet actor has retired; ask the directory again")]
    Retired,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub struct WalletActor {
    user: UserId,
    generation: u64,
    /// `None` until loaded from the store.
    wallet: Option<WalletRecord>,
    last_used: Instant,
    /// An operation is waiting for the inventory: the actor must not retire
    /// under it, or its caller would see the mailbox close and not know
    /// whether the change was made.
    busy: bool,
    retired: bool,
    directory: Arc<WalletDirectory>,
}

impl WalletActor {
    fn loaded_wallet(&mut self) -> Result<WalletRecord, WalletError> {
        if self.retired {
            return Err(WalletError::Retired);
        }
        self.last_used = Instant::now();
        if let Some(wallet) = &self.wallet {
            return Ok(wallet.clone());
        }
        let wallet = self.directory.store.wallet(&self.user).map_err(EngineError::from)?.unwrap_or_default();
        self.wallet = Some(wallet.clone());
        Ok(wallet)
    }
}

impl Actor for WalletActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let idle = self.directory.idle;
        ctx.run_interval(idle / 2, move |actor, ctx| {
            if !actor.busy && actor.last_used.elapsed() >= idle && actor.directory.retire(&actor.user, actor.generation)
            {
                actor.retired = true;
                ctx.stop();
            }
        });
    }
}

/// Perform a wallet command (purchase, capture, spend, refund) on this wallet.
#[derive(Debug, Clone)]
pub struct ApplyToWallet(pub WalletCommand);

impl Message for ApplyToWallet {
    type Result = Result<WalletReceipt, WalletError>;
}

impl Handler<ApplyToWallet> for WalletActor {
    type Result = AtomicResponse<Self, Result<WalletReceipt, WalletError>>;

    fn handle(&mut self, message: ApplyToWallet, _: &mut Self::Context) -> Self::Result {
        let wallet = match self.loaded_wallet() {
            Ok(wallet) => wallet,
            Err(error) => return AtomicResponse::new(Box::pin(fut::ready(Err(error)))),
        };
        let change = WalletChange { user: self.user.clone(), wallet, command: message.0 };
        // No timeout here on purpose: the inventory always answers once the
        // change is durable or failed, and giving up early would leave this
        // actor with a wallet older than the disk's.
        let request = self.directory.inventory.send(change);
        self.busy = true;
        AtomicResponse::new(Box::pin(request.into_actor(self).map(|answer, actor, _| {
            actor.busy = false;
            actor.last_used = Instant::now();
            // The inventory may have decided the change before it stopped answering.
            let outcome =
                answer.map_err(|_| EngineError::OutcomeUnknown("the inventory stopped answering".into()))??;
            if let Some(wallet) = outcome.wallet {
                actor.wallet = Some(wallet);
            }
            Ok(outcome.receipt)
        })))
    }
}

/// Finds or starts the wallet actor of a user. Shared by all HTTP workers.
pub struct WalletDirectory {
    actors: Mutex<HashMap<UserId, (u64, Addr<WalletActor>)>>,
    next_generation: AtomicU64,
    arbiter: ArbiterHandle,
    inventory: Addr<InventoryActor>,
    store: Store,
    idle: Duration,
}

impl WalletDirectory {
    /// Wallet actors run on `arbiter`, off the HTTP workers.
    pub fn new(arbiter: ArbiterHandle, inventory: Addr<InventoryActor>, store: Store, idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            actors: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
            arbiter,
            inventory,
            store,
            idle,
        })
    }

    /// The live actor of `user`, started if there is none.
    pub fn wallet(self: &Arc<Self>, user: &UserId) -> Addr<WalletActor> {
        let mut actors = self.actors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, address)) = actors.get(user) {
            if address.connected() {
                return address.clone();
            }
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let directory = Arc::clone(self);
        let owner = user.clone();
        let address = WalletActor::start_in_arbiter(&self.arbiter, move |_| WalletActor {
            user: owner,
            generation,
            wallet: None,
            last_used: Instant::now(),
            busy: false,
            retired: false,
            directory,
        });
        actors.insert(user.clone(), (generation, address.clone()));
        address
    }

    /// Removes the actor of `user` if it is still `generation`; true if it was.
    fn retire(&self, user: &UserId, generation: u64) -> bool {
        let mut actors = self.actors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match actors.get(user) {
            Some((current, _)) if *current == generation => {
                actors.remove(user);
                true
            }
            _ => false,
        }
    }

    /// How many wallet actors are alive.
    pub fn live(&self) -> usize {
        self.actors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }
}
