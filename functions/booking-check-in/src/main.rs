//! Receives the booking platform's `check-in` events, at POST /booking/{account}/check-in.
//! Its route, logical id and event kind are its row in `vendors::functions`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_receiver(env!("CARGO_PKG_NAME")).await
}
