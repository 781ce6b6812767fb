//! Receives VinesOS's `order-added` webhook and queues it to be applied to Revel.
use vendors::vinesos::VinesOsEvent;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_vinesos(VinesOsEvent::OrderAdded).await
}
