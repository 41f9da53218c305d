//! The transform slot: one transform at a time per isolate. Concurrent requests share
//! one WASM memory that never shrinks, so two large decodes at once could pass the
//! 128 MiB ceiling. Serving requests and the AVIF consumer both take it; a request that
//! waits past [`SLOT_WAIT`] gets its own error (503 `transform_busy`, `Retry-After`).

use std::cell::Cell;
use std::time::Duration;

use worker::Delay;

use super::now_ms;
use crate::error::EdgeError;

thread_local! {
    static TRANSFORMING: Cell<bool> = const { Cell::new(false) };
}

/// Longest a request waits for the slot.
pub(super) const SLOT_WAIT: Duration = Duration::from_secs(20);

/// The slot, held until dropped.
pub(super) struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        TRANSFORMING.with(|t| t.set(false));
    }
}

/// Waits for the slot at most `wait`.
pub(super) async fn acquire(wait: Duration, retry_after_secs: u32) -> Result<Slot, EdgeError> {
    let started = now_ms();
    loop {
        if TRANSFORMING.with(|t| !t.replace(true)) {
            return Ok(Slot);
        }
        if now_ms() - started > wait.as_millis() as f64 {
            return Err(EdgeError::TransformBusy {
                waited_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                retry_after_secs,
            });
        }
        Delay::from(Duration::from_millis(5)).await;
    }
}
