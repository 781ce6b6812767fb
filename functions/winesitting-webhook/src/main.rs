//! Receives WineSitting's order and putaway events, at POST /winesitting/{account}/{token}.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_winesitting().await
}
