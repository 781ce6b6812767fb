//! Receives the Revel `rewardcard.created` webhook, at POST /revel/rewardcards/created.
use vendors::revel::RevelEventType;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), shared::function::Error> {
    shared::function::serve_revel(RevelEventType::RewardCardCreated).await
}
