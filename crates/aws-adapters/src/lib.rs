//! The AWS side of the ports: DynamoDB, SQS FIFO and Secrets Manager
//! through the AWS SDK for Rust, and the one `SdkConfig` they share.
//!
//! | module | adapter |
//! | --- | --- |
//! | [`sdk`] | one `SdkConfig` from Lambda's environment, with timeouts that fit Revel's 10 s deadline |
//! | [`dynamodb`] | the events and entities tables ([`ports::store`]) |
//! | [`sqs`] | the jobs queue ([`ports::queue::JobQueue`]) and its received jobs put off or parked ([`ports::queue::InFlightJobs`]) |
//! | [`secrets_manager`] | the secret document ([`ports::secrets::SecretSource`]) |
//! | [`sync_state`] | the sync-state table ([`ports::sync_state`]) |

pub mod dynamodb;
pub mod sdk;
pub mod secrets_manager;
pub mod sqs;
pub mod sync_state;
