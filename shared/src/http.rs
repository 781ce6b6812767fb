//! API Gateway (HTTP API, payload 2.0) in, answer out. This is the one place
//! where outcomes and errors become status codes, bodies and answer metrics.

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tracing::Instrument;

use crate::error::ReceiveError;
use crate::receive::{request_span, Outcome, Receiver};
use crate::request::WebhookRequest;
use crate::telemetry::{self, Dimension, Metric, RejectReason};

/// Seconds a sender is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Handles one request end to end. Never fails: every error is an answer.
pub async fn handle(receiver: &Receiver, request: Request) -> Response<Body> {
    let request = webhook_request(request);
    let span = request_span(receiver, &request.request_id);
    async { answer(&receiver.receive(&request).await) }
        .instrument(span)
        .await
}

/// The raw body and headers of a request. `lambda_http` has already decoded
/// a body API Gateway marked `isBase64Encoded`, so these are the bytes the
/// sender signed.
pub fn webhook_request(request: Request) -> WebhookRequest {
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
    WebhookRequest {
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
/// a secret, or an internal error's detail in the answer), and counts it.
pub fn answer(result: &Result<Outcome, ReceiveError>) -> Response<Body> {
    if let Some((metric, dimensions)) = answer_metric(result) {
        telemetry::count(metric, &dimensions);
    }
    match result {
        Ok(Outcome::Accepted { event_key } | Outcome::Duplicate { event_key }) => json_response(
            200,
            json!({"status": result.as_ref().map_or("", Outcome::as_str), "event_id": event_key.as_str()}),
        ),
        // 2xx: the sender must stop; the body is kept and counted.
        Ok(Outcome::Conflict {
            event_key,
            conflict_of,
        }) => json_response(
            200,
            json!({"status": "conflict", "event_id": event_key.as_str(), "conflict_of": conflict_of.as_str()}),
        ),
        Ok(Outcome::Pong) => json_response(200, json!({"status": "ok", "ping": "pong"})),
        Ok(Outcome::Quarantined { event_key, reason }) => json_response(
            202,
            json!({"status": "quarantined", "event_id": event_key.as_str(), "reason": reason}),
        ),
        Err(ReceiveError::Unauthorized(failure)) => {
            tracing::warn!(reason = failure.reason(), "request rejected");
            json_response(401, json!({"error": "unauthorized"}))
        }
        Err(ReceiveError::PayloadTooLarge { size, limit }) => {
            tracing::warn!(size, limit, "request rejected: body too large");
            json_response(413, json!({"error": "payload_too_large"}))
        }
        Err(ReceiveError::Unavailable(error)) => {
            telemetry::log_dependency(error, "event not stored: dependency unavailable");
            let mut response = json_response(503, json!({"error": "unavailable"}));
            response
                .headers_mut()
                .insert("retry-after", RETRY_AFTER_SECS.into());
            response
        }
    }
}

/// Why a request was refused, for its metric.
fn reject_reason(error: &ReceiveError) -> RejectReason {
    match error {
        ReceiveError::Unauthorized(_) => RejectReason::Unauthorized,
        ReceiveError::PayloadTooLarge { .. } => RejectReason::PayloadTooLarge,
        ReceiveError::Unavailable(_) => RejectReason::Unavailable,
    }
}

/// Accepted, duplicate, conflicting and quarantined events by source, event
/// type and instance (read from the event key, whose instance passed
/// authentication); rejections by reason only, since an unauthenticated
/// request's instance is whatever the caller claims and must not mint new
/// metrics.
fn answer_metric(
    result: &Result<Outcome, ReceiveError>,
) -> Option<(Metric, Vec<(Dimension, &str)>)> {
    match result {
        Ok(Outcome::Accepted { event_key }) => {
            Some((Metric::Accepted, telemetry::key_dimensions(event_key)))
        }
        Ok(Outcome::Duplicate { event_key }) => {
            Some((Metric::Duplicate, telemetry::key_dimensions(event_key)))
        }
        Ok(Outcome::Conflict { event_key, .. }) => {
            Some((Metric::Conflicts, telemetry::key_dimensions(event_key)))
        }
        Ok(Outcome::Quarantined { event_key, reason }) => {
            let mut dimensions = telemetry::key_dimensions(event_key);
            dimensions.push((Dimension::Reason, reason.as_str()));
            Some((Metric::Quarantined, dimensions))
        }
        Ok(Outcome::Pong) => None,
        Err(error) => Some((
            Metric::Rejected,
            vec![(Dimension::Reason, reject_reason(error).as_str())],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{AuthFailure, DependencyError};
    use crate::ids::EventKey;

    fn key(raw: &str) -> EventKey {
        EventKey::parse(raw).unwrap()
    }

    fn status_and_body(response: Response<Body>) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        let Body::Text(text) = response.into_body() else {
            panic!("answers are text")
        };
        (status, serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn answers_are_counted_by_outcome_with_the_event_key_as_dimensions() {
        let accepted = Ok(Outcome::Accepted {
            event_key: key("revel:demo:order.finalized:id:1"),
        });
        assert_eq!(
            answer_metric(&accepted),
            Some((
                Metric::Accepted,
                vec![
                    (Dimension::Source, "revel"),
                    (Dimension::EventType, "order.finalized"),
                    (Dimension::Instance, "demo"),
                ]
            ))
        );
        let duplicate = Ok(Outcome::Duplicate {
            event_key: key("booking:tours:bookings:biz:9"),
        });
        assert_eq!(answer_metric(&duplicate).unwrap().0, Metric::Duplicate);
        let conflict = Ok(Outcome::Conflict {
            event_key: key("revel:demo:order.finalized:biz:u@1~conflict:ab"),
            conflict_of: key("revel:demo:order.finalized:biz:u@1"),
        });
        assert_eq!(answer_metric(&conflict).unwrap().0, Metric::Conflicts);
        let quarantined = Ok(Outcome::Quarantined {
            event_key: key("revel:demo:customer.created:sha256:ab"),
            reason: "event_type_mismatch".into(),
        });
        let (metric, dimensions) = answer_metric(&quarantined).unwrap();
        assert_eq!(metric, Metric::Quarantined);
        assert!(dimensions.contains(&(Dimension::Reason, "event_type_mismatch")));
        assert_eq!(answer_metric(&Ok(Outcome::Pong)), None);
    }

    #[test]
    fn a_rejection_carries_its_reason_and_nothing_the_caller_claimed() {
        let cases = [
            (
                ReceiveError::Unauthorized(AuthFailure::UnknownInstance),
                "unauthorized",
            ),
            (
                ReceiveError::PayloadTooLarge { size: 2, limit: 1 },
                "payload_too_large",
            ),
            (
                ReceiveError::Unavailable(DependencyError::new("dynamodb", "PutItem", "down")),
                "unavailable",
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(
                answer_metric(&Err(error)),
                Some((Metric::Rejected, vec![(Dimension::Reason, reason)]))
            );
        }
    }

    #[test]
    fn each_outcome_has_its_status_code_and_a_short_json_body() {
        let cases = [
            (
                Ok(Outcome::Accepted {
                    event_key: key("revel:demo:x:id:1"),
                }),
                200,
                "accepted",
            ),
            (
                Ok(Outcome::Duplicate {
                    event_key: key("revel:demo:x:id:1"),
                }),
                200,
                "duplicate",
            ),
            (
                Ok(Outcome::Conflict {
                    event_key: key("revel:demo:x:id:1~conflict:ab"),
                    conflict_of: key("revel:demo:x:id:1"),
                }),
                200,
                "conflict",
            ),
            (
                Ok(Outcome::Quarantined {
                    event_key: key("revel:demo:x:sha256:ab"),
                    reason: "invalid_json".into(),
                }),
                202,
                "quarantined",
            ),
        ];
        for (result, status, outcome) in cases {
            let (got_status, body) = status_and_body(answer(&result));
            assert_eq!(
                (got_status, body["status"].as_str()),
                (status, Some(outcome))
            );
        }
        let (status, body) = status_and_body(answer(&Err(ReceiveError::Unavailable(
            DependencyError::new("dynamodb", "PutItem", "secret detail"),
        ))));
        assert_eq!(status, 503);
        assert_eq!(body, json!({"error": "unavailable"}), "no internal detail");
    }
}
