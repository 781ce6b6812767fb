//! What goes wrong, decided by the seed: every call a fake serves goes
//! through [`Faults::call`], which adds latency and may, at random, refuse
//! it (a throttle, a 5xx), let it land and lose its answer, make it hang
//! until the caller's timeout, or crash the invocation that made it — before
//! the call had its effect or after — by dropping the invocation's future
//! at that await point, as Lambda drops a sandbox that dies or times out.
//! Long outages (the seed's "permanent failure budget") make a service fail
//! every call for a while; what they park in a dead-letter queue is
//! explained by them.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use domain::error::DependencyError;
use tokio::time::Instant;

use crate::trace::Trace;

tokio::task_local! {
    /// The invocation whose future is being polled: fakes crash it.
    static INVOCATION: Arc<Invocation>;
}

/// One Lambda invocation (or one request a sender makes): a name for the
/// trace, and whether a fake crashed it.
struct Invocation {
    name: String,
    crashed: AtomicBool,
}

/// Who is acting: the invocation being polled, or the simulation itself.
pub fn actor() -> String {
    INVOCATION
        .try_with(|i| i.name.clone())
        .unwrap_or_else(|_| "sim".to_owned())
}

/// Whether an invocation is being polled (only an invocation can crash).
fn in_invocation() -> bool {
    INVOCATION.try_with(|_| ()).is_ok()
}

/// How an invocation ended.
#[derive(Debug)]
pub enum Ended<T> {
    Completed(T),
    /// A fake crashed it: its future was dropped at that await point.
    Crashed,
    /// It ran past its limit (Lambda's timeout): dropped there.
    TimedOut,
}

/// Runs `work` as the invocation `name`, for at most `limit`: fakes called
/// while it runs may crash it, and it is dropped at once when they do.
pub async fn invoke<F: Future>(
    name: impl Into<String>,
    limit: Duration,
    work: F,
) -> Ended<F::Output> {
    let invocation = Arc::new(Invocation {
        name: name.into(),
        crashed: AtomicBool::new(false),
    });
    let scoped = INVOCATION.scope(Arc::clone(&invocation), work);
    let mut scoped = std::pin::pin!(scoped);
    let guarded = std::future::poll_fn(|cx| match scoped.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending if invocation.crashed.load(Ordering::SeqCst) => Poll::Ready(None),
        Poll::Pending => Poll::Pending,
    });
    match tokio::time::timeout(limit, guarded).await {
        Ok(Some(out)) => Ended::Completed(out),
        Ok(None) => Ended::Crashed,
        Err(_) => Ended::TimedOut,
    }
}

/// The services the fakes stand in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    EventsTable,
    EntitiesTable,
    SyncStateTable,
    JobsQueue,
    SecretsManager,
    Partner,
    RevelApi,
}

impl Service {
    pub const ALL: [Self; 7] = [
        Self::EventsTable,
        Self::EntitiesTable,
        Self::SyncStateTable,
        Self::JobsQueue,
        Self::SecretsManager,
        Self::Partner,
        Self::RevelApi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::EventsTable => "events-table",
            Self::EntitiesTable => "entities-table",
            Self::SyncStateTable => "sync-state-table",
            Self::JobsQueue => "jobs-queue",
            Self::SecretsManager => "secrets-manager",
            Self::Partner => "partner",
            Self::RevelApi => "revel-api",
        }
    }

    /// How long a call takes normally, and how long a hung call takes to
    /// time out at its client (the SDK's and the HTTP clients' timeouts).
    fn latency(self) -> (u64, u64, Duration) {
        match self {
            Self::EventsTable | Self::EntitiesTable | Self::SyncStateTable => {
                (2, 25, Duration::from_secs(3))
            }
            Self::JobsQueue => (5, 40, Duration::from_secs(3)),
            Self::SecretsManager => (10, 80, Duration::from_secs(3)),
            Self::Partner => (30, 400, Duration::from_secs(10)),
            Self::RevelApi => (50, 600, Duration::from_secs(10)),
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How often each kind of fault hits one service's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// Refused before it had any effect (throttled, 5xx, 429).
    pub refused: f64,
    /// Landed, but the answer was lost (a timeout after the effect).
    pub lost_answer: f64,
    /// Hung until the client's timeout, without effect.
    pub hung: f64,
    /// Very slow, but answered (seconds).
    pub slow: f64,
    /// The calling invocation crashes at this call (half before its effect,
    /// half after).
    pub crash: f64,
}

/// Every rate of one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    rates: Vec<(Service, Rates)>,
    /// A successful stream batch handed over again (at least once).
    pub stream_redelivery: f64,
    /// The event source mapping's DeleteMessage of a handled job lost: it
    /// comes back after its visibility timeout.
    pub lost_delete: f64,
    /// A receiver request lands on a new sandbox (secrets read anew).
    pub cold_start: f64,
    /// API Gateway loses the answer on its way back to the sender.
    pub lost_response: f64,
}

impl Profile {
    /// Nothing goes wrong.
    pub fn calm() -> Self {
        Self {
            rates: Service::ALL
                .iter()
                .map(|s| (*s, Rates::default()))
                .collect(),
            stream_redelivery: 0.0,
            lost_delete: 0.0,
            cold_start: 0.0,
            lost_response: 0.0,
        }
    }

