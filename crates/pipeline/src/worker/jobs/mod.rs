//! One file per job: what it reads from its message, what it does, and how
//! its own errors are disposed of.

pub mod apply_to_revel;
pub mod backfill;
pub mod deliver;
pub mod inventory_request;
pub mod inventory_sold;
pub mod partner_catalog;
pub mod pull;
pub mod reconcile;
pub mod winesitting_repair;
