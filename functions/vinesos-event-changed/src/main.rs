//! Receives VinesOS's `event.changed` webhook; the event is applied to
//! Revel in the instance's end-of-day batch (`partner_catalog`).
use vendors::vinesos::VinesOsEvent;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_vinesos(VinesOsEvent::EventChanged).await
}
