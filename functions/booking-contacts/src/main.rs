//! Receives the booking platform's `contacts` events, at POST /booking/{account}/contacts.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Contacts).await
}
