//! Receives the Revel `menu.updated` webhook, at POST /revel/menu/updated.
use vendors::revel::RevelEventType;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_revel(RevelEventType::MenuUpdated).await
}
