//! The per-user wallet actors (SPEC §10): one actix actor per active user,
//! started by the user's first request ([`WalletDirectory::get`]) and retired
//! when idle with nothing in flight.
//!
//! Each owns its user's side. It loads the wallet from the store (off the
//! inventory's thread: on sled it reads at once on its own arbiter, a lookup
//! in sled's page cache; on PostgreSQL, where a read is a network round trip,
//! on a blocking thread), keeps the user's requests in order (one at a time:
//! [`AtomicResponse`] holds the mailbox until the answer is in), serves the
//! wallet reads, and fetches everything a decision about its user needs
//! (the idempotency record of the caller's key, the hold or spend named, the
//! wallet at its version) before it sends one [`Decide`] to the inventory.
//! When the inventory answers [`Decided::Refetch`] (a record moved while the
//! command waited), it reads again and sends the command back.
//!
//! Why the wallet it keeps is the newest: every change to a user's wallet is
//! a command that passes through this actor, one at a time, and each answer
//! carries the wallet as the change left it. An answer whose outcome is not
//! known (a failed or unconfirmed commit) drops the copy, so the next command
//! reads the store again. The inventory still checks the version
//! (`decide::settled`), and the store refuses a stale wallet write.

mod directory;

pub use directory::{WalletDirectory, WalletThreads};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::inventory::{Decide, Decided, InventoryActor};
use super::EngineError;
use crate::clock::Clock;
use crate::decide::{Prefetched, UserCommand, UserReceipt};
use crate::domain::UserId;
use crate::store::commit::Visible;
use crate::store::records::{LedgerEntry, WalletRecord};
use crate::store::Store;

/// How often a command is read again after the inventory found a prefetched
/// record moved. A refetch needs a change to the same record between the
/// read and the decision, so a second one in a row is already remarkable.
const REFETCH_ATTEMPTS_MAX: usize = 4;

/// A user's wallet and their most recent ledger entries, each spend with
/// the state it is in as stored.
pub type WalletPage = (WalletRecord, Vec<(LedgerEntry, Option<&'static str>)>);

/// What every wallet actor is started with.
#[derive(Clone)]
pub struct WalletDeps {
    pub store: Store,
    pub inventory: Addr<InventoryActor>,
    pub visible: Visible,
    pub clock: Arc<dyn Clock>,
    /// A wallet actor with nothing in flight retires after this long unused.
    pub idle: Duration,
}

pub struct WalletActor {
    user: UserId,
    /// Shared by every wallet actor: one pointer each.
    deps: Arc<WalletDeps>,
    /// When it last finished a request, or `BUSY`: read by the directory's sweep.
    used: Arc<std::sync::atomic::AtomicU64>,
    /// The wallet as the last change left it: `None` until loaded (or after
    /// an answer whose outcome is not known); `Some(None)` when the store
    /// holds no wallet for the user.
    wallet: Option<Option<WalletRecord>>,
}

type Reads = Pin<Box<dyn Future<Output = Result<Prefetched, EngineError>>>>;

impl WalletActor {
    fn new(user: UserId, deps: Arc<WalletDeps>, used: Arc<std::sync::atomic::AtomicU64>) -> Self {
        Self { user, deps, used, wallet: None }
    }

    /// Reads what `command` needs, noting first what the store shows: at
    /// once when the store reads locally (sled) or when nothing needs a
    /// round trip (PostgreSQL: the wallet is kept here and a new key is known
    /// to be new), else on a blocking thread.
    fn reads(&self, command: &UserCommand) -> Reads {
        let needs = command.needs();
        let user = self.user.clone();
        let cached = if needs.wallet { self.wallet.clone() } else { Some(None) };
        let key = needs.key.map(|(operation, key)| (operation, key.clone()));
        let hold = needs.hold.cloned();
        let spend = needs.spend.cloned();
        let store = self.deps.store.clone();
        // First: whatever is read from here on shows every change up to `seen`
        // (a key made durable is known to the store before `seen` covers it).
        let seen = self.deps.visible.load();
        let key_may_exist =
            key.as_ref().is_some_and(|(operation, key)| store.may_know(*operation, Some(&key.caller), &key.key));
        let local = store.reads_locally() || (cached.is_some() && hold.is_none() && spend.is_none() && !key_may_exist);
        let read = move |store: &Store| -> Result<Prefetched, EngineError> {
            let wallet = match cached {
                Some(wallet) => wallet,
                None => store.wallet(&user)?,
            };
            let idempotency = match &key {
                Some((operation, key)) if key_may_exist => {
                    store.idempotency(*operation, Some(&key.caller), &key.key)?
                }
                _ => None,
            };
            let hold = match &hold {
                Some(id) => store.hold(id)?,
                None => None,
            };
            let spend = match &spend {
                Some(id) => store.spend(id)?,
                None => None,
            };
            Ok(Prefetched { seen, wallet, idempotency, hold, spend })
        };
        if local {
            return Box::pin(std::future::ready(read(&store)));
        }
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read(&store))
                .await
                .map_err(|_| EngineError::Overloaded("the read was cancelled"))?
        })
    }

    /// Reads, then hands `command` to the inventory; reads again on a refetch.
    fn attempt(&mut self, command: UserCommand, attempts_left: usize) -> ResponseActFuture<Self, Outcome> {
        let needs_wallet = command.needs().wallet;
        Box::pin(self.reads(&command).into_actor(self).then(
            move |prefetched, actor, _| -> ResponseActFuture<Self, Outcome> {
                let prefetched = match prefetched {
                    Ok(prefetched) => prefetched,
                    Err(error) => return Box::pin(fut::ready(Err(error))),
                };
                if needs_wallet {
                    actor.wallet = Some(prefetched.wallet.clone());
                }
                let decide = Decide { user: actor.user.clone(), command, prefetched };
                Box::pin(actor.deps.inventory.send(decide).into_actor(actor).then(
                    move |answer, actor, _| -> ResponseActFuture<Self, Outcome> {
                        match answer {
                            Ok(Ok(Decided::Done(receipt, wallet))) => {
                                if let Some(wallet) = wallet {
                                    actor.wallet = Some(Some(wallet));
                                }
                                Box::pin(fut::ready(Ok(receipt)))
                            }
                            Ok(Ok(Decided::Refetch(command))) => {
                                actor.wallet = None;
                                metrics::counter!("creditd_wallet_refetches_total").increment(1);
                                if attempts_left > 1 {
                                    actor.attempt(command, attempts_left - 1)
                                } else {
                                    Box::pin(fut::ready(Err(EngineError::Overloaded(
                                        "the records of this request kept moving while they were read",
                                    ))))
                                }
                            }
                            Ok(Err(error)) => {
                                if matches!(error, EngineError::OutcomeUnknown(_) | EngineError::Storage(_)) {
                                    actor.wallet = None;
                                }
                                Box::pin(fut::ready(Err(error)))
                            }
                            Err(_) => {
                                actor.wallet = None;
                                Box::pin(fut::ready(Err(EngineError::OutcomeUnknown(
                                    "the inventory stopped before answering".into(),
                                ))))
                            }
                        }
                    },
                ))
            },
        ))
    }

    /// Serves one request with the mailbox held; marks the actor busy
    /// meanwhile, so that the directory's sweep does not retire it.
    fn serve<T: 'static>(
        &mut self,
        work: ResponseActFuture<Self, Result<T, EngineError>>,
    ) -> AtomicResponse<Self, Result<T, EngineError>> {
        use std::sync::atomic::Ordering;
        self.used.store(directory::BUSY, Ordering::Release);
        AtomicResponse::new(Box::pin(work.map(|result, actor: &mut Self, _| {
            actor.used.store(actor.deps.clock.monotonic_ms(), Ordering::Release);
            result
        })))
    }
}

