//! The scheduler: one tick, every 5 minutes, fans out per Revel instance the
//! work that is due at *that instance's* local time, so a bar in Los Angeles
//! gets its end of day at its own closing, not when UTC's day ends.
//!
//! Per instance with API credentials, from its settings in the secret
//! document ([`InstanceSettings`]: time zone, end of day, 2-hourly inventory):
//!
//! - **end of day**: from `end_of_day` (23:55) on the local clock, for an
//!   hour: [`END_OF_DAY`] (products, events, inventory, reconciliation, the
//!   partner's catalog), once per local date;
//! - **every 2 hours**, for instances with `inventory_every_2h`: an
//!   inventory pull once per even local hour (00, 02, ... 22) and the two
//!   hours after it.
//!
//! Each run is a *slot* named by the local date (and hour): `eod:2026-11-29`,
//! `2h:2026-11-29T22`. The slot names the jobs' FIFO deduplication ids, and
//! once its jobs are queued it is recorded, with the instant its window
//! opened, as the instance's last slot of that cadence (sync-state table),
//! so a tick delivered twice, retried after any delay (even after a later
//! slot), or the window's later ticks queue nothing again; a changed zone or
//! `end_of_day` gets its next run at the new time; and a tick that failed is
//! made good by the next one in the window. Slots follow
//! the wall clock, so DST neither skips nor doubles one: in the hour the
//! clocks show twice the slot is the same slot, and in the hour they skip
//! the window's first tick after the gap queues it.
//!
//! Each job is one instance's, in its own message group, so a slow or
//! failing instance holds up no other. Tasks can also be run by hand for
//! every instance or one (`{"task": "product_sync", "instance": "mybar"}`),
//! and WineSitting's repair poll keeps its own schedule.

use std::time::Duration;

use time::{OffsetDateTime, PrimitiveDateTime};

use domain::error::DependencyError;
use domain::ids::InstanceName;
use ports::queue::{JobKind, JobQueue, QueuedJob};
use ports::secrets::{InstanceSettings, SecretCache};
use ports::sync_state::SyncState;

/// The task name of the scheduler's tick.
pub const TICK: &str = "tick";

/// The end-of-day jobs, queued once per local date for every instance.
pub const END_OF_DAY: [JobKind; 6] = [
    JobKind::ProductSync,
    JobKind::EventSync,
    JobKind::InventorySync,
    JobKind::Reconcile,
    JobKind::PartnerCatalog,
    // Last: it takes only a share of what the others left (and nothing
    // once the instance's backfill is done or was never planned).
    JobKind::Backfill,
];

/// How long after its `end_of_day` an instance's end of day can still be
/// queued: ticks come every 5 minutes, so a tick that failed for good is
/// made good by a later one.
pub const END_OF_DAY_WINDOW: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown scheduled task {0:?}")]
    UnknownTask(String),
    #[error("invalid instance name in the schedule's input")]
    InvalidInstance,
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// What a schedule's input asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// `{"task": "tick"}`: whatever is due, per instance, at its local time.
    Tick,
    /// One task now (by hand, or WineSitting's own schedule).
    Run(JobKind),
}

/// The task named in a schedule's input: `{"task": "tick"}`, `{"task": "product_sync"}`.
pub fn task_of(input: &serde_json::Value) -> Result<Task, ScheduleError> {
    let name = input
        .get("task")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if name == TICK {
        return Ok(Task::Tick);
    }
    JobKind::scheduled(name)
        .map(Task::Run)
        .ok_or_else(|| ScheduleError::UnknownTask(name.chars().take(40).collect()))
}

/// The one instance a task run by hand is for (`"instance"`), if it names one.
pub fn instance_of(input: &serde_json::Value) -> Result<Option<InstanceName>, ScheduleError> {
    match input.get("instance").and_then(serde_json::Value::as_str) {
        None | Some("") => Ok(None),
        Some(name) => InstanceName::parse(name)
            .map(Some)
            .map_err(|_| ScheduleError::InvalidInstance),
    }
}

