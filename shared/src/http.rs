//! API Gateway (HTTP API, payload 2.0) in, answer out. This is the one place
//! where outcomes and errors become status codes and bodies.

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;

use crate::error::IngestError;
use crate::ingest::{delivery_span, log_dependency, Completion, Delivery, Ingestor, Outcome};
use tracing::Instrument;

/// Seconds a sender is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Handles one request end to end. Never fails: every error is an answer.
pub async fn handle(ingestor: &Ingestor, request: Request) -> Response<Body> {
    let delivery = delivery(request);
    let span = delivery_span(ingestor, &delivery.request_id);
    async { answer(&ingestor.ingest(&delivery).await) }
        .instrument(span)
        .await
}

/// Handles one request up to its answer; the bookkeeping left, if any, is
/// for [`Ingestor::complete`] once the answer is on its way.
pub async fn handle_deferred(
    ingestor: &Ingestor,
    request: Request,
) -> (Response<Body>, Option<Completion>) {
    let delivery = delivery(request);
    let span = delivery_span(ingestor, &delivery.request_id);
    async {
        let (result, completion) = ingestor.ingest_deferred(&delivery).await;
        (answer(&result), completion)
    }
    .instrument(span)
    .await
}

/// The raw body and headers of a request. `lambda_http` has already decoded
/// a body API Gateway marked `isBase64Encoded`, so these are the bytes the
/// sender signed.
pub fn delivery(request: Request) -> Delivery {
    let request_id = request
        .lambda_context_ref()
        .map(|c| c.request_id.clone())
        .or_else(|| match request.request_context_ref() {
            Some(lambda_http::request::RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
            _ => None,
        })
        .unwrap_or_default();
    let path_params = request
        .path_parameters_ref()
        .map(|params| {
            params
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let (parts, body) = request.into_parts();
    let body = match body {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.into_bytes(),
        Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    Delivery {
        headers: parts.headers,
        body,
        request_id,
        path_params,
    }
}

fn json_response(status: u16, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body.to_string()))
        .expect("static status and header are valid")
}

/// Maps a result to its answer, logging refusals by reason (never the body,
/// a secret, or an internal error's detail in the answer), and counts it
/// (accepted, duplicate, quarantined, rejected by reason).
pub fn answer(result: &Result<Outcome, IngestError>) -> Response<Body> {
    crate::telemetry::answered(result);
    match result {
        Ok(Outcome::Accepted { event_key }) => json_response(
            200,
            json!({"status": "accepted", "event_id": event_key.as_str()}),
        ),
        Ok(Outcome::Duplicate { event_key }) => json_response(
            200,
            json!({"status": "duplicate", "event_id": event_key.as_str()}),
        ),
        Ok(Outcome::Pong) => json_response(200, json!({"status": "ok", "ping": "pong"})),
        Ok(Outcome::Quarantined { event_key, reason }) => json_response(
            202,
            json!({"status": "quarantined", "event_id": event_key.as_str(), "reason": reason}),
        ),
        Err(IngestError::Unauthorized(failure)) => {
            tracing::warn!(reason = failure.reason(), "delivery rejected");
            json_response(401, json!({"error": "unauthorized"}))
        }
        Err(IngestError::PayloadTooLarge { size, limit }) => {
            tracing::warn!(size, limit, "delivery rejected: body too large");
            json_response(413, json!({"error": "payload_too_large"}))
        }
        Err(IngestError::Unavailable(error)) => {
            log_dependency(error, "delivery not stored: dependency unavailable");
            let mut response = json_response(503, json!({"error": "unavailable"}));
            response
                .headers_mut()
                .insert("retry-after", RETRY_AFTER_SECS.into());
            response
        }
        Err(IngestError::InProgress) => {
            let mut response = json_response(503, json!({"error": "in_progress"}));
            response
                .headers_mut()
                .insert("retry-after", RETRY_AFTER_SECS.into());
            response
        }
    }
}
