//! The scheduled functions' one job: turn a schedule tick into one job per
//! instance, so a slow or failing instance doesn't hold up the others (each
//! job is retried alone, in its own message group).

use time::OffsetDateTime;

use crate::config::InventoryInstances;
use crate::error::DependencyError;
use crate::ids::InstanceName;
use crate::queue::{Job, JobKind, JobQueue};
use crate::secrets::SecretCache;

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown scheduled task {0:?}")]
    UnknownTask(String),
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

/// The task named in a schedule's input: `{"task": "product_sync"}`.
pub fn task_of(input: &serde_json::Value) -> Result<JobKind, ScheduleError> {
    let name = input
        .get("task")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    JobKind::scheduled(name)
        .ok_or_else(|| ScheduleError::UnknownTask(name.chars().take(40).collect()))
}

/// The tick's own time (`"scheduled_time": "<aws.scheduler.scheduled-time>"`
/// in the schedule's input), so a retried invocation uses the same window;
/// the current time when the input has none.
pub fn scheduled_at(input: &serde_json::Value) -> OffsetDateTime {
    input
        .get("scheduled_time")
        .and_then(serde_json::Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(OffsetDateTime::now_utc)
}

/// Queues `task` for every account of `accounts` (Revel's secrets, or
/// WineSitting's for its repair poll) that has API credentials (and, for the
/// inventory sync, the retailer option). Returns the accounts queued.
pub async fn fan_out(
    task: JobKind,
    accounts: &SecretCache,
    jobs: &dyn JobQueue,
    inventory: &InventoryInstances,
    now: OffsetDateTime,
) -> Result<Vec<InstanceName>, ScheduleError> {
    let document = accounts.document().await?;
    // The minute of the tick: a tick delivered twice queues each job once.
    let window = format!("{}T{:02}:{:02}", now.date(), now.hour(), now.minute());
    let mut queued = Vec::new();
    for instance in document.api_instances() {
        if task == JobKind::InventorySync && !inventory.includes(instance.as_str()) {
            continue;
        }
        jobs.enqueue(&Job::scheduled(task, &instance, &window))
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
    use crate::fakes::{FixedSecrets, MemoryQueue};
    use crate::sources::revel::Revel;
    use std::time::Duration;

    fn revel() -> Revel {
        let doc = r#"{"a": {"webhook": "w", "api_key": "k", "api_secret": "s"},
                      "b": {"api_key": "k", "api_secret": "s"},
                      "hooks-only": "w"}"#;
        Revel::new(SecretCache::new(
            FixedSecrets(doc.into()),
            Duration::from_secs(60),
        ))
    }

    #[tokio::test]
    async fn one_job_per_instance_with_api_credentials() {
        let queue = MemoryQueue::default();
        let now = time::macros::datetime!(2026-11-24 23:55 UTC);
        let queued = fan_out(
            JobKind::ProductSync,
            revel().secrets(),
            &queue,
            &InventoryInstances::All,
            now,
        )
        .await
        .unwrap();
        assert_eq!(
            queued.iter().map(InstanceName::as_str).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let jobs = queue.jobs.lock().unwrap();
        assert_ne!(
            jobs[0].group_id, jobs[1].group_id,
            "instances must not wait on each other"
        );
    }

    #[tokio::test]
    async fn the_same_tick_twice_queues_each_job_once_and_inventory_follows_the_option() {
        let queue = MemoryQueue::default();
        let now = time::macros::datetime!(2026-11-24 10:00 UTC);
        let only_b = InventoryInstances::parse("b");
        fan_out(
            JobKind::InventorySync,
            revel().secrets(),
            &queue,
            &only_b,
            now,
        )
        .await
        .unwrap();
        fan_out(
            JobKind::InventorySync,
            revel().secrets(),
            &queue,
            &only_b,
            now,
        )
        .await
        .unwrap();
        assert_eq!(queue.len(), 1);
        assert_eq!(queue.jobs.lock().unwrap()[0].message.instance, "b");
    }

    #[test]
    fn the_ticks_own_time_names_the_window_so_a_retry_queues_nothing_new() {
        let input =
            serde_json::json!({"task": "reconcile", "scheduled_time": "2026-11-24T23:55:00Z"});
        assert_eq!(
            scheduled_at(&input),
            time::macros::datetime!(2026-11-24 23:55 UTC)
        );
        let before = OffsetDateTime::now_utc();
        assert!(scheduled_at(&serde_json::json!({"task": "reconcile"})) >= before);
    }

    #[test]
    fn unknown_tasks_are_refused() {
        assert!(matches!(
            task_of(&serde_json::json!({"task": "sync_entity"})),
            Err(ScheduleError::UnknownTask(_))
        ));
        assert_eq!(
            task_of(&serde_json::json!({"task": "reconcile"})).unwrap(),
            JobKind::Reconcile
        );
    }
}
