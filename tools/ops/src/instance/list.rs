//! `instance list`: each Revel instance's settings from its entry in the secret
//! document (time zone, end of day, 2-hourly inventory), with its local
//! time now, when its next end of day falls, and the last slots the
//! scheduler queued for it. Read through the functions' own parser, so
//! what is shown is what they read; no secret is printed.

use ports::secrets::InstanceSettings;
use ports::sync_state::SyncState;
use serde_json::json;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::context::Context;
use crate::error::OpsError;
use crate::output;
use crate::state::{wanted, StateArgs};

/// When `settings`' next end of day falls after `now`, in UTC: its
/// `end_of_day` on the local clock, today or tomorrow (a time the clocks
/// skip falls just after the gap, as the scheduler's tick finds it).
pub fn next_end_of_day(settings: &InstanceSettings, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let local = pipeline::schedule::local_time(settings, now);
    [local.date(), local.date().next_day()?]
        .into_iter()
        .map(|date| {
            pipeline::schedule::instant_at(
                settings,
                PrimitiveDateTime::new(date, settings.end_of_day),
            )
        })
        .find(|at| *at > now)
}

pub async fn show(context: &Context, args: &StateArgs) -> Result<(), OpsError> {
    let document = context.revel_instances().await?;
    let state = context.sync_state().ok();
    let wanted = wanted(args)?;
    let now = OffsetDateTime::now_utc();
    let mut out = String::new();
    if !context.json {
        out.push_str(&format!(
            "{:<16} {:<28} {:>10} {:>12} {:>4} {:>9} {:<17} {:<21} {}\n",
            "INSTANCE",
            "TIME ZONE",
            "END OF DAY",
            "INVENTORY 2H",
            "API",
            "CALLS/DAY",
            "LOCAL NOW",
            "NEXT END OF DAY",
            "LAST QUEUED"
        ));
    }
    let mut shown = 0;
    for (instance, settings) in document.all_settings() {
        if wanted.as_ref().is_some_and(|w| !w.contains(&instance)) {
            continue;
        }
        shown += 1;
        let api = document.api_credentials(&instance).is_some();
        let budget = settings.api_budget(context.resources.daily_budget);
        let local = pipeline::schedule::local_time(&settings, now);
        let local = format!("{} {:02}:{:02}", local.date(), local.hour(), local.minute());
        let end_of_day = format!(
            "{:02}:{:02}",
            settings.end_of_day.hour(),
            settings.end_of_day.minute()
        );
        let next = next_end_of_day(&settings, now)
            .map(|t| output::rfc3339_micros((t.unix_timestamp_nanos() / 1000) as i64));
        let mut last = Vec::new();
        if let Some(state) = &state {
            for cadence in [
                pipeline::schedule::Cadence::EndOfDay,
                pipeline::schedule::Cadence::InventoryEvery2h,
            ] {
                if let Some(slot) = state.last_slot(&instance, cadence.name()).await? {
                    last.push(slot);
                }
            }
        }
        let zone = if settings.time_zone_named {
            settings.time_zone.name().to_owned()
        } else {
            format!("{} (default)", settings.time_zone.name())
        };
        if context.json {
            out.push_str(
                &json!({"instance": instance.as_str(), "time_zone": settings.time_zone.name(),
                        "time_zone_is_default": !settings.time_zone_named,
                        "end_of_day": end_of_day, "inventory_every_2h": settings.inventory_every_2h,
                        "api_credentials": api, "daily_api_budget": budget, "local_now": local,
                        // Only instances with API credentials are scheduled.
                        "next_end_of_day": next.filter(|_| api), "last_queued": last,
                        "unusable_settings": settings.unusable})
                .to_string(),
            );
            out.push('\n');
        } else {
            out.push_str(&format!(
                "{:<16} {zone:<28} {end_of_day:>10} {:>12} {:>4} {budget:>9} {local:<17} {:<21} {}\n",
                instance.as_str(),
                if settings.inventory_every_2h {
                    "yes"
                } else {
                    "no"
                },
                if api { "yes" } else { "no" },
                next.filter(|_| api).unwrap_or_else(|| "-".into()),
                if last.is_empty() {
                    "-".to_owned()
                } else {
                    last.join(", ")
                },
            ));
            for problem in &settings.unusable {
                out.push_str(&format!("  ! {problem}: its default is used\n"));
            }
        }
    }
    if !context.json && shown == 0 {
        out.push_str("no instance in the Revel secret document\n");
    }
    output::print(&out)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::local_time::Zone;
    use time::macros::datetime;

    #[test]
    fn the_next_end_of_day_is_the_next_local_2355_in_utc_across_a_dst_change() {
        let la = InstanceSettings::defaults(Zone::parse("America/Los_Angeles").unwrap());
        assert_eq!(
            next_end_of_day(&la, datetime!(2026-11-30 07:00 UTC)),
            Some(datetime!(2026-11-30 07:55 UTC))
        );
        assert_eq!(
            next_end_of_day(&la, datetime!(2026-11-30 07:55 UTC)),
            Some(datetime!(2026-12-01 07:55 UTC))
        );
        // Just after 2026-10-31 23:55 PDT (06:55Z), the next is 2026-11-01
        // 23:55 PST (07:55Z on the 2nd): the clocks went back between.
        assert_eq!(
            next_end_of_day(&la, datetime!(2026-11-01 07:00 UTC)),
            Some(datetime!(2026-11-02 07:55 UTC))
        );
    }
}
