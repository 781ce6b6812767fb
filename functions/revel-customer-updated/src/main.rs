//! Receives the Revel `customer.updated` webhook, at POST /revel/customers/updated.
use vendors::revel::RevelEventType;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_revel(RevelEventType::CustomerUpdated).await
}
