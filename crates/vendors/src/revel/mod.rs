//! Revel POS: six webhook types, each signed with `X-Revel-Signature` (hex
//! HMAC-SHA1 of the raw body) under the secret of the instance named in
//! `X-Revel-Instance`.

pub mod api;
mod payloads;
pub mod signature;

pub use payloads::{
    order_establishment, resource_id, rewards_card_of_order, sold_products, Entity, SoldProduct,
};

use std::sync::Arc;

use async_trait::async_trait;
use http::HeaderMap;
use serde_json::Value;

use crate::functions::{Function, Kind};
use crate::revel::signature::ClaimedSignature;
use domain::error::{AuthFailure, DependencyError, ReceiveError};
use domain::ids::InstanceName;
use domain::request::WebhookRequest;
use domain::sources::{header, Source, SourceName};
use ports::secrets::{InstanceDocument, InstanceSecrets, SecretCache};

/// The source name, in keys.
pub const NAME: SourceName = SourceName::new("revel");

pub const SIGNATURE_HEADER: &str = "x-revel-signature";
pub const INSTANCE_HEADER: &str = "x-revel-instance";
pub const EVENT_TYPE_HEADER: &str = "x-revel-event-type";
pub const EVENT_ID_HEADER: &str = "x-revel-event-id";
pub const MESSAGE_ID_HEADER: &str = "x-revel-message-id";
pub const ESTABLISHMENT_HEADER: &str = "x-revel-establishment-id";

/// The six Revel webhook types, one function and one route each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevelEventType {
    OrderFinalized,
    CustomerCreated,
    CustomerUpdated,
    RewardCardCreated,
    StockChanged,
    MenuUpdated,
}

impl RevelEventType {
    pub const ALL: [Self; 6] = [
        Self::OrderFinalized,
        Self::CustomerCreated,
        Self::CustomerUpdated,
        Self::RewardCardCreated,
        Self::StockChanged,
        Self::MenuUpdated,
    ];

    /// Revel's name for the event (also sent in `X-Revel-Event-Type`).
    pub fn name(self) -> &'static str {
        match self {
            Self::OrderFinalized => "order.finalized",
            Self::CustomerCreated => "customer.created",
            Self::CustomerUpdated => "customer.updated",
            Self::RewardCardCreated => "rewardcard.created",
            Self::StockChanged => "inout.stock",
            Self::MenuUpdated => "menu.updated",
        }
    }
}

/// This platform's rows of the table of functions ([`crate::functions`]).
pub const FUNCTIONS: &[Function] = &[
    Function {
        logical_id: "RevelOrderFinalizedFunction",
        crate_name: "revel-order-finalized",
        routes: &["/revel/orders/finalized"],
        kind: Kind::Revel(RevelEventType::OrderFinalized),
    },
    Function {
        logical_id: "RevelCustomerCreatedFunction",
        crate_name: "revel-customer-created",
        routes: &["/revel/customers/created"],
        kind: Kind::Revel(RevelEventType::CustomerCreated),
    },
    Function {
        logical_id: "RevelCustomerUpdatedFunction",
        crate_name: "revel-customer-updated",
        routes: &["/revel/customers/updated"],
        kind: Kind::Revel(RevelEventType::CustomerUpdated),
    },
    Function {
        logical_id: "RevelRewardcardCreatedFunction",
        crate_name: "revel-rewardcard-created",
        routes: &["/revel/rewardcards/created"],
        kind: Kind::Revel(RevelEventType::RewardCardCreated),
    },
    Function {
        logical_id: "RevelStockChangedFunction",
        crate_name: "revel-stock-changed",
        routes: &["/revel/stock/changed"],
        kind: Kind::Revel(RevelEventType::StockChanged),
    },
    Function {
        logical_id: "RevelMenuUpdatedFunction",
        crate_name: "revel-menu-updated",
        routes: &["/revel/menu/updated"],
        kind: Kind::Revel(RevelEventType::MenuUpdated),
    },
];

/// Revel as a [`Source`]: HMAC-SHA1 signatures, secrets per instance.
pub struct Revel {
    secrets: SecretCache,
}

impl Revel {
    pub fn new(secrets: SecretCache) -> Self {
        Self { secrets }
    }

    pub fn secrets(&self) -> &SecretCache {
        &self.secrets
    }
}

/// Its secret document, as the jobs worker reads it.
#[async_trait]
impl InstanceDocument for Revel {
    async fn document(&self) -> Result<Arc<InstanceSecrets>, DependencyError> {
        self.secrets.document().await
    }
}

#[async_trait]
impl Source for Revel {
    fn name(&self) -> SourceName {
        NAME
    }

    async fn authenticate(&self, request: &WebhookRequest) -> Result<InstanceName, ReceiveError> {
        let (headers, body) = (&request.headers, &request.body);
        let claimed = header(headers, SIGNATURE_HEADER).ok_or(AuthFailure::MissingSignature)?;
        let instance = header(headers, INSTANCE_HEADER).ok_or(AuthFailure::MissingInstance)?;
        let instance = InstanceName::parse(instance).map_err(|_| AuthFailure::InvalidInstance)?;
        let claimed = ClaimedSignature::parse(claimed).ok_or(AuthFailure::MalformedSignature)?;
        let secrets = self
            .secrets
            .secrets_for(&instance)
            .await?
            .ok_or(AuthFailure::UnknownInstance)?;
        if claimed.is_valid_for(body, &secrets) {
            Ok(instance)
        } else {
            Err(AuthFailure::SignatureMismatch.into())
        }
    }

    fn sender_event_id<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        header(headers, EVENT_ID_HEADER)
    }

    fn archived_headers(&self) -> &'static [&'static str] {
        &[
            INSTANCE_HEADER,
            EVENT_TYPE_HEADER,
            EVENT_ID_HEADER,
            MESSAGE_ID_HEADER,
            ESTABLISHMENT_HEADER,
            SIGNATURE_HEADER,
            "content-type",
            "user-agent",
        ]
    }

    async fn warm(&self) -> Result<usize, domain::error::DependencyError> {
        self.secrets.warm().await
    }

    /// The instance's zone from its entry in the secret document (or the
    /// deployment's default): read from the document authentication just
    /// used, so it costs no call.
    async fn time_zone(
        &self,
        instance: &InstanceName,
    ) -> Result<Option<domain::local_time::Zone>, domain::error::DependencyError> {
        self.secrets.zone_for(instance).await
    }

    fn is_ping(&self, body: &Value) -> bool {
        body.as_object()
            .is_some_and(|o| o.len() == 1 && o.get("ping").and_then(Value::as_str) == Some("pong"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_names_and_crates_are_distinct() {
        let mut seen = std::collections::HashSet::new();
        for kind in RevelEventType::ALL {
            let function = Kind::Revel(kind).function();
            assert!(seen.insert(function.route()));
            assert!(seen.insert(kind.name()));
            assert!(seen.insert(function.crate_name));
            assert_eq!(function.routes.len(), 1);
        }
    }
}