/// The tick's own time (`"scheduled_time": "<aws.scheduler.scheduled-time>"`
/// in the schedule's input), so a retried invocation decides the same; the
/// current time when the input has none.
pub fn scheduled_at(input: &serde_json::Value) -> OffsetDateTime {
    input
        .get("scheduled_time")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// A schedule's cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cadence {
    EndOfDay,
    /// The retailer option: inventory every 2 hours.
    InventoryEvery2h,
}

impl Cadence {
    /// Its name, in the sync-state table and the logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::EndOfDay => "end_of_day",
            Self::InventoryEvery2h => "inventory_2h",
        }
    }

    /// The jobs one of its slots queues.
    pub fn jobs(self) -> &'static [JobKind] {
        match self {
            Self::EndOfDay => &END_OF_DAY,
            Self::InventoryEvery2h => &[JobKind::InventorySync],
        }
    }
}

/// One run of a cadence for one instance, named by its local date and hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub cadence: Cadence,
    /// `eod:2026-11-29`, `2h:2026-11-29T22`: the jobs' deduplication window.
    pub id: String,
    /// The instant its window opens (its local start read in the zone).
    pub opens_at: OffsetDateTime,
}

/// Two slots of one cadence whose windows open within this of each other
/// are one run: consecutive runs open at least 2 hours apart, while the
/// same run computed again (a retried tick, a later tick in the window)
/// opens at the same instant, and one moved by an edited `end_of_day` by
/// less than its window was run already.
const SAME_RUN: time::Duration = time::Duration::hours(1);

impl Slot {
    fn new(
        cadence: Cadence,
        id: String,
        settings: &InstanceSettings,
        start: PrimitiveDateTime,
    ) -> Self {
        Self {
            cadence,
            id,
            opens_at: instant_at(settings, start),
        }
    }

    /// What the sync-state table keeps of it: `eod:2026-11-29@2026-11-30T07:55:00Z`.
    fn record(&self) -> String {
        let at = self
            .opens_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        format!("{}@{at}", self.id)
    }

    /// Whether `last` (the cadence's last recorded slot) is this run or a
    /// later one. By the instant, not the name: a retried tick that comes
    /// after a later slot was queued must not queue its older one again,
    /// and a changed time zone or `end_of_day` names the next run by a
    /// date whose end of day already ran in the old setting.
    fn queued_by(&self, last: &str) -> bool {
        last.rsplit_once('@')
            .and_then(|(_, at)| {
                OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).ok()
            })
            .is_some_and(|at| self.opens_at < at + SAME_RUN)
    }
}

/// The instant the instance's wall clock shows `wall` (a time the clocks
/// skip read forward by the gap, one shown twice as its first showing).
pub fn instant_at(settings: &InstanceSettings, wall: PrimitiveDateTime) -> OffsetDateTime {
    let micros = i64::try_from(wall.assume_utc().unix_timestamp_nanos() / 1000).unwrap_or(0);
    settings
        .time_zone
        .instant_of_wall(micros)
        .and_then(|micros| {
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).ok()
        })
        .unwrap_or_else(|| wall.assume_utc())
}

/// The instance's wall clock at `now`.
pub fn local_time(settings: &InstanceSettings, now: OffsetDateTime) -> PrimitiveDateTime {
    let now_micros = i64::try_from(now.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX);
    let wall = settings.time_zone.wall_of(now_micros);
    let wall = OffsetDateTime::from_unix_timestamp_nanos(i128::from(wall) * 1000).unwrap_or(now);
    PrimitiveDateTime::new(wall.date(), wall.time())
}

