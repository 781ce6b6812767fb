//! The `main` of every receiver crate in functions/: a receiver crate is a
//! Cargo.toml naming this file, and its name is its row in the table of
//! functions (`vendors::functions`), which says its route, its template
//! logical id and the event kind it receives. The row is found when the
//! crate is compiled: a crate not in the table does not build, and its
//! binary keeps only its own source.

const FUNCTION: &shared::function::Function =
    match shared::function::receiver_row(env!("CARGO_PKG_NAME")) {
        Some(function) => function,
        None => panic!("this receiver crate's name is not in the table of functions"),
    };

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_receiver(FUNCTION).await
}
