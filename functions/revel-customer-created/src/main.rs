//! Receives the Revel `customer.created` webhook, at POST /revel/customers/created.
use vendors::revel::RevelEventType;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_revel(RevelEventType::CustomerCreated).await
}
