//! Receives VinesOS's `product.changed` webhook; the product is applied to
//! Revel in the instance's end-of-day batch (`partner_catalog`).
use vendors::vinesos::VinesOsEvent;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_vinesos(VinesOsEvent::ProductChanged).await
}
