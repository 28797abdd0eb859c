//! An open-loop new-connection generator (issue 21, item 3; `hive mesh bench
//! --open-loop PERCENT`): connections start on a fixed schedule, `rate` per
//! second for `duration`, whatever the path answers, so every path is offered
//! the same load; wrk is closed-loop (a connection opens when the previous one
//! ends), so a faster path is offered more and its tail is measured at a
//! higher utilisation.
//!
//! Each connection: connect, `GET /` with `Connection: close`, read to EOF.
//! Its latency runs from its *scheduled* start, not from when it actually
//! started, so a start delayed by the generator (its concurrency bound, a
//! late timer) counts against the path rather than vanishing from the figures
//! (coordinated omission, as wrk2 corrects it). The run is bounded: a fixed
//! number of starts, at most [`OpenLoop::max_in_flight`] connections open at a
//! time, each given [`OpenLoop::timeout`] before it counts as an error.
//!
//! The schedule and the figures are plain arithmetic ([`Schedule`],
//! [`summarise`]); [`run_in`] drives them on a tokio current-thread runtime on
//! a thread inside the client's network namespace.

use std::{
    net::SocketAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    sync::Semaphore,
    task::JoinSet,
};

/// The request every connection sends.
const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
/// A response longer than this is an error (the backends answer a line).
const MAX_RESPONSE: usize = 64 * 1024;
/// Time between building the schedule and its first start.
const LEAD: Duration = Duration::from_millis(20);

/// Errors of an open-loop run (a failed connection is a counted error, not this).
#[derive(Debug, thiserror::Error)]
pub enum OpenLoopError {
    #[error("the open-loop rate must be at least 1 connection per second")]
    Rate,
    #[error("the open-loop run has no target address")]
    NoTarget,
    #[error("entering the client's namespace: {0}")]
    Netns(#[from] hive_dataplane::netns::NetnsError),
    #[error("starting the generator's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// When each connection starts: `rate` per second, evenly spaced, for a
/// whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rate: u32,
    starts: u64,
}

impl Schedule {
    pub fn new(rate: u32, duration: Duration) -> Result<Self, OpenLoopError> {
        if rate == 0 {
            return Err(OpenLoopError::Rate);
        }
        Ok(Schedule {
            rate,
            starts: u64::from(rate) * duration.as_secs().max(1),
        })
    }

    /// How many connections the schedule starts.
    pub fn starts(&self) -> u64 {
        self.starts
    }

    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// The `i`-th start's offset from the first (exact in nanoseconds, so
    /// that rounding never drifts over a long run).
    pub fn offset(&self, i: u64) -> Duration {
        let nanos = u128::from(i) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// One connection's outcome, in time since the schedule's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// When it should have started.
    pub scheduled: Duration,
    /// When it actually started (later when the generator was behind).
    pub started: Duration,
    /// When the response was read to EOF or the connection failed.
    pub ended: Duration,
    pub ok: bool,
}

impl Outcome {
    /// The latency the figures count: from the scheduled start.
    pub fn latency(&self) -> Duration {
        self.ended.saturating_sub(self.scheduled)
    }

    /// How late the generator started it.
    pub fn start_lag(&self) -> Duration {
        self.started.saturating_sub(self.scheduled)
    }
}

/// What an open-loop run measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct OpenLoopResult {
    /// The rate the schedule offered, connections/s.
    pub offered_per_sec: f64,
    /// Completed connections per second of the scheduled duration.
    pub completed_per_sec: f64,
    /// Latency percentiles of the completed connections, from the
    /// scheduled start, in milliseconds.
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub completed: u64,
    /// Failed or timed-out connections.
    pub errors: u64,
    /// Starts the generator made more than a millisecond late (its own
    /// timer or concurrency bound): a large count says the generator, not
    /// the path, set the pace.
    pub late_starts: u64,
}

/// The figures of `outcomes` from a schedule of `schedule`.
pub fn summarise(schedule: &Schedule, outcomes: &[Outcome]) -> OpenLoopResult {
    let mut latencies: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.ok)
        .map(Outcome::latency)
        .collect();
    latencies.sort_unstable();
    let ms = |q: f64| percentile(&latencies, q).as_secs_f64() * 1000.0;
    let seconds = schedule.offset(schedule.starts()).as_secs_f64().max(1e-9);
    let completed = latencies.len() as u64;
    OpenLoopResult {
        offered_per_sec: f64::from(schedule.rate()),
        completed_per_sec: completed as f64 / seconds,
        p50_ms: ms(0.50),
        p90_ms: ms(0.90),
        p99_ms: ms(0.99),
        p999_ms: ms(0.999),
        max_ms: latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
        completed,
        errors: outcomes.iter().filter(|o| !o.ok).count() as u64,
        late_starts: outcomes
            .iter()
            .filter(|o| o.start_lag() > Duration::from_millis(1))
            .count() as u64,
    }
}