    /// Rates drawn for one seed, each up to a ceiling. The rates are of
    /// failures the callers see, after the AWS SDK's own retries: a call
    /// fails at most about one time in ten, which keeps retry chains of a
    /// few dozen calls (a pull) converging within the five receives a job
    /// has.
    pub fn draw(rng: &mut fastrand::Rng) -> Self {
        let mut rates = Vec::new();
        for service in Service::ALL {
            let mut up_to = |ceiling: f64| rng.f64() * ceiling;
            rates.push((
                service,
                Rates {
                    refused: up_to(0.05),
                    lost_answer: up_to(0.03),
                    hung: up_to(0.01),
                    slow: up_to(0.02),
                    crash: up_to(0.01),
                },
            ));
        }
        Self {
            rates,
            stream_redelivery: rng.f64() * 0.05,
            lost_delete: rng.f64() * 0.03,
            cold_start: rng.f64() * 0.1,
            lost_response: rng.f64() * 0.05,
        }
    }

    /// One line per service, for the trace.
    pub fn describe(&self) -> Vec<String> {
        let percent = |p: f64| format!("{:.1}%", p * 100.0);
        let mut lines: Vec<String> = self
            .rates
            .iter()
            .map(|(service, r)| {
                format!(
                    "{service}: refused {}, answer lost {}, hung {}, slow {}, crash {}",
                    percent(r.refused),
                    percent(r.lost_answer),
                    percent(r.hung),
                    percent(r.slow),
                    percent(r.crash)
                )
            })
            .collect();
        lines.push(format!(
            "stream redelivery {}, lost SQS delete {}, cold start {}, lost API Gateway answer {}",
            percent(self.stream_redelivery),
            percent(self.lost_delete),
            percent(self.cold_start),
            percent(self.lost_response)
        ));
        lines
    }

    /// Calm, except `service` at `rates` (for the fakes' own tests).
    pub fn only(service: Service, rates: Rates) -> Self {
        let mut profile = Self::calm();
        for (s, r) in &mut profile.rates {
            if *s == service {
                *r = rates;
            }
        }
        profile
    }

    pub fn rates(&self, service: Service) -> Rates {
        self.rates
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    }
}

/// A service down for a while: every call fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    pub service: Service,
    pub from: Instant,
    pub until: Instant,
}

/// What a faulty call came to instead of its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Injected {
    /// Refused before any effect (throttled, 5xx, 429).
    #[error("refused (simulated throttle)")]
    Refused,
    /// It landed; its answer did not.
    #[error("answer lost (simulated)")]
    LostAnswer,
    /// No answer within the client's timeout, and no effect.
    #[error("timed out (simulated)")]
    TimedOut,
    /// The service is in an outage.
    #[error("unavailable (simulated outage)")]
    Outage,
}

impl Injected {
    /// As the AWS adapters report a failed call.
    pub fn dependency(self, service: &'static str, operation: &'static str) -> DependencyError {
        DependencyError::new(service, operation, self)
    }
}

/// The seed's faults, and the random source every decision draws from
/// (one, so the order of draws is the order of calls: deterministic on a
/// single thread).
pub struct Faults {
    rng: Mutex<fastrand::Rng>,
    profile: Profile,
    outages: Vec<Outage>,
    trace: Trace,
}

