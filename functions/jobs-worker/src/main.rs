//! Consumes the follow-up jobs queue: downstream deliveries, catalog pulls,
//! the scheduled syncs and reconciliation.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_worker().await
}
