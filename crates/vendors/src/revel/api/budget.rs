//! What the daily call budget's refusals mean to the client: a spent
//! budget stops a run with [`RevelApiError::BudgetExhausted`] before Revel
//! cuts it off halfway, an unreadable one with [`RevelApiError::Budget`],
//! both before any call. (The attempt loop, [`super::retry::with_retries`],
//! spends the call.)

use ports::sync_state::BudgetError;

use super::RevelApiError;

impl From<BudgetError> for RevelApiError {
    fn from(value: BudgetError) -> Self {
        match value {
            BudgetError::Exhausted { limit } => Self::BudgetExhausted { limit },
            BudgetError::Unavailable(source) => Self::Budget(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wiremock::matchers::path;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use crate::revel::api::testing::*;
    use crate::revel::api::{RevelApiError, RevelResources};

    #[tokio::test]
    async fn a_budget_of_two_stops_a_failing_run_with_budget_exhausted_after_two_calls() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(500))
            .mount(&server)
            .await;
        let budget = FixedBudget::new(2);

        let error = api(&server, budget.clone())
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::BudgetExhausted { limit: 2 }),
            "{error:?}"
        );
        assert!(error.is_retryable_later());
        assert_eq!(budget.used(), 2);
        assert_eq!(requests(&server).await, 2);
    }

    #[tokio::test]
    async fn a_broken_budget_store_is_a_budget_error_and_nothing_is_called() {
        let server = MockServer::start().await;

        let error = api(&server, Arc::new(BrokenBudget))
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(matches!(error, RevelApiError::Budget(_)), "{error:?}");
        assert!(error.is_retryable_later());
        assert_eq!(requests(&server).await, 0);
    }

    #[tokio::test]
    async fn a_spent_budget_stops_a_write_before_any_call() {
        let server = MockServer::start().await;
        let api = api(&server, FixedBudget::new(0));

        let created = api
            .create(&instance(), &credentials(), "Customer", &customer())
            .await;
        let updated = api
            .update(&instance(), &credentials(), "Customer", "42", &customer())
            .await;

        for result in [created, updated] {
            assert!(
                matches!(result, Err(RevelApiError::BudgetExhausted { limit: 0 })),
                "{result:?}"
            );
        }
        assert_eq!(requests(&server).await, 0);
    }
}