type Outcome = Result<UserReceipt, EngineError>;

impl Actor for WalletActor {
    type Context = Context<Self>;
}

/// From the directory's sweep: the actor left the directory; stop.
#[derive(Debug, Clone, Copy)]
pub struct Retire;

impl Message for Retire {
    type Result = ();
}

impl Handler<Retire> for WalletActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Run a command about this actor's user.
#[derive(Debug)]
pub struct Run(pub UserCommand);

impl Message for Run {
    type Result = Outcome;
}

impl Handler<Run> for WalletActor {
    type Result = AtomicResponse<Self, Outcome>;

    fn handle(&mut self, message: Run, _: &mut Self::Context) -> Self::Result {
        let work = self.attempt(message.0, REFETCH_ATTEMPTS_MAX);
        self.serve(work)
    }
}

/// The user's wallet and up to `limit` of their most recent ledger entries.
#[derive(Debug, Clone, Copy)]
pub struct ReadWallet {
    pub limit: usize,
}

impl Message for ReadWallet {
    type Result = Result<WalletPage, EngineError>;
}

impl Handler<ReadWallet> for WalletActor {
    type Result = AtomicResponse<Self, Result<WalletPage, EngineError>>;

    fn handle(&mut self, message: ReadWallet, _: &mut Self::Context) -> Self::Result {
        let (user, cached, limit) = (self.user.clone(), self.wallet.clone(), message.limit);
        let store = self.deps.store.clone();
        let read = async move {
            tokio::task::spawn_blocking(move || -> Result<(Option<WalletRecord>, Vec<_>), EngineError> {
                let wallet = match cached {
                    Some(wallet) => wallet,
                    None => store.wallet(&user)?,
                };
                let Some(wallet) = wallet else { return Ok((None, Vec::new())) };
                let mut entries = Vec::new();
                // A spend's entry with where the spend stands now, as stored.
                for entry in store.wallet_entries(&wallet, limit)? {
                    let state = match &entry.kind {
                        crate::store::records::EntryKind::Spend { spend_id, .. } => {
                            store.spend(spend_id)?.map(|spend| spend.state.name())
                        }
                        _ => None,
                    };
                    entries.push((entry, state));
                }
                Ok((Some(wallet), entries))
            })
            .await
            .map_err(|_| EngineError::Overloaded("the read was cancelled"))?
        };
        let work = Box::pin(read.into_actor(self).map(|result, actor: &mut Self, _| {
            let (wallet, entries) = result?;
            actor.wallet = Some(wallet.clone());
            let wallet = wallet.ok_or(EngineError::UnknownUser)?;
            Ok((wallet, entries))
        }));
        self.serve(work)
    }
}
