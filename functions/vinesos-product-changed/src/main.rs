//! Receives VinesOS's `product.changed` webhook; the product is applied to
//! Revel in the instance's end-of-day batch (`partner_catalog`).
//! Its route, logical id and event kind are its row in `vendors::functions`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_receiver(env!("CARGO_PKG_NAME")).await
}
