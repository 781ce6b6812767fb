//! Runs the bundle on one machine, with no AWS account and no Docker.
//!
//! - [`template`]: reads template.yaml: resources, parameters, the functions'
//!   environment and routes;
//! - [`provision`]: creates those tables, queues and secrets on a local AWS
//!   endpoint (moto) and resolves the environment the functions would get;
//! - [`gateway`]: serves every function at its template route, through the
//!   same API Gateway payload and handler code as in Lambda;
//! - [`stream`]: reads the events table's stream and hands it to the
//!   processor, as Lambda's event source mapping does;
//! - [`events`]: writes the signed sample events in events/ and posts them;
//! - [`load`]: a bounded load generator for the running stack, with its check.

pub mod events;
pub mod fake_revel;
pub mod fake_winesitting;
pub mod gateway;
pub mod load;
pub mod partner;
pub mod provision;
pub mod stream;
pub mod template;
pub mod worker_loop;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The instance and secret the sample events are signed for.
pub const DEMO_INSTANCE: &str = "demo";
pub const DEMO_SECRET: &str = "demo-webhook-secret";
/// WineSitting's URL token for the demo account.
pub const DEMO_WINESITTING_TOKEN: &str = "demo-winesitting-token-3f9c2a7d81e6b54f";
/// The booking platform's signing secret for the demo account, and its header.
pub const DEMO_BOOKING_SECRET: &str = "demo-booking-secret";
pub const DEMO_BOOKING_HEADER: &str = "x-signature";
/// VinesOS's Standard Webhooks secret for instance `demo`.
pub const DEMO_VINESOS_SECRET: &str = "whsec_ZGVtby12aW5lc29zLXNpZ25pbmcta2V5";

/// The Revel webhook secret document `make local` puts in place: the demo
/// instance's signing secret and its Revel API credentials.
pub fn demo_revel_secret_document() -> String {
    serde_json::json!({ DEMO_INSTANCE: {
        "webhook": [DEMO_SECRET],
        "api_key": fake_revel::DEMO_API_KEY,
        "api_secret": fake_revel::DEMO_API_SECRET,
    }})
    .to_string()
}

/// The secret documents `make local` and the tests put in place, per secret id variable.
pub fn demo_secret_documents() -> Vec<(&'static str, String)> {
    vec![
        (
            "WINESITTING_SECRETS_ID",
            serde_json::json!({ DEMO_INSTANCE: {"token": DEMO_WINESITTING_TOKEN, "api_key": fake_winesitting::DEMO_API_KEY} }).to_string(),
        ),
        (
            "VINESOS_SECRETS_ID",
            serde_json::json!({ DEMO_INSTANCE: DEMO_VINESOS_SECRET }).to_string(),
        ),
        (
            "BOOKING_SECRETS_ID",
            serde_json::json!({ DEMO_INSTANCE: {"webhook": DEMO_BOOKING_SECRET}, "tokened": {"token": "tokened-booking-token"} }).to_string(),
        ),
    ]
}
