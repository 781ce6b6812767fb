//! Receives the booking platform's `package` events, at POST /booking/{account}/package.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Package).await
}
