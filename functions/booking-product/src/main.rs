//! Receives the booking platform's `product` events, at POST /booking/{account}/product.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Product).await
}
