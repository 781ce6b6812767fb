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
//! - [`inputs`]: writes the sample inputs of the functions API Gateway
//!   doesn't call (the processor, the jobs worker, the scheduler);
//! - [`partner`]: the partner system's stand-in, which keeps what it
//!   received, on a port of its own that can be closed and opened again;
//! - [`load`]: a bounded load generator for the running stack, with its check.

pub mod events;
pub mod fake_revel;
pub mod fake_winesitting;
pub mod gateway;
pub mod inputs;
pub mod load;
pub mod partner;
pub mod post;
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

/// A second Revel instance `make local` serves: a bar in Los Angeles, whose
/// end of day and 2-hourly inventory pulls fall at its own local time.
pub const DEMO_LA_INSTANCE: &str = "demo-la";
pub const DEMO_LA_TIME_ZONE: &str = "America/Los_Angeles";

/// The Revel secret document `make local` puts in place: the demo
/// instance's (in the deployment's default zone, UTC) and a second instance
/// in Los Angeles with the retailer option, the same API credentials, and
/// the settings that make its schedule its own.
pub fn local_revel_secret_document() -> String {
    let mut document: serde_json::Value =
        serde_json::from_str(&demo_revel_secret_document()).expect("the demo document is JSON");
    document[DEMO_LA_INSTANCE] = serde_json::json!({
        "webhook": [DEMO_SECRET],
        "api_key": fake_revel::DEMO_API_KEY,
        "api_secret": fake_revel::DEMO_API_SECRET,
        "time_zone": DEMO_LA_TIME_ZONE,
        "end_of_day": "23:55",
        "inventory_every_2h": true,
    });
    document.to_string()
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
            // The partner asks for stock on behalf of the instance with the
            // retailer option too (the inventory request sample).
            serde_json::json!({ DEMO_INSTANCE: DEMO_VINESOS_SECRET, DEMO_LA_INSTANCE: DEMO_VINESOS_SECRET }).to_string(),
        ),
        (
            "BOOKING_SECRETS_ID",
            serde_json::json!({ DEMO_INSTANCE: {"webhook": DEMO_BOOKING_SECRET}, "tokened": {"token": "tokened-booking-token"} }).to_string(),
        ),
    ]
}

/// Where `up` records the running stack for the other commands.
pub const STATE_FILE: &str = ".local/stack.json";

/// The running stack, as `up` recorded it in [`STATE_FILE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningStack {
    /// Where its routes are served.
    pub url: String,
    /// Its local AWS endpoint.
    pub endpoint: String,
    /// The functions' environment.
    pub env: std::collections::BTreeMap<String, String>,
}

impl RunningStack {
    /// What `up` wrote to `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|_| format!("no {}: is `make local` running?", path.display()))?;
        let state: serde_json::Value = serde_json::from_str(&text)?;
        let text_of = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        Ok(Self {
            url: text_of(&state["url"]).unwrap_or_else(|| "http://127.0.0.1:3000".to_owned()),
            endpoint: text_of(&state["endpoint"]).ok_or("no endpoint in the stack state")?,
            env: serde_json::from_value(state["env"].clone())
                .map_err(|e| format!("the stack state's env: {e}"))?,
        })
    }

    /// The environment, as provisioning resolved it (no resources listed).
    pub fn provisioned(&self) -> provision::Provisioned {
        provision::Provisioned {
            resources: std::collections::BTreeMap::new(),
            env: self.env.clone(),
        }
    }

    /// The named variable of the functions' environment.
    pub fn var(&self, name: &str) -> Result<&str, Error> {
        self.env
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| format!("no {name} in the stack state").into())
    }
}