/// The nearest-rank percentile `q` (0..=1) of `sorted`; zero for none.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// An open-loop run's parameters.
#[derive(Debug, Clone)]
pub struct OpenLoop {
    /// Connections go to these in turn (the no-mesh row loads each backend
    /// straight).
    pub targets: Vec<SocketAddr>,
    pub schedule: Schedule,
    /// At most this many connections open at once; a start that finds them
    /// all busy waits, and its wait counts in its latency.
    pub max_in_flight: usize,
    /// A connection not done after this is an error.
    pub timeout: Duration,
}

impl OpenLoop {
    pub fn new(
        targets: Vec<SocketAddr>,
        rate: u32,
        duration: Duration,
    ) -> Result<Self, OpenLoopError> {
        if targets.is_empty() {
            return Err(OpenLoopError::NoTarget);
        }
        Ok(OpenLoop {
            targets,
            schedule: Schedule::new(rate, duration)?,
            max_in_flight: 1024,
            timeout: Duration::from_secs(5),
        })
    }
}

/// Run `spec` from inside the network namespace at `netns` and summarise it.
pub fn run_in(netns: &Path, spec: &OpenLoop) -> Result<OpenLoopResult, OpenLoopError> {
    let outcomes = hive_dataplane::netns::run_in(netns, || -> Result<_, OpenLoopError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OpenLoopError::Runtime)?;
        Ok(runtime.block_on(drive(spec)))
    })??;
    Ok(summarise(&spec.schedule, &outcomes))
}

async fn drive(spec: &OpenLoop) -> Vec<Outcome> {
    let origin = Instant::now() + LEAD;
    let since = move |t: Instant| t.saturating_duration_since(origin);
    let slots = Arc::new(Semaphore::new(spec.max_in_flight.max(1)));
    let capacity = usize::try_from(spec.schedule.starts()).unwrap_or(0);
    let mut outcomes = Vec::with_capacity(capacity);
    let mut running = JoinSet::new();
    for i in 0..spec.schedule.starts() {
        let scheduled = spec.schedule.offset(i);
        tokio::time::sleep_until((origin + scheduled).into()).await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break; // never closed
        };
        let target = spec.targets[(i % spec.targets.len() as u64) as usize];
        let timeout = spec.timeout;
        running.spawn(async move {
            let started = since(Instant::now());
            let ok = matches!(
                tokio::time::timeout(timeout, one_request(target)).await,
                Ok(Ok(()))
            );
            drop(slot);
            Outcome {
                scheduled,
                started,
                ended: since(Instant::now()),
                ok,
            }
        });
        while let Some(done) = running.try_join_next() {
            outcomes.extend(done.ok());
        }
    }
    while let Some(done) = running.join_next().await {
        outcomes.extend(done.ok());
    }
    outcomes
}

/// Whether one `Connection: close` request got a `200` answer read to EOF.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("not a 200 answer, or longer than {MAX_RESPONSE} bytes")]
    Answer,
}

async fn one_request(target: SocketAddr) -> Result<(), RequestError> {
    let mut stream = TcpStream::connect(target).await?;
    stream.write_all(REQUEST).await?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        total += n;
        if total > MAX_RESPONSE {
            return Err(RequestError::Answer);
        }
        if head.len() < 12 {
            head.extend_from_slice(&buf[..n.min(12 - head.len())]);
        }
    }
    if head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200") {
        Ok(())
    } else {
        Err(RequestError::Answer)
    }
}

