//! [`RevelApi`], the HTTP client: `{base}/resources/{Resource}/`, the
//! credentials in the `API-AUTHENTICATION` header (marked sensitive, never
//! in a `Debug`, an error or a log line, and neither is a response body),
//! and what each answer means. The three calls (a page, a create, an
//! update) differ only in whether sending twice is harmless ([`Call`]);
//! one exchange reads every answer.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode, Url};

use domain::ids::InstanceName;
use ports::sync_state::CallBudget;

use super::pagination::parse_page;
use super::retry::{is_transient, retry_after_of, with_retries, Attempt};
use super::{ApiCredentials, Page, PageRequest, RevelApiConfig, RevelApiError, RevelResources};

/// The header Revel reads `{api_key}:{api_secret}` from.
const AUTH_HEADER: &str = "API-AUTHENTICATION";

/// Resource names go into the URL path; anything longer than this is not a
/// Revel resource.
const MAX_RESOURCE_LEN: usize = 64;

/// Object ids go into the URL path too; Revel's are numbers or UUIDs.
const MAX_ID_LEN: usize = 64;

/// The `API-AUTHENTICATION` value of `credentials`.
fn auth_header(credentials: &ApiCredentials) -> Result<HeaderValue, RevelApiError> {
    credentials
        .key_and_secret_header()
        .map_err(|_| RevelApiError::InvalidRequest("credentials are not a valid header value"))
}

/// The three calls, which differ in whether sending twice is harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    /// GET of a page: idempotent.
    Read,
    /// POST: not idempotent.
    Create,
    /// PATCH with absolute values: idempotent.
    Update,
}

impl Call {
    fn method(self) -> Method {
        match self {
            Self::Read => Method::GET,
            Self::Create => Method::POST,
            Self::Update => Method::PATCH,
        }
    }

    fn is_idempotent(self) -> bool {
        !matches!(self, Self::Create)
    }

    /// Whether a failed attempt that got `status` may be sent again: only
    /// when Revel certainly did not act, unless the call is idempotent.
    fn retries(self, status: StatusCode) -> bool {
        if self.is_idempotent() {
            is_transient(status)
        } else {
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE
        }
    }
}

/// A client of Revel's REST API, shared by every instance.
pub struct RevelApi {
    client: reqwest::Client,
    config: RevelApiConfig,
    budget: Arc<dyn CallBudget>,
}

