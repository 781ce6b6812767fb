//! Receives the Revel `order.finalized` webhook, at POST /revel/orders/finalized.
use vendors::revel::RevelEventType;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_revel(RevelEventType::OrderFinalized).await
}
