//! Receives the booking platform's `accounts` events, at POST /booking/{account}/accounts.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Accounts).await
}
