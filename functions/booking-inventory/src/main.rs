//! Receives the booking platform's `inventory` events, at POST /booking/{account}/inventory.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Inventory).await
}
