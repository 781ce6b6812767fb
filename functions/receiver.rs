//! The `main` of every receiver crate in functions/: a receiver crate is a
//! Cargo.toml naming this file, and its name is its row in the table of
//! functions (`vendors::functions`), which says its route, its template
//! logical id and the event kind it receives.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_receiver(env!("CARGO_PKG_NAME")).await
}