impl Faults {
    pub fn new(rng: fastrand::Rng, profile: Profile, outages: Vec<Outage>, trace: Trace) -> Self {
        Self {
            rng: Mutex::new(rng),
            profile,
            outages,
            trace,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn outages(&self) -> &[Outage] {
        &self.outages
    }

    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// True with probability `p`.
    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap().f64() < p
    }

    /// A whole number in `low..=high`.
    pub fn between(&self, low: u64, high: u64) -> u64 {
        self.rng.lock().unwrap().u64(low..=high)
    }

    /// Notes a step by whoever is acting.
    pub fn note(&self, what: impl Into<String>) {
        self.trace.note(actor(), what);
    }

    /// Whether `service` is in an outage now.
    pub fn in_outage(&self, service: Service) -> bool {
        let now = Instant::now();
        self.outages
            .iter()
            .any(|o| o.service == service && o.from <= now && now < o.until)
    }

    /// Serves one call of `service`: latency, then maybe a fault, with
    /// `effect` applied only where the fault leaves it applied.
    pub async fn call<T>(
        &self,
        service: Service,
        operation: &str,
        effect: impl Future<Output = T>,
    ) -> Result<T, Injected> {
        let rates = self.profile.rates(service);
        let (low, high, client_timeout) = service.latency();
        let latency = if self.chance(rates.slow) {
            Duration::from_millis(self.between(2_000, client_timeout.as_millis() as u64 - 500))
        } else {
            Duration::from_millis(self.between(low, high))
        };
        tokio::time::sleep(latency).await;
        if self.in_outage(service) {
            self.note(format!("FAULT {service} {operation}: {}", Injected::Outage));
            return Err(Injected::Outage);
        }
        if self.chance(rates.crash / 2.0) && in_invocation() {
            return self.crash(format!("before {service} {operation}")).await;
        }
        if self.chance(rates.refused) {
            self.note(format!(
                "FAULT {service} {operation}: {}",
                Injected::Refused
            ));
            return Err(Injected::Refused);
        }
        if self.chance(rates.hung) {
            tokio::time::sleep(client_timeout).await;
            self.note(format!(
                "FAULT {service} {operation}: {}",
                Injected::TimedOut
            ));
            return Err(Injected::TimedOut);
        }
        let out = effect.await;
        if self.chance(rates.crash / 2.0) && in_invocation() {
            return self
                .crash(format!("after {service} {operation} took effect"))
                .await;
        }
        if self.chance(rates.lost_answer) {
            tokio::time::sleep(client_timeout).await;
            self.note(format!(
                "FAULT {service} {operation}: took effect, {}",
                Injected::LostAnswer
            ));
            return Err(Injected::LostAnswer);
        }
        Ok(out)
    }

    /// Crashes the invocation being polled: it never gets past this await
    /// point (its future is dropped here).
    pub async fn crash<T>(&self, at: String) -> T {
        let _ = INVOCATION.try_with(|i| i.crashed.store(true, Ordering::SeqCst));
        self.note(format!("CRASH {at}"));
        std::future::pending::<T>().await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Faults of `profile` on a fresh trace (inside a paused runtime).
    pub(crate) fn faults(profile: Profile) -> Arc<Faults> {
        Arc::new(Faults::new(
            fastrand::Rng::with_seed(7),
            profile,
            Vec::new(),
            Trace::starting_now(),
        ))
    }

    fn always(rates: impl Fn(&mut Rates)) -> Profile {
        let mut r = Rates::default();
        rates(&mut r);
        Profile::only(Service::EventsTable, r)
    }

    /// Calls a fake once inside an invocation: whether its effect happened,
    /// and whether the invocation crashed.
    async fn crash_once(faults: &Faults) -> (bool, bool) {
        let done = std::sync::atomic::AtomicBool::new(false);
        let ended = invoke("test", Duration::from_secs(60), async {
            faults
                .call(Service::EventsTable, "PutItem", async {
                    done.store(true, Ordering::SeqCst)
                })
                .await
        })
        .await;
        (done.load(Ordering::SeqCst), matches!(ended, Ended::Crashed))
    }

    #[tokio::test(start_paused = true)]
    async fn a_crash_before_the_effect_leaves_nothing_and_one_after_it_leaves_the_effect() {
        // Half the crash rate is drawn before the effect, half after: a rate
        // of 2 always crashes before it.
        let before = faults(always(|r| r.crash = 2.0));
        assert_eq!(crash_once(&before).await, (false, true));
        let never = faults(Profile::calm());
        assert_eq!(crash_once(&never).await, (true, false));
        // At a rate of 1, a crash comes before the effect half the time and
        // after it half the time: both show up within a few calls.
        let either = faults(always(|r| r.crash = 1.0));
        let mut outcomes = BTreeSet::new();
        for _ in 0..20 {
            outcomes.insert(crash_once(&either).await);
        }
        assert!(outcomes.contains(&(true, true)), "{outcomes:?}");
        assert!(outcomes.contains(&(false, true)), "{outcomes:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_answer_is_an_error_after_the_effect_and_a_refusal_one_before_it() {
        for (profile, applied, fault) in [
            (always(|r| r.lost_answer = 1.0), true, Injected::LostAnswer),
            (always(|r| r.refused = 1.0), false, Injected::Refused),
        ] {
            let faults = faults(profile);
            let done = std::sync::atomic::AtomicBool::new(false);
            let result = faults
                .call(Service::EventsTable, "PutItem", async {
                    done.store(true, Ordering::SeqCst)
                })
                .await;
            assert_eq!(result, Err(fault));
            assert_eq!(done.load(Ordering::SeqCst), applied);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_service_in_an_outage_fails_every_call_until_it_ends() {
        let trace = Trace::starting_now();
        let outage = Outage {
            service: Service::Partner,
            from: trace.at(Duration::from_secs(10)),
            until: trace.at(Duration::from_secs(70)),
        };
        let faults = Faults::new(
            fastrand::Rng::with_seed(1),
            Profile::calm(),
            vec![outage],
            trace,
        );
        assert_eq!(
            faults.call(Service::Partner, "POST", async {}).await,
            Ok(())
        );
        tokio::time::sleep(Duration::from_secs(15)).await;
        assert_eq!(
            faults.call(Service::Partner, "POST", async {}).await,
            Err(Injected::Outage)
        );
        assert_eq!(
            faults.call(Service::RevelApi, "GET", async {}).await,
            Ok(())
        );
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(
            faults.call(Service::Partner, "POST", async {}).await,
            Ok(())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_invocation_past_its_limit_is_dropped_as_timed_out() {
        let ended = invoke("test", Duration::from_secs(60), async {
            tokio::time::sleep(Duration::from_secs(61)).await;
        })
        .await;
        assert!(matches!(ended, Ended::TimedOut));
    }
}
