//! Applies what the receivers stored: the events table's stream in, each
//! entity kept newest-wins and only then its follow-up job queued.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_processor().await
}
