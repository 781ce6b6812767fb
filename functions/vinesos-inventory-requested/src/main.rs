//! Receives VinesOS's `inventory.requested` webhook (a search done on the
//! partner's side); the jobs worker pulls Revel's current stock of the
//! products it names (`pipeline::inventory_request`).
//! Its route, logical id and event kind are its row in `vendors::functions`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_receiver(env!("CARGO_PKG_NAME")).await
}
