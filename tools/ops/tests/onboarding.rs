//! Connecting a merchant with `revel-ops`: `instance add/update/remove`,
//! the backfill it plans (run by the real jobs worker against the Revel
//! stand-in, interrupted by its budget and resumed) and `status`, each
//! against the integration harness's local AWS endpoint (moto).

mod common;

use std::process::Output;

use common::*;
use domain::ids::InstanceName;
use integration_tests::{deliver, expect_outcome, fast_api, request_with, Stack, DEMO_SECRET};
use local_stack::fake_revel::{self, Fixtures, DEMO_API_KEY, DEMO_API_SECRET};
use ports::sync_state::CallBudget;
use serde_json::{json, Value};
use vendors::revel::RevelEventType;

/// An instance the Revel stand-in serves with the demo credentials.
const NEW: &str = local_stack::DEMO_LA_INSTANCE;
const API: &str = "https://abc123.execute-api.us-east-1.amazonaws.com";

async fn revel_stand_in() -> String {
    fake_revel::start(Fixtures::new(fake_revel::default_dir()))
        .await
        .expect("the Revel stand-in starts")
}

/// `instance add NEW` with the stand-in's credentials and `extra` flags.
fn add(stack: &Stack, revel: &str, extra: &[&str]) -> Output {
    add_as(stack, revel, NEW, (DEMO_API_KEY, DEMO_API_SECRET), extra)
}

/// `instance add name` with these API credentials and `extra` flags (the
/// name last, after `--`, as an operator passes one that starts with a
/// hyphen).
fn add_as(
    stack: &Stack,
    revel: &str,
    name: &str,
    (key, secret): (&str, &str),
    extra: &[&str],
) -> Output {
    let base = format!("{revel}/{{instance}}");
    let mut args = vec![
        "instance",
        "add",
        "--api-key",
        key,
        "--api-secret",
        secret,
        "--webhook-api-url",
        API,
        "--revel-api-base-url",
        &base,
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", name]);
    ops(stack, &args)
}

async fn document(stack: &Stack) -> Value {
    let text = aws_sdk_secretsmanager::Client::new(&stack.sdk)
        .get_secret_value()
        .secret_id(&stack.config.revel_secrets_id)
        .send()
        .await
        .expect("the secret reads")
        .secret_string
        .expect("a string");
    serde_json::from_str(&text).expect("JSON")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The secret `instance add` printed for every action.
fn printed_secret(out: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("secret (the same for every action): ")
        })
        .expect("the secret is printed")
        .to_owned()
}

