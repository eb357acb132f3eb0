//! The wall clock quinn-proto stamps its address-validation tokens with
//! (QUIC Retry tokens, and their 15 s lifetime), fed from the host's `now`
//! instead of `SystemTime::now()` — quinn's default, which would be the one
//! clock read in a Sans-IO host, and would make Retry tokens expire in real
//! time under a virtual clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::time::Timestamp;

/// The host's current wall-clock time, shared with its `ServerConfig`.
#[derive(Debug, Clone)]
pub(super) struct TokenClock(Arc<AtomicU64>);

impl TokenClock {
    pub(super) fn new(now: Timestamp) -> Self {
        TokenClock(Arc::new(AtomicU64::new(now.as_micros())))
    }

    /// Moves the clock to `now` (the host never goes backwards).
    pub(super) fn set(&self, now: Timestamp) {
        self.0.store(now.as_micros(), Ordering::Relaxed);
    }
}

impl quinn_proto::TimeSource for TokenClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.0.load(Ordering::Relaxed))
    }
}
