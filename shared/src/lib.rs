//! The entry points every function crate's `main` calls: each builds its
//! clients once at cold start from the environment, then serves Lambda's
//! Runtime API. Everything they run lives in the crates below:
//!
//! | crate | what it is |
//! | --- | --- |
//! | [`domain`] | the core: ids, the webhook request, the `Source`/`EventKind` traits, event keys, errors |
//! | [`telemetry`] | JSON logs through `tracing`, CloudWatch EMF metrics |
//! | [`ports`] | every trait an AWS service stands behind, with in-memory fakes |
//! | [`aws_adapters`] | DynamoDB, SQS FIFO and Secrets Manager behind those traits |
//! | [`vendors`] | Revel, WineSitting, the booking platform and VinesOS, one module tree each |
//! | [`pipeline`] | receive, process, the jobs worker, the scheduler, Revel's pulls |
//!
//! | module | concept |
//! | --- | --- |
//! | [`http`] | API Gateway request in, answer out: the one place errors become HTTP |
//! | [`function`] | the entry points: clients built once, then the Runtime API |

pub mod function;
pub mod http;