async fn spent(stack: &Stack, instance: &str) -> u64 {
    stack
        .sync_state()
        .spent_today(&InstanceName::parse(instance).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_an_instance_writes_only_its_entry_prints_each_actions_url_and_its_webhooks_are_then_accepted(
) {
    let stack = Stack::new().await;
    let revel = revel_stand_in().await;
    let before = document(&stack).await;

    let out = succeeded(&add(
        &stack,
        &revel,
        &[
            "--time-zone",
            "America/Los_Angeles",
            "--daily-api-budget",
            "500",
            "--inventory-every-2h",
            "true",
        ],
    ));

    for action in RevelEventType::ALL {
        let route = vendors::functions::Kind::Revel(action).function().route();
        let wanted = format!("{:<20} {API}{route}", action.name());
        assert!(out.contains(&wanted), "{wanted:?} in:\n{out}");
    }
    assert!(
        out.contains("API credentials: accepted by Revel (1 call)"),
        "{out}"
    );
    assert_eq!(
        spent(&stack, NEW).await,
        1,
        "the check is one call of its budget"
    );
    let secret = printed_secret(&out);
    assert_eq!(secret.len(), 64, "32 random bytes, hex");
    let after = document(&stack).await;
    assert_eq!(
        after[local_stack::DEMO_INSTANCE],
        before[local_stack::DEMO_INSTANCE],
        "the other instance is as it was"
    );
    assert_eq!(
        after[NEW],
        json!({"webhook": [secret], "api_key": DEMO_API_KEY, "api_secret": DEMO_API_SECRET,
               "time_zone": "America/Los_Angeles", "daily_api_budget": 500, "inventory_every_2h": true})
    );
    // `instance list` reads it back as the functions do.
    let listed = json_lines(&ops(
        &stack,
        &["--json", "instance", "list", "--instance", NEW],
    ));
    assert_eq!(listed[0]["daily_api_budget"], 500);
    assert_eq!(listed[0]["time_zone"], "America/Los_Angeles");

    // Revel, told the printed secret, is let in.
    let body = integration_tests::payload("customer.json");
    let headers =
        local_stack::events::revel_headers(RevelEventType::CustomerCreated, NEW, &secret, &body);
    let (status, answer) = deliver(
        &stack.receiver(RevelEventType::CustomerCreated),
        request_with(RevelEventType::CustomerCreated, &headers, &body),
    )
    .await;
    expect_outcome(status, &answer, 200, "accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_nothing_is_written_or_called() {
    let stack = Stack::new().await;
    let revel = revel_stand_in().await;
    let before = document(&stack).await;

    for (extra, code, says) in [
        (
            vec!["--time-zone", "America/Springfield"],
            2,
            "America/Springfield",
        ),
        (vec!["--end-of-day", "25:00"], 2, "end_of_day"),
        (vec!["--daily-api-budget", "0"], 2, "--daily-api-budget"),
        (vec!["--webhook-secret", "short"], 2, "--webhook-secret"),
        (vec!["--orders-since", "2016-01-01"], 2, "--backfill"),
    ] {
        let output = add(&stack, &revel, &extra);
        assert_eq!(
            output.status.code(),
            Some(code),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
    }
    let bad_key = add_as(&stack, &revel, NEW, ("has:colon1", DEMO_API_SECRET), &[]);
    assert_eq!(bad_key.status.code(), Some(2));
    assert!(
        stderr(&bad_key).contains("--api-key") && !stderr(&bad_key).contains("has:colon1"),
        "{}",
        stderr(&bad_key)
    );
    for name in ["-bar", "my_bar", "bar.example"] {
        let output = add_as(&stack, &revel, name, (DEMO_API_KEY, DEMO_API_SECRET), &[]);
        assert_eq!(output.status.code(), Some(2), "{name}");
        assert!(
            stderr(&output).contains("instance name"),
            "{name}: {}",
            stderr(&output)
        );
    }
    // Credentials Revel refuses: checked before anything is written.
    let refused = add_as(&stack, &revel, NEW, (DEMO_API_KEY, "wrong-secret"), &[]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("Revel refused them (HTTP 401)"),
        "{}",
        stderr(&refused)
    );
    // An instance that is connected already.
    let again = add_as(
        &stack,
        &revel,
        local_stack::DEMO_INSTANCE,
        (DEMO_API_KEY, DEMO_API_SECRET),
        &[],
    );
    assert_eq!(again.status.code(), Some(5), "{}", stderr(&again));
    // A dry run shows the entry with its secrets by length only.
    let dry = succeeded(&add(
        &stack,
        &revel,
        &["--dry-run", "--webhook-secret", "0123456789abcdef0123"],
    ));
    assert!(
        dry.contains("nothing was written") && dry.contains("<20 characters>"),
        "{dry}"
    );
    assert!(!dry.contains(DEMO_API_SECRET), "{dry}");
    assert!(
        !dry.contains("0123456789abcdef0123"),
        "a given secret is not echoed: {dry}"
    );
    // A secret that would be made is not shown: it is not the one written later.
    let dry = succeeded(&add(&stack, &revel, &["--dry-run"]));
    assert!(
        dry.contains("a new random one, made and shown when written"),
        "{dry}"
    );
    assert!(
        !dry.split(|c: char| !c.is_ascii_hexdigit())
            .any(|word| word.len() == 64),
        "no secret in a dry run: {dry}"
    );

    assert_eq!(document(&stack).await, before, "nothing was written");
    assert_eq!(
        spent(&stack, NEW).await,
        1,
        "only the refused check called Revel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_changes_only_what_it_is_given_and_remove_takes_out_only_that_instance() {
    let stack = Stack::new().await;
    let revel = revel_stand_in().await;
    succeeded(&add(&stack, &revel, &["--time-zone", "Europe/Paris"]));
    let added = document(&stack).await[NEW].clone();

    let out = succeeded(&ops(
        &stack,
        &[
            "instance",
            "update",
            NEW,
            "--daily-api-budget",
            "250",
            "--end-of-day",
            "22:30",
        ],
    ));
    assert!(out.contains("secret: unchanged (not shown)"), "{out}");
    let mut expected = added.clone();
    expected["daily_api_budget"] = json!(250);
    expected["end_of_day"] = json!("22:30");
    assert_eq!(document(&stack).await[NEW], expected);

    let nothing = ops(&stack, &["instance", "update", NEW]);
    assert_eq!(nothing.status.code(), Some(2), "no change given");
    let unknown = ops(
        &stack,
        &["instance", "update", "nobody", "--daily-api-budget", "5"],
    );
    assert_eq!(unknown.status.code(), Some(4));
    let zone = ops(
        &stack,
        &["instance", "update", NEW, "--time-zone", "Mars/Olympus"],
    );
    assert_eq!(zone.status.code(), Some(2));
    assert_eq!(
        document(&stack).await[NEW],
        expected,
        "a refused update writes nothing"
    );

    // A new webhook secret rotates: the old one stays accepted until dropped.
    let old_secret = added["webhook"][0].clone();
    let out = succeeded(&ops(
        &stack,
        &[
            "instance",
            "update",
            NEW,
            "--webhook-secret",
            "the-new-secret-0123456789",
        ],
    ));
    assert!(out.contains("the old one is still accepted"), "{out}");
    assert!(
        !out.contains("the-new-secret-0123456789"),
        "not echoed: {out}"
    );
    assert_eq!(
        document(&stack).await[NEW]["webhook"],
        json!(["the-new-secret-0123456789", old_secret])
    );
    succeeded(&ops(
        &stack,
        &["instance", "update", NEW, "--drop-old-webhook-secret"],
    ));
    assert_eq!(
        document(&stack).await[NEW]["webhook"],
        json!(["the-new-secret-0123456789"])
    );

    // An entry of webhooks only, in the short form, takes settings too.
    succeeded(&ops(
        &stack,
        &[
            "instance",
            "update",
            local_stack::DEMO_INSTANCE,
            "--time-zone",
            "Asia/Tokyo",
        ],
    ));
    assert_eq!(
        document(&stack).await[local_stack::DEMO_INSTANCE],
        json!({"webhook": DEMO_SECRET, "time_zone": "Asia/Tokyo"})
    );

    succeeded(&ops(&stack, &["instance", "remove", NEW, "--dry-run"]));
    assert!(document(&stack).await.get(NEW).is_some());
    succeeded(&ops(&stack, &["instance", "remove", NEW]));
    let after = document(&stack).await;
    assert!(after.get(NEW).is_none());
    assert!(after.get(local_stack::DEMO_INSTANCE).is_some());
    assert_eq!(
        ops(&stack, &["instance", "remove", NEW]).status.code(),
        Some(4)
    );
}

/// The scheduler's own entry point runs the task `backfill` for NEW, as at
/// its end of day at `at`, and the jobs worker drains the queue.
async fn run_backfill_task(stack: &Stack, revel: &str, at: &str) {
    let clients = stack.clients();
    let jobs = aws_adapters::sqs::SqsJobQueue::new(
        aws_sdk_sqs::Client::new(&stack.sdk),
        &stack.config.jobs_queue_url,
    );
    shared::function::run_schedule(
        &json!({"task": "backfill", "instance": NEW, "scheduled_time": at}),
        &shared::function::revel_source(&stack.config, &clients.secrets),
        None,
        &jobs,
        &stack.sync_state(),
    )
    .await
    .expect("the task is queued");
    stack
        .drain(&stack.worker(fast_api(revel), 1000, None), 10)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_stopped_by_its_budget_resumes_where_it_stopped_reads_each_page_once_and_is_never_run_again(
) {
    let stack = Stack::new().await;
    let revel = revel_stand_in().await;
    // A budget of 6 leaves the backfill 4 calls a day; the check took one.
    let out = succeeded(&add(
        &stack,
        &revel,
        &[
            "--daily-api-budget",
            "6",
            "--backfill",
            "--orders-since",
            "2016-01-01",
        ],
    ));
    assert!(
        out.contains("Backfill planned and its first run queued"),
        "{out}"
    );

    stack
        .drain(&stack.worker(fast_api(&revel), 1000, None), 5)
        .await;
    // Pages of two: customers (1), rewards cards (1), products (3 of 5 objects).
    assert_eq!(spent(&stack, NEW).await, 4);
    let status = succeeded(&ops(&stack, &["backfill", "status"]));
    assert!(
        status.contains(&format!("{NEW}: backfill planned")),
        "{status}"
    );
    assert!(
        status.contains("Customer      [########################] 100% done"),
        "{status}"
    );
    assert!(
        status.contains("Product       [##########..............]  40% 2 of 5"),
        "{status}"
    );
    assert!(status.contains("day(s) left"), "{status}");

    // The next day's share, as a larger budget; the scheduler queues the run.
    succeeded(&ops(
        &stack,
        &["instance", "update", NEW, "--daily-api-budget", "100"],
    ));
    run_backfill_task(&stack, &revel, "2026-11-30T07:55:00Z").await;

    // 4 + products' last 2 pages, modifiers, stock, one page of orders and
    // each order's items and payments (2 orders): no page was read twice.
    assert_eq!(spent(&stack, NEW).await, 4 + 2 + 1 + 1 + 1 + 4);
    let lines = json_lines(&ops(&stack, &["--json", "backfill", "status"]));
    assert_eq!(lines[0]["done"], true, "{lines:?}");
    stack.settle().await;
    let keys = stack.entity_keys().await;
    for wanted in [
        "revel:demo-la:customer:",
        "revel:demo-la:rewards_card:",
        "revel:demo-la:product:",
        "revel:demo-la:order:",
    ] {
        assert!(
            keys.iter().any(|k| k.starts_with(wanted)),
            "{wanted} in {keys:?}"
        );
    }

    // Backfilled orders are no sign of a webhook.
    let out = stdout(&ops(&stack, &["status", NEW]));
    assert!(
        out.contains(&format!(
            "healthy   {NEW:<16} webhook order.finalized    none received yet"
        )),
        "{out}"
    );

    run_backfill_task(&stack, &revel, "2026-12-01T07:55:00Z").await;
    assert_eq!(spent(&stack, NEW).await, 13, "done is done: no call");
    let budgets = json_lines(&ops(&stack, &["--json", "budgets", "--instance", NEW]));
    assert_eq!(budgets[0]["limit"], 100, "its own budget: {budgets:?}");
    assert_eq!(budgets[0]["used"], 13);

    // Removed and added again: not backfilled twice, and nothing written.
    succeeded(&ops(&stack, &["instance", "remove", NEW]));
    let again = add(&stack, &revel, &["--backfill"]);
    assert_eq!(again.status.code(), Some(5), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("never run twice"),
        "{}",
        stderr(&again)
    );
    assert!(
        document(&stack).await.get(NEW).is_none(),
        "nothing was written"
    );
    assert_eq!(spent(&stack, NEW).await, 13, "nor called");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_each_instance_is_healthy_and_turns_unhealthy_with_the_reason_when_the_partner_does_not_answer(
) {
    let stack = Stack::new().await.with_api_credentials().await;
    let revel = revel_stand_in().await;
    succeeded(&add(
        &stack,
        &revel,
        &["--time-zone", "America/Los_Angeles"],
    ));
    // Any HTTP answer is an endpoint that answers (the stand-in: 404).
    let partner_up = [("DOWNSTREAM_URL", revel.as_str())];

    let out = succeeded(&ops_with(&stack, &["status"], &[], &partner_up));
    for instance in [local_stack::DEMO_INSTANCE, NEW] {
        assert!(
            out.contains(&format!("healthy   {instance:<16} webhook order.finalized")),
            "{out}"
        );
        assert!(
            out.contains(&format!("healthy   {instance:<16} api budget")),
            "{out}"
        );
    }
    assert!(out.contains("all healthy (2 instance(s))"), "{out}");
    let lines = json_lines(&ops_with(
        &stack,
        &["--json", "status", NEW],
        &[],
        &partner_up,
    ));
    assert!(
        lines.iter().all(|l| l["health"] != "unhealthy"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["scope"] == NEW || l["scope"] == "bundle"),
        "{lines:?}"
    );

    // The partner's endpoint stops answering: a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = format!("http://{closed}/partner/webhooks");
    let output = ops_with(
        &stack,
        &["status"],
        &[],
        &[("DOWNSTREAM_URL", down.as_str())],
    );
    assert_eq!(output.status.code(), Some(6), "{}", stdout(&output));
    let out = stdout(&output);
    assert!(
        out.contains("unhealthy bundle           partner                    its endpoint did not answer (connection refused or unreachable)"),
        "{out}"
    );

    // A body the parser does not understand is quarantined: unhealthy.
    let garbage = br#"{"ping": 1, "no": "customer"}"#;
    let headers = local_stack::events::revel_headers(
        RevelEventType::CustomerCreated,
        local_stack::DEMO_INSTANCE,
        DEMO_SECRET,
        garbage,
    );
    deliver(
        &stack.receiver(RevelEventType::CustomerCreated),
        request_with(RevelEventType::CustomerCreated, &headers, garbage),
    )
    .await;
    let output = ops_with(
        &stack,
        &["status", local_stack::DEMO_INSTANCE],
        &[],
        &partner_up,
    );
    assert_eq!(output.status.code(), Some(6));
    assert!(
        stdout(&output).contains("1 quarantined in 24 h"),
        "{}",
        stdout(&output)
    );
    assert_eq!(ops(&stack, &["status", "nobody"]).status.code(), Some(4));
}
