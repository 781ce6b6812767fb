//! The core: what an event is, whoever sends it and wherever it is kept.
//! Nothing here knows AWS, a vendor or the pipeline; every other crate of
//! the bundle builds on these types and traits.
//!
//! | module | concept |
//! | --- | --- |
//! | [`ids`] | validated newtypes: [`ids::InstanceName`], [`ids::EventKey`], [`ids::EntityKey`] |
//! | [`request`] | the webhook request a receiver reads |
//! | [`sources`] | the [`sources::Source`] and [`sources::EventKind`] traits: identity, entity, version, follow-up |
//! | [`idempotency`] | the key an event is stored under, so it is stored once |
//! | [`projection`] | the receivers' parse: only the fields a key is made of become values |
//! | [`local_time`] | an instance's time zone; naive wall-clock times read in it |
//! | [`clock`] | wall-clock time behind a trait (the simulation runs on virtual time) |
//! | [`error`] | the typed errors that cross crates; a dependency failure logs itself |
//!
//! # Glossary
//!
//! One word per concept, in code, logs, metrics and docs alike.
//!
//! | word | means | not to be called |
//! | --- | --- | --- |
//! | **source** | a platform that sends webhooks (Revel, WineSitting, the booking platform, VinesOS), described once by a [`sources::Source`] and its event kinds | sender, vendor (in code), platform (in keys) |
//! | **instance** | one tenant of a source: a Revel establishment group, a WineSitting or booking account, named by [`ids::InstanceName`] | tenant; the WineSitting and booking routes say `{account}`, as those platforms do |
//! | **request** | one inbound webhook call, as a receiver sees it ([`request::WebhookRequest`]) | delivery, message |
//! | **event** | what a request carries, stored once under its [`ids::EventKey`] as a record of the events table | delivery, notification (except as the booking platform names its own field) |
//! | **event kind** | one event type of a source and what its bodies mean ([`sources::EventKind`]) | event type (that is its name: `order.finalized`) |
//! | **entity** | the current state of one thing an event describes (an order, a customer, a stock level), kept newest-wins under its [`ids::EntityKey`] | object, item (those are Revel's words for its resources) |
//! | **entity kind** | what an entity is: a variant of its source's enum declared with [`entities!`] (`revel::Entity::Order`), spelled in keys as a [`sources::EntityKind`] (`order`) | entity type, resource (Revel's word) |
//! | **receiver** | the function that verifies a request and stores its event with one conditional put | ingestor, handler |
//! | **processor** | the events table's stream consumer: entity, then follow-up job | — |
//! | **job** | follow-up work on the SQS FIFO jobs queue, run by the jobs worker | task (a task is what the scheduler runs on its clock and fans out as jobs), message (that is SQS's envelope of a job) |
//! | **delivery** | the bundle's outbound message to the partner (VinesOS), signed the Standard Webhooks way | request, notification |
//! | **partner** | VinesOS, the system the bundle delivers to and applies changes from | downstream (the client's module keeps that name: it is where deliveries go) |
//! | **pull** | a paged read of a Revel resource within the instance's daily API budget; the scheduled pulls are the sync schedule | fetch |
//! | **function** | one Lambda of the template: a row in the table of functions (`vendors::functions`) | lambda, handler |

pub mod clock;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod local_time;
pub mod projection;
pub mod request;
pub mod sources;