impl fmt::Debug for RevelApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevelApi")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl RevelResources for RevelApi {
    /// GET one page; every HTTP attempt (retries included) first spends one call from the budget.
    async fn page(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        request: &PageRequest,
    ) -> Result<Page, RevelApiError> {
        // Everything that can be refused is refused before the budget is touched.
        check_resource(&request.resource)?;
        let url = self.url(instance, &request.resource)?;
        let auth = auth_header(credentials)?;
        with_retries(
            self.budget.as_ref(),
            &self.config,
            instance,
            &request.resource,
            Call::Read.method().as_str(),
            || {
                let fixed = [
                    ("format", "json".to_owned()),
                    ("limit", self.config.page_size.to_string()),
                    ("offset", request.offset.to_string()),
                ];
                let get = self
                    .client
                    .get(url.clone())
                    .header(AUTH_HEADER, auth.clone())
                    .query(&fixed)
                    .query(&request.filters);
                self.exchange(Call::Read, get, |body| parse_page(body, request.offset))
            },
        )
        .await
    }

    /// Creates an object: POST `{base}/resources/{resource}/?format=json`
    /// with `body` as JSON; returns the created object, which Revel answers
    /// with (201). When Revel answers 201 or 204 with an empty body, nothing
    /// more is fetched and the result is `Value::Null`.
    ///
    /// Not idempotent, so retried (each attempt spending one call) only on
    /// 429, 503 and connections that could not be made. A timeout, a 408, a
    /// 5xx other than 503 or a connection lost after sending is
    /// [`RevelApiError::Ambiguous`]: look the object up before creating it
    /// again. 400/422 are [`RevelApiError::Rejected`].
    async fn create(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError> {
        check_resource(resource)?;
        let url = self.url(instance, resource)?;
        self.write(instance, credentials, Call::Create, resource, url, body)
            .await
    }

    /// Updates fields of one object: PATCH
    /// `{base}/resources/{resource}/{id}/?format=json` with `body` as JSON;
    /// returns the updated object (200). When Revel answers 202 or 204
    /// without a body, the result is `Value::Null`.
    ///
    /// A PATCH of absolute values is idempotent, so it is retried exactly
    /// like [`RevelResources::page`]. `id` is ASCII letters, digits and `-`, 1 to
    /// 64 characters.
    async fn update(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        resource: &str,
        id: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError> {
        check_resource(resource)?;
        check_id(id)?;
        let url = self.url(instance, resource)?;
        // Both parts were checked, so joining cannot escape the resource.
        let url = url
            .join(&format!("{id}/"))
            .map_err(|_| RevelApiError::InvalidRequest("object id does not make a valid URL"))?;
        self.write(instance, credentials, Call::Update, resource, url, body)
            .await
    }
}

impl RevelApi {
    pub fn new(config: RevelApiConfig, budget: Arc<dyn CallBudget>) -> Self {
        let client = crate::http_client()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // A redirect would carry the credentials header to wherever it
            // points; Revel has no reason to redirect an API call.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            // Only fails when the TLS backend cannot start, which no retry
            // or caller could fix: same as `reqwest::Client::new`.
            .expect("the HTTP client for Revel could not be built");
        Self {
            client,
            config,
            budget,
        }
    }

    /// The same client (one connection pool, one TLS set-up) counting its
    /// calls against `budget` instead: a backfill's share of the budget.
    pub fn spending_from(&self, budget: Arc<dyn CallBudget>) -> Self {
        Self {
            client: self.client.clone(),
            config: self.config.clone(),
            budget,
        }
    }

    async fn write(
        &self,
        instance: &InstanceName,
        credentials: &ApiCredentials,
        call: Call,
        resource: &str,
        url: Url,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, RevelApiError> {
        let auth = auth_header(credentials)?;
        // Serialized once, before the budget is touched.
        let body = serde_json::to_vec(body)
            .map_err(|_| RevelApiError::InvalidRequest("the body cannot be serialized"))?;
        with_retries(
            self.budget.as_ref(),
            &self.config,
            instance,
            resource,
            call.method().as_str(),
            || {
                let request = self
                    .client
                    .request(call.method(), url.clone())
                    .header(AUTH_HEADER, auth.clone())
                    .header(CONTENT_TYPE, "application/json")
                    .query(&[("format", "json")])
                    .body(body.clone());
                self.exchange(call, request, parse_object)
            },
        )
        .await
    }

    /// `{base_url with instance}/resources/{resource}/`.
    fn url(&self, instance: &InstanceName, resource: &str) -> Result<Url, RevelApiError> {
        let base = self
            .config
            .base_url
            .replace("{instance}", instance.as_str());
        let url = format!("{}/resources/{resource}/", base.trim_end_matches('/'));
        Url::parse(&url).map_err(|_| RevelApiError::InvalidRequest("base URL is not a valid URL"))
    }

    /// Sends one attempt of `call` and reads what its answer means; `parse`
    /// reads a success's body.
    async fn exchange<T>(
        &self,
        call: Call,
        request: reqwest::RequestBuilder,
        parse: impl FnOnce(&[u8]) -> Result<T, RevelApiError>,
    ) -> Attempt<T> {
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) if error.is_builder() => {
                return Attempt::Done(Err(RevelApiError::InvalidRequest(
                    "the request could not be built",
                )))
            }
            Err(error) => {
                // The error's URL holds the filters only, but its kind is
                // all that is needed to tell what happened.
                tracing::debug!(
                    method = %call.method(),
                    timeout = error.is_timeout(),
                    connect = error.is_connect(),
                    "Revel API call got no answer"
                );
                // A connection that could not be made carried nothing.
                return if call.is_idempotent() || error.is_connect() {
                    Attempt::Retry {
                        status: None,
                        retry_after: None,
                    }
                } else {
                    Attempt::Done(Err(RevelApiError::Ambiguous { status: None }))
                };
            }
        };

        let status = response.status();
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Done(parse(&body)),
                // Revel acted, but the answer was cut off.
                Err(_) if call.is_idempotent() => Attempt::Retry {
                    status: Some(status.as_u16()),
                    retry_after: None,
                },
                Err(_) => Attempt::Done(Err(RevelApiError::Ambiguous {
                    status: Some(status.as_u16()),
                })),
            };
        }
        if call.retries(status) {
            return Attempt::Retry {
                status: Some(status.as_u16()),
                retry_after: retry_after_of(&response),
            };
        }
        if is_transient(status) {
            // Only reached by `create`: a 408 or 5xx other than 503.
            return Attempt::Done(Err(RevelApiError::Ambiguous {
                status: Some(status.as_u16()),
            }));
        }
        Attempt::Done(Err(refusal(status)))
    }
}