/// The offered rate for one size: `percent` % of the slowest closed-loop
/// new-connection rate measured at it (every path, the no-mesh row too), at
/// least one per second.
pub fn offered_rate(percent: u32, closed_loop_rates: impl IntoIterator<Item = f64>) -> u32 {
    let slowest = closed_loop_rates
        .into_iter()
        .filter(|r| r.is_finite() && *r > 0.0)
        .fold(f64::INFINITY, f64::min);
    if !slowest.is_finite() {
        return 1;
    }
    ((slowest * f64::from(percent) / 100.0).floor() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn the_schedule_spaces_starts_evenly_over_whole_seconds() {
        let s = Schedule::new(3, Duration::from_secs(2)).unwrap();
        assert_eq!(s.starts(), 6);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.offset(3), Duration::from_secs(1));
        // The last start is one interval before the end, not at it.
        assert_eq!(s.offset(5), Duration::from_nanos(1_666_666_666));
        assert_eq!(s.offset(s.starts()), Duration::from_secs(2));
    }

    #[test]
    fn a_long_schedule_does_not_drift() {
        let s = Schedule::new(7_000, Duration::from_secs(600)).unwrap();
        assert_eq!(s.offset(7_000 * 600), Duration::from_secs(600));
        assert_eq!(
            s.offset(7_000 * 599 + 3_500),
            Duration::from_millis(599_500)
        );
    }

    #[test]
    fn a_zero_rate_is_refused() {
        assert!(matches!(
            Schedule::new(0, Duration::from_secs(5)),
            Err(OpenLoopError::Rate)
        ));
        assert!(matches!(
            OpenLoop::new(Vec::new(), 10, Duration::from_secs(1)),
            Err(OpenLoopError::NoTarget)
        ));
    }

    #[test]
    fn latency_counts_from_the_scheduled_start_not_the_actual_one() {
        // Started 40 ms late (the generator was behind), answered 2 ms after.
        let late = Outcome {
            scheduled: ms(100),
            started: ms(140),
            ended: ms(142),
            ok: true,
        };
        assert_eq!(late.latency(), ms(42));
        assert_eq!(late.start_lag(), ms(40));
    }

    #[test]
    fn figures_are_nearest_rank_percentiles_of_completed_connections() {
        let s = Schedule::new(100, Duration::from_secs(1)).unwrap();
        // 100 starts: latencies 1..=100 ms, one failed, one started late.
        let mut outcomes: Vec<Outcome> = (0..100u64)
            .map(|i| Outcome {
                scheduled: s.offset(i),
                started: s.offset(i),
                ended: s.offset(i) + ms(i + 1),
                ok: true,
            })
            .collect();
        outcomes[99].ok = false;
        outcomes[10].started += ms(5);
        let r = summarise(&s, &outcomes);
        assert_eq!(r.completed, 99);
        assert_eq!(r.errors, 1);
        assert_eq!(r.late_starts, 1);
        assert_eq!(r.offered_per_sec, 100.0);
        assert!((r.completed_per_sec - 99.0).abs() < 1e-9);
        assert!((r.p50_ms - 50.0).abs() < 1e-9, "{}", r.p50_ms);
        assert!((r.p99_ms - 99.0).abs() < 1e-9, "{}", r.p99_ms);
        assert!((r.max_ms - 99.0).abs() < 1e-9, "{}", r.max_ms);
    }

    #[test]
    fn percentile_of_nothing_is_zero_and_of_one_is_it() {
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
        assert_eq!(percentile(&[ms(3)], 0.0), ms(3));
        assert_eq!(percentile(&[ms(3)], 0.99), ms(3));
        assert_eq!(percentile(&[ms(1), ms(2)], 0.5), ms(1));
        assert_eq!(percentile(&[ms(1), ms(2)], 0.51), ms(2));
    }

    #[test]
    fn the_offered_rate_is_a_share_of_the_slowest_path() {
        assert_eq!(offered_rate(60, [5_000.0, 3_381.0, 6_973.0]), 2_028);
        // A failed (zero) or missing measurement does not set the rate.
        assert_eq!(offered_rate(50, [0.0, 1_000.0, f64::NAN]), 500);
        assert_eq!(offered_rate(60, []), 1);
        assert_eq!(offered_rate(1, [10.0]), 1);
    }
}
