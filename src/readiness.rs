//! What the health service reports: SERVING while the database answers, NOT_SERVING while it does not and from
//! the moment shutdown begins, so load balancers send calls to replicas that can serve them.
//!
//! A probe asks the database for `SELECT 1` every `--health-probe-interval`. A probe that fails is tried again at
//! once on another connection (a connection the database closed fails once, then the pool replaces it); only a
//! second failure turns health NOT_SERVING. The first probe that succeeds turns it back. Each turn is logged once,
//! not every probe.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{sync::Mutex, task::JoinHandle, time::MissedTickBehavior};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::{shutdown::Shutdown, store::Store};

/// The statuses the health service reports for `""` and every public service, all alike.
#[derive(Debug, Clone)]
pub(crate) struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    reporter: HealthReporter,
    /// Names reported besides the overall `""`.
    names: Vec<String>,
    /// Serialises changes, so that a probe finishing late cannot report SERVING after shutdown began.
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Serving,
    /// NOT_SERVING since then, because the database did not answer.
    DatabaseDown(Instant),
    Stopping,
}

/// A change of what health reports, made by a probe.
enum Turn {
    Down,
    Up { not_serving_for: Duration },
}

impl Readiness {
    /// Reports SERVING for `""` and every name in `names`.
    pub(crate) async fn serving(reporter: HealthReporter, names: Vec<String>) -> Readiness {
        let readiness = Readiness {
            inner: Arc::new(Inner {
                reporter,
                names,
                state: Mutex::new(State::Serving),
            }),
        };
        readiness.report(ServingStatus::Serving).await;
        readiness
    }

    /// Whether health reports SERVING now.
    pub(crate) async fn is_serving(&self) -> bool {
        matches!(*self.inner.state.lock().await, State::Serving)
    }

    /// Reports NOT_SERVING for good: shutdown has begun.
    pub(crate) async fn stopping(&self) {
        let mut state = self.inner.state.lock().await;
        *state = State::Stopping;
        self.report(ServingStatus::NotServing).await;
    }

    /// Records whether the database answers, and how that turned what health reports (None if it did not).
    async fn database_answers(&self, answers: bool) -> Option<Turn> {
        let mut state = self.inner.state.lock().await;
        let (next, turn, status) = match (*state, answers) {
            (State::Serving, false) => (
                State::DatabaseDown(Instant::now()),
                Turn::Down,
                ServingStatus::NotServing,
            ),
            (State::DatabaseDown(since), true) => (
                State::Serving,
                Turn::Up {
                    not_serving_for: since.elapsed(),
                },
                ServingStatus::Serving,
            ),
            _ => return None,
        };
        *state = next;
        self.report(status).await;
        Some(turn)
    }

    async fn report(&self, status: ServingStatus) {
        self.inner.reporter.set_service_status("", status).await;
        for name in &self.inner.names {
            self.inner.reporter.set_service_status(name, status).await;
        }
    }

    /// Probes `store` every `interval` (each probe given as long to answer) until shutdown begins.
    pub(crate) fn probe(
        &self,
        store: Store,
        interval: Duration,
        shutdown: Shutdown,
    ) -> JoinHandle<()> {
        let readiness = self.clone();
        tokio::spawn(async move {
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.begun() => return,
                    _ = ticks.tick() => {}
                }
                let answer = match ping(&store, interval).await {
                    Ok(()) => Ok(()),
                    Err(_) => ping(&store, interval).await,
                };
                match (readiness.database_answers(answer.is_ok()).await, answer) {
                    (Some(Turn::Down), Err(error)) => tracing::error!(
                        %error,
                        probe_interval = ?interval,
                        "the database does not answer; health reports NOT_SERVING until it does"
                    ),
                    (Some(Turn::Up { not_serving_for }), _) => tracing::warn!(
                        not_serving_seconds = not_serving_for.as_secs_f64(),
                        "the database answers again; health reports SERVING"
                    ),
                    _ => {}
                }
            }
        })
    }
}

/// One `SELECT 1`, failed if it takes longer than `limit`.
async fn ping(store: &Store, limit: Duration) -> Result<(), String> {
    match tokio::time::timeout(limit, store.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {limit:?}")),
    }
}
