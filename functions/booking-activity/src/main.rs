//! Receives the booking platform's `activity` events, at POST /booking/{account}/activity.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Activity).await
}
