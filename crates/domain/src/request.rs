//! The inbound webhook request, as a receiver sees it once API Gateway and
//! the entry point (`shared::http::webhook_request`) have decoded it.

use http::HeaderMap;

/// One HTTP request to a webhook route.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub headers: HeaderMap,
    /// The raw body bytes (already base64-decoded when API Gateway encoded it).
    pub body: Vec<u8>,
    /// API Gateway's (or Lambda's) id of the request.
    pub request_id: String,
    /// The route's path parameters (`/winesitting/{account}/{token}`).
    pub path_params: Vec<(String, String)>,
}

impl WebhookRequest {
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.path_params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}
