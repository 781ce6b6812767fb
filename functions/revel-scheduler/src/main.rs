//! Turns each EventBridge schedule tick into one job per Revel instance.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_scheduler().await
}