/// The error of an answer that is neither success nor transient.
fn refusal(status: StatusCode) -> RevelApiError {
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            RevelApiError::Unauthorized { status: code }
        }
        StatusCode::NOT_FOUND => RevelApiError::NotFound,
        _ => RevelApiError::Rejected { status: code },
    }
}

/// A resource name goes into the URL path, so it is letters and digits only.
fn check_resource(resource: &str) -> Result<(), RevelApiError> {
    if resource.is_empty() || resource.len() > MAX_RESOURCE_LEN {
        return Err(RevelApiError::InvalidRequest(
            "resource name must be 1 to 64 characters",
        ));
    }
    if !resource.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(RevelApiError::InvalidRequest(
            "resource name must be ASCII letters and digits",
        ));
    }
    Ok(())
}

/// An object id goes into the URL path, so it is letters, digits and `-` only.
fn check_id(id: &str) -> Result<(), RevelApiError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(RevelApiError::InvalidRequest(
            "object id must be 1 to 64 characters",
        ));
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(RevelApiError::InvalidRequest(
            "object id must be ASCII letters, digits and '-'",
        ));
    }
    Ok(())
}

/// The body of a 2xx answer to a write: JSON, or `Null` when empty.
fn parse_object(body: &[u8]) -> Result<serde_json::Value, RevelApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(body)
        .map_err(|_| RevelApiError::InvalidResponse("body of a write is not JSON"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use wiremock::matchers::{body_json, header, method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::revel::api::testing::*;

    #[tokio::test]
    async fn the_auth_header_and_query_parameters_are_sent_in_order() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/demo/resources/Order/"))
            .and(header(AUTH_HEADER, format!("{KEY}:{SECRET}").as_str()))
            .and(query_param("format", "json"))
            .and(query_param("limit", "100"))
            .and(query_param("offset", "40"))
            .and(query_param("updated_date__gte", "2024-01-01T00:00:00"))
            .and(query_param("order_by", "id"))
            .and(ExactQuery(
                "format=json&limit=100&offset=40&updated_date__gte=2024-01-01T00%3A00%3A00&order_by=id",
            ))
            .respond_with(ok(&[1, 2]))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);
        let request = PageRequest {
            resource: "Order".to_owned(),
            filters: vec![
                (
                    "updated_date__gte".to_owned(),
                    "2024-01-01T00:00:00".to_owned(),
                ),
                ("order_by".to_owned(), "id".to_owned()),
            ],
            offset: 40,
        };

        let page = api(&server, budget.clone())
            .page(&instance(), &credentials(), &request)
            .await
            .unwrap();

        assert_eq!(page.objects, vec![json!({"id": 1}), json!({"id": 2})]);
        assert_eq!(page.next_offset, None);
        assert_eq!(page.total_count, Some(2));
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn a_401_is_unauthorized_and_not_retried() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(401))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let error = api(&server, budget.clone())
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Unauthorized { status: 401 }),
            "{error:?}"
        );
        assert!(!error.is_retryable_later());
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn a_404_is_not_found_and_other_4xx_are_rejected_without_retry() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Nothing/"))
            .respond_with(ResponseTemplate::new(404))
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(400))
            .expect(1)
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));
        let nothing = PageRequest {
            resource: "Nothing".to_owned(),
            ..products(0)
        };

        let not_found = api.page(&instance(), &credentials(), &nothing).await;
        let rejected = api.page(&instance(), &credentials(), &products(0)).await;

        assert!(
            matches!(not_found, Err(RevelApiError::NotFound)),
            "{not_found:?}"
        );
        assert!(
            matches!(rejected, Err(RevelApiError::Rejected { status: 400 })),
            "{rejected:?}"
        );
    }

    #[tokio::test]
    async fn a_resource_that_is_not_alphanumeric_is_refused_without_any_call() {
        let server = MockServer::start().await;
        let budget = FixedBudget::new(10);
        let api = api(&server, budget.clone());

        for bad in ["", "Product/../Order", "Product?x=1", "Prod uct", "Próduct"] {
            let request = PageRequest {
                resource: bad.to_owned(),
                ..products(0)
            };
            let result = api.page(&instance(), &credentials(), &request).await;
            assert!(
                matches!(result, Err(RevelApiError::InvalidRequest(_))),
                "{bad:?}: {result:?}"
            );
        }
        assert_eq!(budget.used(), 0);
        assert_eq!(requests(&server).await, 0);
    }

    #[tokio::test]
    async fn credentials_never_appear_in_the_debug_of_credentials_the_api_or_any_error() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(403).set_body_string(format!("bad {KEY}:{SECRET}")))
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));

        let error = api
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert_no_secret(&format!("{:?}", credentials()));
        assert_no_secret(&format!("{api:?}"));
        assert_no_secret(&format!("{error:?} {error}"));
        let others = [
            RevelApiError::BudgetExhausted { limit: 1 },
            RevelApiError::Unavailable {
                attempts: 4,
                last_status: None,
            },
            RevelApiError::InvalidRequest("x"),
        ];
        for other in others {
            assert_no_secret(&format!("{other:?} {other}"));
        }
    }

    #[tokio::test]
    async fn create_sends_a_post_with_the_json_body_content_type_auth_header_and_format_json_and_returns_the_object(
    ) {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/demo/resources/Customer/"))
            .and(header(AUTH_HEADER, format!("{KEY}:{SECRET}").as_str()))
            .and(header("content-type", "application/json"))
            .and(ExactQuery("format=json"))
            .and(body_json(customer()))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(json!({"id": 42, "first_name": "Ada"})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let created = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap();

        assert_eq!(created, json!({"id": 42, "first_name": "Ada"}));
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn update_sends_a_patch_to_the_object_url_and_returns_the_updated_object() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/42/"))
            .and(header(AUTH_HEADER, format!("{KEY}:{SECRET}").as_str()))
            .and(header("content-type", "application/json"))
            .and(ExactQuery("format=json"))
            .and(body_json(json!({"email": "ada@example.org"})))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"id": 42, "email": "ada@example.org"})),
            )
            .expect(1)
            .mount(&server)
            .await;

        let updated = api(&server, FixedBudget::new(10))
            .update(
                &instance(),
                &credentials(),
                "Customer",
                "42",
                &json!({"email": "ada@example.org"}),
            )
            .await
            .unwrap();

        assert_eq!(updated, json!({"id": 42, "email": "ada@example.org"}));
    }

    #[tokio::test]
    async fn writes_answered_without_a_body_return_null() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/7/"))
            .respond_with(ResponseTemplate::new(202))
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/8/"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));

        let created = api
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap();
        let accepted = api
            .update(&instance(), &credentials(), "Customer", "7", &customer())
            .await
            .unwrap();
        let no_content = api
            .update(&instance(), &credentials(), "Customer", "8", &customer())
            .await
            .unwrap();

        assert_eq!(created, serde_json::Value::Null);
        assert_eq!(accepted, serde_json::Value::Null);
        assert_eq!(no_content, serde_json::Value::Null);
    }

    #[tokio::test]
    async fn a_write_answered_with_a_body_that_is_not_json_is_an_invalid_response() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_string("<html>created</html>"))
            .expect(1)
            .mount(&server)
            .await;

        let error = api(&server, FixedBudget::new(10))
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::InvalidResponse(_)),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn update_retries_a_503_and_then_succeeds_with_two_calls_spent() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/42/"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("PATCH"))
            .and(path("/demo/resources/Customer/42/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 42})))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let updated = api(&server, budget.clone())
            .update(&instance(), &credentials(), "Customer", "42", &customer())
            .await
            .unwrap();

        assert_eq!(updated, json!({"id": 42}));
        assert_eq!(budget.used(), 2);
    }

    #[tokio::test]
    async fn update_retries_a_timeout_like_a_get() {
        let server = MockServer::start().await;
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(500)))
            .mount(&server)
            .await;
        let config = RevelApiConfig {
            timeout: Duration::from_millis(50),
            max_attempts: 2,
            ..config(&server)
        };
        let budget = FixedBudget::new(10);

        let error = RevelApi::new(config, budget.clone())
            .update(&instance(), &credentials(), "Customer", "42", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                RevelApiError::Unavailable {
                    attempts: 2,
                    last_status: None
                }
            ),
            "{error:?}"
        );
        assert_eq!(budget.used(), 2);
    }

    #[tokio::test]
    async fn create_retries_a_429_and_then_succeeds() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "0"))
            .up_to_n_times(1)
            .expect(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(body_json(customer()))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 9})))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let created = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap();

        assert_eq!(created, json!({"id": 9}));
        assert_eq!(budget.used(), 2);
    }

    #[tokio::test]
    async fn create_does_not_retry_a_500_and_is_ambiguous_after_one_call() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(500))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let error = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Ambiguous { status: Some(500) }),
            "{error:?}"
        );
        assert!(error.is_retryable_later());
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn create_does_not_retry_a_502_504_or_408_and_each_is_ambiguous() {
        for status in [502, 504, 408] {
            let server = MockServer::start().await;
            Mock::given(method("POST"))
                .respond_with(ResponseTemplate::new(status))
                .expect(1)
                .mount(&server)
                .await;

            let error = api(&server, FixedBudget::new(10))
                .create(&instance(), &credentials(), "Customer", &customer())
                .await
                .unwrap_err();

            assert!(
                matches!(error, RevelApiError::Ambiguous { status: Some(s) } if s == status),
                "{status}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn create_does_not_retry_a_timeout_and_is_ambiguous_without_a_status() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_millis(500)))
            .mount(&server)
            .await;
        let config = RevelApiConfig {
            timeout: Duration::from_millis(50),
            ..config(&server)
        };
        let budget = FixedBudget::new(10);

        let error = RevelApi::new(config, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Ambiguous { status: None }),
            "{error:?}"
        );
        assert_eq!(budget.used(), 1);
        assert_eq!(requests(&server).await, 1);
    }

    #[tokio::test]
    async fn create_retries_a_connection_that_could_not_be_made() {
        // A port that was just free: nothing listens on it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RevelApiConfig {
            base_url: format!("http://127.0.0.1:{port}/{{instance}}"),
            timeout: Duration::from_secs(2),
            max_attempts: 3,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            page_size: 100,
        };
        let budget = FixedBudget::new(10);

        let error = RevelApi::new(config, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                RevelApiError::Unavailable {
                    attempts: 3,
                    last_status: None
                }
            ),
            "{error:?}"
        );
        assert_eq!(budget.used(), 3);
    }

    #[tokio::test]
    async fn create_on_a_422_is_rejected_without_retry() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(422).set_body_string("{\"error\": \"email\"}"))
            .expect(1)
            .mount(&server)
            .await;
        let budget = FixedBudget::new(10);

        let error = api(&server, budget.clone())
            .create(&instance(), &credentials(), "Customer", &customer())
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::Rejected { status: 422 }),
            "{error:?}"
        );
        assert!(!error.is_retryable_later());
        assert_eq!(budget.used(), 1);
    }

    #[tokio::test]
    async fn an_id_or_resource_that_is_not_allowed_is_refused_without_any_call() {
        let server = MockServer::start().await;
        let budget = FixedBudget::new(10);
        let api = api(&server, budget.clone());
        let too_long = "1".repeat(65);

        for bad in [
            "",
            "42/../43",
            "42?x=1",
            "4 2",
            "42_",
            "٤٢",
            too_long.as_str(),
        ] {
            let result = api
                .update(&instance(), &credentials(), "Customer", bad, &customer())
                .await;
            assert!(
                matches!(result, Err(RevelApiError::InvalidRequest(_))),
                "{bad:?}: {result:?}"
            );
        }
        let bad_resource = api
            .create(
                &instance(),
                &credentials(),
                "Customer/../Order",
                &customer(),
            )
            .await;
        assert!(
            matches!(bad_resource, Err(RevelApiError::InvalidRequest(_))),
            "{bad_resource:?}"
        );
        assert_eq!(budget.used(), 0);
        assert_eq!(requests(&server).await, 0);
    }

    #[test]
    fn ids_of_letters_digits_and_dashes_up_to_64_characters_are_accepted() {
        let longest = "a".repeat(64);
        for good in [
            "42",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            longest.as_str(),
        ] {
            assert!(check_id(good).is_ok(), "{good:?}");
        }
    }

    #[tokio::test]
    async fn credentials_never_appear_in_the_debug_of_write_errors() {
        let server = MockServer::start().await;
        let echo = format!("bad {KEY}:{SECRET}");
        for status in [403, 422, 500] {
            Mock::given(method("POST"))
                .and(path(format!("/demo/resources/C{status}/")))
                .respond_with(ResponseTemplate::new(status).set_body_string(echo.clone()))
                .mount(&server)
                .await;
        }
        Mock::given(method("PATCH"))
            .respond_with(ResponseTemplate::new(201).set_body_string(echo.clone()))
            .mount(&server)
            .await;
        let api = api(&server, FixedBudget::new(10));

        let mut errors = Vec::new();
        for status in [403, 422, 500] {
            let resource = format!("C{status}");
            errors.push(
                api.create(&instance(), &credentials(), &resource, &customer())
                    .await
                    .unwrap_err(),
            );
        }
        errors.push(
            api.update(&instance(), &credentials(), "Customer", "42", &customer())
                .await
                .unwrap_err(),
        );
        errors.push(RevelApiError::Ambiguous { status: None });

        for error in errors {
            assert_no_secret(&format!("{error:?} {error}"));
        }
    }
}
