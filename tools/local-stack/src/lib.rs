//! Runs the bundle on one machine, with no AWS account and no Docker.
//!
//! - [`template`]: reads template.yaml: resources, parameters, the functions'
//!   environment and routes;
//! - [`provision`]: creates those tables, queues and secrets on a local AWS
//!   endpoint (moto) and resolves the environment the functions would get;
//! - [`gateway`]: serves every function at its template route, through the
//!   same API Gateway payload and handler code as in Lambda;
//! - [`events`]: writes the signed sample events in events/ and posts them.

pub mod events;
pub mod fake_revel;
pub mod gateway;
pub mod partner;
pub mod provision;
pub mod template;
pub mod worker_loop;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The instance and secret the sample events are signed for.
pub const DEMO_INSTANCE: &str = "demo";
pub const DEMO_SECRET: &str = "demo-webhook-secret";
