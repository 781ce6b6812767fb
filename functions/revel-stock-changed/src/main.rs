//! Receives the Revel `inout.stock` webhook, at POST /revel/stock/changed.
use vendors::revel::RevelEventType;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_revel(RevelEventType::StockChanged).await
}
