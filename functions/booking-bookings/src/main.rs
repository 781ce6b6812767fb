//! Receives the booking platform's `bookings` events, at POST /booking/{account}/bookings.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Bookings).await
}
