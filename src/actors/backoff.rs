//! Exponential backoff with full jitter, for the actors that retry over the
//! network (the sync actor, the webhook actor).

use std::time::Duration;

use rand::Rng;

pub const RETRY_DELAY_MIN: Duration = Duration::from_millis(250);
pub const RETRY_DELAY_MAX: Duration = Duration::from_secs(30);

/// Exponential backoff with full jitter: uniform in `[min, min × 2^failures]`,
/// capped at [`RETRY_DELAY_MAX`].
pub fn backoff(failures_in_a_row: u32) -> Duration {
    let ceiling = RETRY_DELAY_MIN.saturating_mul(1u32 << failures_in_a_row.min(10)).min(RETRY_DELAY_MAX);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let floor = u64::try_from(RETRY_DELAY_MIN.as_millis()).unwrap_or(0);
    Duration::from_millis(rand::thread_rng().gen_range(floor..=millis.max(floor)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_within_its_bounds() {
        for failures in 0..40 {
            let delay = backoff(failures);
            assert!(delay >= RETRY_DELAY_MIN && delay <= RETRY_DELAY_MAX, "{failures}: {delay:?}");
        }
    }
}
