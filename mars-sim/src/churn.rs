//! Churn: nodes leaving (crashing or leaving gracefully) and coming back
//! (restarting with their whole state, with their store only, or empty) or
//! being replaced by new nodes.
//!
//! Departures are a Poisson process whose rate is `rate_per_hour` of the
//! live honest population per hour, so a 30 %/h churn over 10,000 nodes is
//! about 3,000 departures an hour, a departure every 1.2 s on average. Each
//! departure is matched by an arrival after a random downtime — the same
//! node restarting, or a newcomer with a fresh identity — so the population
//! stays level. A one-shot kill (a phase's `kill_at_start`) crashes a share
//! of all live nodes at one instant and brings none back.

use std::time::Duration;

use crate::rng::SimRng;

/// How a node goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// It stops answering: requests to it time out.
    Crash,
    /// It closes its connections: requests to it fail at once (the peer's
    /// transport reports the address unreachable).
    Leave,
}

/// What replaces a departed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Return {
    /// The same node (key, address) restarts with its store, routing table
    /// and publications, as a node persisting them would.
    RestartKeepingState,
    /// The same node restarts around its descriptor store alone, as a
    /// process with a durable store does: the node is rebuilt with
    /// `Node::with_store`, its table starts empty and its publisher
    /// application publishes again.
    RestartKeepingStore,
    /// The same node restarts empty: fresh store and table (its publisher
    /// application publishes again).
    RestartFresh,
    /// A new node with a new identity joins instead.
    Newcomer,
}

/// What a restart that keeps something keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kept {
    /// The whole node: store, routing table, publications, timers.
    #[default]
    State,
    /// The descriptor store only.
    Store,
}

impl std::str::FromStr for Kept {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "state" => Ok(Kept::State),
            "store" => Ok(Kept::Store),
            other => Err(format!("'{other}': expected 'state' or 'store'")),
        }
    }
}

/// Churn parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnSpec {
    /// Share of the live honest population departing per hour (0.3 = 30 %/h).
    pub rate_per_hour: f64,
    /// Share of departures that are crashes (the rest leave gracefully).
    pub crash_share: f64,
    /// Share of departed nodes that restart (the rest are replaced by newcomers).
    pub restart_share: f64,
    /// Share of restarts that keep something (the rest restart empty).
    pub keep_state_share: f64,
    /// What those restarts keep.
    pub restart_keeps: Kept,
    /// Mean downtime before the restart or the newcomer (exponential).
    pub mean_downtime: Duration,
}

impl Default for ChurnSpec {
    /// 30 %/h; half crashes, half leaves; half restart (half of those with
    /// their state), half replaced; two minutes' mean downtime.
    fn default() -> Self {
        ChurnSpec {
            rate_per_hour: 0.30,
            crash_share: 0.5,
            restart_share: 0.5,
            keep_state_share: 0.5,
            restart_keeps: Kept::State,
            mean_downtime: Duration::from_secs(120),
        }
    }
}

impl ChurnSpec {
    /// Mean time to the next departure with `live` nodes up (`None`: no churn).
    pub fn mean_gap(&self, live: usize) -> Option<Duration> {
        if self.rate_per_hour <= 0.0 || live == 0 {
            return None;
        }
        let per_sec = self.rate_per_hour * live as f64 / 3600.0;
        Some(Duration::from_secs_f64(1.0 / per_sec))
    }

    /// Draws the time to the next departure.
    pub fn next_gap(&self, live: usize, rng: &mut SimRng) -> Option<Duration> {
        let mean = self.mean_gap(live)?;
        Some(Duration::from_secs_f64(rng.exp(mean.as_secs_f64())))
    }

    /// Draws how the next departure happens and what replaces it, and after
    /// how long.
    pub fn draw(&self, rng: &mut SimRng) -> (Departure, Return, Duration) {
        let departure = if rng.chance(self.crash_share) {
            Departure::Crash
        } else {
            Departure::Leave
        };
        let ret = if rng.chance(self.restart_share) {
            if rng.chance(self.keep_state_share) {
                match self.restart_keeps {
                    Kept::State => Return::RestartKeepingState,
                    Kept::Store => Return::RestartKeepingStore,
                }
            } else {
                Return::RestartFresh
            }
        } else {
            Return::Newcomer
        };
        let downtime = Duration::from_secs_f64(rng.exp(self.mean_downtime.as_secs_f64()));
        (departure, ret, downtime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_percent_an_hour_of_ten_thousand() {
        let c = ChurnSpec::default();
        let gap = c.mean_gap(10_000).unwrap();
        assert!((gap.as_secs_f64() - 1.2).abs() < 1e-9, "{gap:?}");
        let mut rng = SimRng::new(5);
        let n = 20_000;
        let total: f64 = (0..n)
            .map(|_| c.next_gap(10_000, &mut rng).unwrap().as_secs_f64())
            .sum();
        let mean = total / n as f64;
        assert!((1.15..1.25).contains(&mean), "{mean}");
        assert_eq!(
            ChurnSpec {
                rate_per_hour: 0.0,
                ..c
            }
            .mean_gap(10),
            None
        );
    }
}