/// The slots due for an instance with `settings` at `now`.
pub fn due(settings: &InstanceSettings, now: OffsetDateTime) -> Vec<Slot> {
    let local = local_time(settings, now);
    let mut slots = Vec::new();
    // The end of day of today's date, or of yesterday's when its window
    // runs past midnight.
    let end_of_day = [Some(local.date()), local.date().previous_day()]
        .into_iter()
        .flatten()
        .find(|date| {
            let start = PrimitiveDateTime::new(*date, settings.end_of_day);
            start <= local && local < start + END_OF_DAY_WINDOW
        });
    if let Some(date) = end_of_day {
        slots.push(Slot::new(
            Cadence::EndOfDay,
            format!("eod:{date}"),
            settings,
            PrimitiveDateTime::new(date, settings.end_of_day),
        ));
    }
    if settings.inventory_every_2h {
        let hour = local.hour() / 2 * 2;
        let start = time::Time::from_hms(hour, 0, 0).unwrap_or(time::Time::MIDNIGHT);
        slots.push(Slot::new(
            Cadence::InventoryEvery2h,
            format!("2h:{}T{hour:02}", local.date()),
            settings,
            PrimitiveDateTime::new(local.date(), start),
        ));
    }
    slots
}

/// What a tick queued for one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub instance: InstanceName,
    /// The instance's zone and its wall clock at the tick (`2026-11-29 23:55`).
    pub time_zone: String,
    pub local_time: String,
    pub slot: Slot,
}

/// One tick at `now`: per instance of `revel` with API credentials, the
/// jobs of each slot due at its local time and not yet queued. Every
/// instance is tried; the first failure is returned after (the tick is
/// then retried, and the instances already done are skipped).
pub async fn tick(
    revel: &SecretCache,
    jobs: &dyn JobQueue,
    state: &dyn SyncState,
    now: OffsetDateTime,
) -> Result<Vec<Queued>, ScheduleError> {
    let document = revel.document().await?;
    let mut queued = Vec::new();
    let mut failure = None;
    for instance in document.api_instances() {
        let settings = document.settings(&instance);
        for slot in due(&settings, now) {
            match queue_slot(&instance, &slot, jobs, state).await {
                Ok(false) => {}
                Ok(true) => {
                    let local = local_time(&settings, now);
                    tracing::info!(%instance, slot = %slot.id, time_zone = settings.time_zone.name(), "scheduled work queued at the instance's local time");
                    queued.push(Queued {
                        instance: instance.clone(),
                        time_zone: settings.time_zone.name().to_owned(),
                        local_time: format!(
                            "{} {:02}:{:02}",
                            local.date(),
                            local.hour(),
                            local.minute()
                        ),
                        slot,
                    });
                }
                Err(error) => {
                    error.log("scheduled work not queued; the tick is retried");
                    failure.get_or_insert(error);
                }
            }
        }
    }
    match failure {
        Some(error) => Err(error.into()),
        None => Ok(queued),
    }
}

/// Queues `slot`'s jobs for `instance` unless they were; true when queued.
/// Recorded only after every job is queued: a tick that stopped midway is
/// redone by its retry or the window's next tick, the FIFO queue absorbing
/// the jobs already sent (same deduplication ids).
async fn queue_slot(
    instance: &InstanceName,
    slot: &Slot,
    jobs: &dyn JobQueue,
    state: &dyn SyncState,
) -> Result<bool, DependencyError> {
    let cadence = slot.cadence.name();
    if let Some(last) = state.last_slot(instance, cadence).await? {
        if slot.queued_by(&last) {
            return Ok(false);
        }
    }
    for kind in slot.cadence.jobs() {
        jobs.enqueue(&QueuedJob::scheduled(
            *kind,
            vendors::revel::NAME.as_str(),
            instance,
            &slot.id,
        ))
        .await?;
    }
    state.mark_slot(instance, cadence, &slot.record()).await?;
    Ok(true)
}

