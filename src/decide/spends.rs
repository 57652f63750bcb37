//! The end of an open spend (SPEC §5): completed by the enhancement service
//! when the provider did the work (here), or by time
//! (`Books::decide_completions`). A refund is a wallet change
//! (`wallets.rs`), since it gives the user's credits back.

use super::change::Decision;
use super::{Books, EngineError, Now, Prefetched};
use crate::domain::{Caller, SpendId, UserId};
use crate::store::records::{CompletedBy, CompletionReceipt, SpendState};

impl Books {
    /// Completes an open spend; a completed one answers the same again; a
    /// refunded one is `already_refunded`.
    pub fn decide_complete(
        &self,
        inputs: &Now,
        prefetched: &Prefetched,
        user: &UserId,
        spend_id: &SpendId,
        by: &Caller,
    ) -> Result<Decision<CompletionReceipt>, EngineError> {
        let spend = self.finishable_spend(prefetched, user, spend_id, by)?;
        let receipt =
            CompletionReceipt { spend_id: spend.spend_id.clone(), user_id: spend.user.clone(), credits: spend.credits };
        match spend.state {
            SpendState::Refunded(_) => Err(EngineError::AlreadyRefunded),
            SpendState::Completed { .. } => Ok(Decision::Replay(receipt)),
            SpendState::Open => {
                let mut change = self.begin(inputs);
                self.complete(&mut change, &spend, CompletedBy::Service)?;
                Ok(Decision::Apply(Box::new(change), receipt))
            }
        }
    }
}
