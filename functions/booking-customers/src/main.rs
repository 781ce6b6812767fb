//! Receives the booking platform's `customers` events, at POST /booking/{account}/customers.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Customers).await
}