/// Queues `task` now for every account of `accounts` (Revel's secrets, or
/// WineSitting's for its repair poll) that has API credentials, or only
/// for `only`. Returns the accounts queued.
pub async fn fan_out(
    task: JobKind,
    accounts: &SecretCache,
    jobs: &dyn JobQueue,
    only: Option<&InstanceName>,
    now: OffsetDateTime,
) -> Result<Vec<InstanceName>, ScheduleError> {
    let document = accounts.document().await?;
    // The minute of the run: a run delivered twice queues each job once.
    let window = format!("{}T{:02}:{:02}", now.date(), now.hour(), now.minute());
    let mut queued = Vec::new();
    for instance in document.api_instances() {
        if only.is_some_and(|only| *only != instance) {
            continue;
        }
        jobs.enqueue(&QueuedJob::scheduled(
            task,
            vendors::revel::NAME.as_str(),
            &instance,
            &window,
        ))
        .await?;
        queued.push(instance);
    }
    tracing::info!(
        task = task.name(),
        instances = queued.len(),
        "scheduled task fanned out"
    );
    Ok(queued)
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::local_time::Zone;
    use ports::fakes::{FixedSecrets, MemoryQueue, MemorySyncState};
    use time::macros::{datetime, time};

    const DOCUMENT: &str = r#"{"a": {"webhook": "w", "api_key": "k", "api_secret": "s"},
                              "b": {"api_key": "k", "api_secret": "s"},
                              "labar": {"api_key": "k", "api_secret": "s", "time_zone": "America/Los_Angeles", "inventory_every_2h": true},
                              "hooks-only": "w"}"#;

    fn secrets() -> SecretCache {
        SecretCache::new(FixedSecrets(DOCUMENT.into()), Duration::from_secs(60))
    }

    fn los_angeles() -> InstanceSettings {
        InstanceSettings {
            inventory_every_2h: true,
            ..InstanceSettings::defaults(Zone::parse("America/Los_Angeles").unwrap())
        }
    }

    fn name(raw: &str) -> InstanceName {
        InstanceName::parse(raw).unwrap()
    }

    /// The end-of-day slots of an instance over every 5-minute tick from
    /// `from` until `until`, and the first tick of each.
    fn end_of_days(
        settings: &InstanceSettings,
        from: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Vec<(String, OffsetDateTime)> {
        let mut seen: Vec<(String, OffsetDateTime)> = Vec::new();
        let mut tick = from;
        while tick < until {
            for slot in due(settings, tick) {
                if slot.cadence == Cadence::EndOfDay
                    && seen.last().is_none_or(|(id, _)| *id != slot.id)
                {
                    seen.push((slot.id, tick));
                }
            }
            tick += time::Duration::minutes(5);
        }
        seen
    }

    #[test]
    fn a_los_angeles_end_of_day_falls_at_its_local_2355_not_at_utcs() {
        let la = los_angeles();
        assert_eq!(
            due(&la, datetime!(2026-11-30 07:55 UTC)),
            [
                Slot {
                    cadence: Cadence::EndOfDay,
                    id: "eod:2026-11-29".into(),
                    opens_at: datetime!(2026-11-30 07:55 UTC),
                },
                Slot {
                    cadence: Cadence::InventoryEvery2h,
                    id: "2h:2026-11-29T22".into(),
                    // 22:00 PST.
                    opens_at: datetime!(2026-11-30 06:00 UTC),
                },
            ]
        );
        assert!(
            due(
                &InstanceSettings::defaults(Zone::utc()),
                datetime!(2026-11-30 07:55 UTC)
            )
            .is_empty(),
            "a UTC instance's day ended 8 hours earlier"
        );
        assert!(due(&la, datetime!(2026-11-29 23:55 UTC))
            .iter()
            .all(|slot| slot.cadence != Cadence::EndOfDay));
    }

    #[test]
    fn an_end_of_day_is_queued_once_per_local_date_across_both_dst_transitions_in_los_angeles() {
        let mut la = los_angeles();
        for end_of_day in [time!(23:55), time!(01:30), time!(02:30)] {
            la.end_of_day = end_of_day;
            // Spring forward (2026-03-08 02:00 PST -> 03:00 PDT) and fall
            // back (2026-11-01 02:00 PDT -> 01:00 PST): three local days
            // each, from 01:00 to 01:00 local (71 and 73 hours), so no
            // window of the day before is still open.
            for (from, until, dates) in [
                (
                    datetime!(2026-03-07 09:00 UTC),
                    datetime!(2026-03-10 08:00 UTC),
                    ["2026-03-07", "2026-03-08", "2026-03-09"],
                ),
                (
                    datetime!(2026-10-31 08:00 UTC),
                    datetime!(2026-11-03 09:00 UTC),
                    ["2026-10-31", "2026-11-01", "2026-11-02"],
                ),
            ] {
                let seen = end_of_days(&la, from, until);
                let ids: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
                let expected: Vec<String> = dates.iter().map(|d| format!("eod:{d}")).collect();
                assert_eq!(ids, expected, "end of day {end_of_day}");
            }
        }
        // On the night the clocks skip 02:00-03:00, a 02:30 end of day is
        // queued at the first tick after the gap: 03:00 PDT, 10:00Z.
        la.end_of_day = time!(02:30);
        let spring = end_of_days(
            &la,
            datetime!(2026-03-08 08:00 UTC),
            datetime!(2026-03-08 12:00 UTC),
        );
        assert_eq!(
            spring,
            [("eod:2026-03-08".to_owned(), datetime!(2026-03-08 10:00 UTC))]
        );
        // On the night 01:00-02:00 shows twice, a 01:30 end of day is
        // queued at its first showing (PDT, 08:30Z) and not again at 09:30Z.
        la.end_of_day = time!(01:30);
        let fall = end_of_days(
            &la,
            datetime!(2026-11-01 07:00 UTC),
            datetime!(2026-11-01 11:00 UTC),
        );
        assert_eq!(
            fall,
            [("eod:2026-11-01".to_owned(), datetime!(2026-11-01 08:30 UTC))]
        );
    }

    #[test]
    fn two_hourly_slots_are_the_even_local_hours_and_dst_neither_skips_nor_doubles_one() {
        let la = los_angeles();
        let slots = |from: OffsetDateTime, hours: i64| {
            let mut ids: Vec<String> = Vec::new();
            let mut tick = from;
            while tick < from + time::Duration::hours(hours) {
                for slot in due(&la, tick) {
                    if slot.cadence == Cadence::InventoryEvery2h && ids.last() != Some(&slot.id) {
                        ids.push(slot.id);
                    }
                }
                tick += time::Duration::minutes(5);
            }
            ids
        };
        // 2026-11-01 00:00 PDT is 07:00Z; 24 local wall hours take 25 real ones.
        let fall = slots(datetime!(2026-11-01 07:00 UTC), 25);
        assert_eq!(fall.len(), 12);
        assert_eq!(fall[0], "2h:2026-11-01T00");
        assert_eq!(fall[11], "2h:2026-11-01T22");
        // 2026-03-08 00:00 PST is 08:00Z; that day has 23 real hours.
        let spring = slots(datetime!(2026-03-08 08:00 UTC), 23);
        assert_eq!(spring.len(), 12, "{spring:?}");
        assert!(
            spring.contains(&"2h:2026-03-08T02".to_owned()),
            "the skipped hour's slot runs at 03:00"
        );
    }

    #[tokio::test]
    async fn a_tick_queues_each_instances_due_work_once_however_often_it_is_delivered() {
        let queue = MemoryQueue::default();
        let state = MemorySyncState::default();
        let now = datetime!(2026-11-30 07:55 UTC);
        let queued = tick(&secrets(), &queue, &state, now).await.unwrap();
        let summary: Vec<(&str, &str, &str)> = queued
            .iter()
            .map(|q| {
                (
                    q.instance.as_str(),
                    q.slot.id.as_str(),
                    q.local_time.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("labar", "eod:2026-11-29", "2026-11-29 23:55"),
                ("labar", "2h:2026-11-29T22", "2026-11-29 23:55"),
            ]
        );
        let kinds = |queue: &MemoryQueue| -> Vec<JobKind> {
            queue
                .jobs
                .lock()
                .unwrap()
                .iter()
                .map(|j| j.message.job)
                .collect()
        };
        let mut expected = END_OF_DAY.to_vec();
        expected.push(JobKind::InventorySync);
        assert_eq!(kinds(&queue), expected);
        // The same tick again, its retry an hour later (past SQS's 5-minute
        // deduplication window): nothing new.
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(3600)).await;
        for again in [now, now] {
            assert!(tick(&secrets(), &queue, &state, again)
                .await
                .unwrap()
                .is_empty());
        }
        assert_eq!(queue.len(), expected.len());
        // The window's later ticks queue no second end of day; at local
        // midnight, the next 2-hourly slot is due.
        let mut later = Vec::new();
        for minutes in [5, 30, 55] {
            let at = now + time::Duration::minutes(minutes);
            for queued in tick(&secrets(), &queue, &state, at).await.unwrap() {
                later.push(queued.slot.id);
            }
        }
        assert_eq!(later, ["2h:2026-11-30T00"]);
        // UTC's end of day for a and b, 8 hours earlier, was its own.
        let utc_day = tick(&secrets(), &queue, &state, datetime!(2026-11-29 23:55 UTC))
            .await
            .unwrap();
        let instances: Vec<&str> = utc_day
            .iter()
            .filter(|q| q.slot.cadence == Cadence::EndOfDay)
            .map(|q| q.instance.as_str())
            .collect();
        assert_eq!(instances, ["a", "b"]);
    }

    /// The slots a tick at `at` queues, with `document` as the secrets.
    async fn queued_at(
        document: &str,
        queue: &MemoryQueue,
        state: &MemorySyncState,
        at: OffsetDateTime,
    ) -> Vec<String> {
        let secrets = SecretCache::new(FixedSecrets(document.into()), Duration::from_secs(60));
        tick(&secrets, queue, state, at)
            .await
            .unwrap()
            .into_iter()
            .map(|q| format!("{} {}", q.instance, q.slot.id))
            .collect()
    }

    #[tokio::test]
    async fn a_tick_retried_after_a_later_slot_was_queued_queues_its_older_slot_nothing_again() {
        let (queue, state) = (MemoryQueue::default(), MemorySyncState::default());
        let first = datetime!(2026-11-30 07:55 UTC);
        assert_eq!(
            queued_at(DOCUMENT, &queue, &state, first).await,
            ["labar eod:2026-11-29", "labar 2h:2026-11-29T22"]
        );
        let next = datetime!(2026-11-30 08:00 UTC);
        assert_eq!(
            queued_at(DOCUMENT, &queue, &state, next).await,
            ["labar 2h:2026-11-30T00"]
        );
        let jobs = queue.len();
        // The 07:55 tick retried late (EventBridge keeps a failed delivery
        // for hours), then the window's next tick.
        assert!(queued_at(DOCUMENT, &queue, &state, first).await.is_empty());
        let after = datetime!(2026-11-30 08:10 UTC);
        assert!(queued_at(DOCUMENT, &queue, &state, after).await.is_empty());
        assert_eq!(queue.len(), jobs);
    }

    #[tokio::test]
    async fn an_instance_moved_to_another_zone_or_end_of_day_after_its_end_of_day_gets_the_next_one_at_the_new_time(
    ) {
        let (queue, state) = (MemoryQueue::default(), MemorySyncState::default());
        let utc = r#"{"bar": {"api_key": "k", "api_secret": "s"}}"#;
        assert_eq!(
            queued_at(utc, &queue, &state, datetime!(2026-11-29 23:55 UTC)).await,
            ["bar eod:2026-11-29"]
        );
        // The merchant sets the bar's zone: its closing, 23:55 in Los
        // Angeles, is 8 hours later and names the same local date.
        let la =
            r#"{"bar": {"api_key": "k", "api_secret": "s", "time_zone": "America/Los_Angeles"}}"#;
        assert_eq!(
            queued_at(la, &queue, &state, datetime!(2026-11-30 07:55 UTC)).await,
            ["bar eod:2026-11-29"]
        );
        // An end of day moved from 00:30 to 23:55 of the same date.
        let early = r#"{"bar": {"api_key": "k", "api_secret": "s", "end_of_day": "00:30"}}"#;
        let late = r#"{"bar": {"api_key": "k", "api_secret": "s", "end_of_day": "23:55"}}"#;
        let (queue, state) = (MemoryQueue::default(), MemorySyncState::default());
        assert_eq!(
            queued_at(early, &queue, &state, datetime!(2026-12-02 00:30 UTC)).await,
            ["bar eod:2026-12-02"]
        );
        assert_eq!(
            queued_at(late, &queue, &state, datetime!(2026-12-02 23:55 UTC)).await,
            ["bar eod:2026-12-02"]
        );
        // Moved by less than its window, it was run already.
        let earlier = r#"{"bar": {"api_key": "k", "api_secret": "s", "end_of_day": "23:40"}}"#;
        assert!(
            queued_at(earlier, &queue, &state, datetime!(2026-12-02 23:58 UTC))
                .await
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_tick_that_failed_midway_is_made_good_by_its_retry_and_queues_nothing_twice() {
        /// Refuses its third message once.
        #[derive(Default)]
        struct ThirdFails {
            queue: MemoryQueue,
            calls: std::sync::atomic::AtomicUsize,
        }
        #[async_trait::async_trait]
        impl JobQueue for ThirdFails {
            async fn enqueue(&self, job: &QueuedJob) -> Result<(), DependencyError> {
                if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                    return Err(DependencyError::new("sqs", "SendMessage", "throttled"));
                }
                self.queue.enqueue(job).await
            }
        }
        let queue = ThirdFails::default();
        let state = MemorySyncState::default();
        let now = datetime!(2026-11-30 07:55 UTC);
        assert!(tick(&secrets(), &queue, &state, now).await.is_err());
        let later = tick(&secrets(), &queue, &state, now).await.unwrap();
        assert_eq!(
            later.iter().map(|q| q.slot.cadence).collect::<Vec<_>>(),
            [Cadence::EndOfDay],
            "the 2-hourly slot went through the first time"
        );
        let jobs = queue.queue.jobs.lock().unwrap();
        for kind in END_OF_DAY {
            assert_eq!(
                jobs.iter().filter(|j| j.message.job == kind).count(),
                if kind == JobKind::InventorySync { 2 } else { 1 },
                "{kind:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_task_by_hand_runs_for_every_instance_with_api_credentials_or_the_one_named() {
        let queue = MemoryQueue::default();
        let now = datetime!(2026-11-24 23:55 UTC);
        let all = fan_out(JobKind::ProductSync, &secrets(), &queue, None, now)
            .await
            .unwrap();
        assert_eq!(
            all.iter().map(InstanceName::as_str).collect::<Vec<_>>(),
            ["a", "b", "labar"]
        );
        {
            let jobs = queue.jobs.lock().unwrap();
            assert_ne!(
                jobs[0].group_id, jobs[1].group_id,
                "instances must not wait on each other"
            );
        }
        let one = fan_out(
            JobKind::InventorySync,
            &secrets(),
            &queue,
            Some(&name("b")),
            now,
        )
        .await
        .unwrap();
        assert_eq!(one, [name("b")]);
        assert_eq!(queue.len(), 4);
    }

    #[test]
    fn the_input_names_a_tick_or_a_task_its_time_and_maybe_an_instance() {
        let input = serde_json::json!({"task": "tick", "scheduled_time": "2026-11-24T23:55:00Z"});
        assert_eq!(task_of(&input).unwrap(), Task::Tick);
        assert_eq!(scheduled_at(&input), datetime!(2026-11-24 23:55 UTC));
        let before = OffsetDateTime::now_utc();
        assert!(scheduled_at(&serde_json::json!({"task": "reconcile"})) >= before);
        assert_eq!(
            task_of(&serde_json::json!({"task": "reconcile"})).unwrap(),
            Task::Run(JobKind::Reconcile)
        );
        assert!(matches!(
            task_of(&serde_json::json!({"task": "sync_entity"})),
            Err(ScheduleError::UnknownTask(_))
        ));
        assert_eq!(
            instance_of(&serde_json::json!({"instance": "b"})).unwrap(),
            Some(name("b"))
        );
        assert_eq!(instance_of(&serde_json::json!({})).unwrap(), None);
        assert!(instance_of(&serde_json::json!({"instance": "no spaces"})).is_err());
    }
}
