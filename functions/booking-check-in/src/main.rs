//! Receives the booking platform's `check-in` events, at POST /booking/{account}/check-in.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::CheckIn).await
}
