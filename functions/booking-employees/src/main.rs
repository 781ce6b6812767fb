//! Receives the booking platform's `employees` events, at POST /booking/{account}/employees.
use vendors::booking::BookingFamily;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_booking(BookingFamily::Employees).await
}
