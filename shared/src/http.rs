//! API Gateway (HTTP API, payload 2.0) in, answer out. This is the one place
//! where outcomes and errors become status codes, bodies and answer metrics.

use base64::Engine as _;
use lambda_http::aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use lambda_http::{Body, Response};
use serde_json::json;
use tracing::Instrument;

use domain::error::ReceiveError;
use domain::request::WebhookRequest;
use pipeline::receive::{request_span, Outcome, Receiver};
use telemetry::{self, Dimension, Metric, RejectReason};

/// Seconds a sender is asked to wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// An HTTP API (payload 2.0) event, decoded as its one type. `lambda_http::run`
/// would decode it through an untagged enum of every event shape, which
/// buffers the whole event first: 8 µs of a 9 KB order's 50 µs budget
/// (docs/performance.md), so the receivers decode this type directly.
pub type ApiGatewayEvent = ApiGatewayV2httpRequest;

/// Handles one request end to end. Never fails: every error is an answer.
/// `lambda_request_id` is the invocation's (what Lambda's own log lines
/// carry); without it, API Gateway's.
pub async fn handle(
    receiver: &Receiver,
    event: ApiGatewayEvent,
    lambda_request_id: Option<&str>,
) -> Response<Body> {
    let request = webhook_request(event, lambda_request_id);
    let span = request_span(receiver, &request.request_id);
    async { answer(&receiver.receive(&request).await) }
        .instrument(span)
        .await
}

/// The raw body and headers of a request: a body API Gateway marked
/// `isBase64Encoded` is decoded, so these are the bytes the sender signed.
/// One that does not decode (API Gateway never sends one) is kept as sent,
/// and its signature will not verify.
pub fn webhook_request(event: ApiGatewayEvent, lambda_request_id: Option<&str>) -> WebhookRequest {
    let request_id = lambda_request_id
        .map(str::to_owned)
        .or(event.request_context.request_id)
        .unwrap_or_default();
    let body = match event.body {
        None => Vec::new(),
        Some(text) if event.is_base64_encoded => base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap_or_else(|_| text.into_bytes()),
        Some(text) => text.into_bytes(),
    };
    WebhookRequest {
        headers: event.headers,
        body,
        request_id,
        path_params: event.path_parameters.into_iter().collect(),
    }
}

/// An answer as API Gateway (payload 2.0) reads it from Lambda.
pub fn api_gateway_response(response: Response<Body>) -> ApiGatewayV2httpResponse {
    let (parts, body) = response.into_parts();
    let mut answer = ApiGatewayV2httpResponse::default();
    answer.status_code = i64::from(parts.status.as_u16());
    answer.is_base64_encoded = matches!(body, Body::Binary(_));
    answer.body = match body {
        Body::Empty => None,
        body => Some(body),
    };
    answer.headers = parts.headers;
    answer
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
            error.log("event not stored: dependency unavailable");
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
        Ok(Outcome::Accepted { event_key }) => Some((
            Metric::Accepted,
            telemetry::key_dimensions(event_key.as_str()),
        )),
        Ok(Outcome::Duplicate { event_key }) => Some((
            Metric::Duplicate,
            telemetry::key_dimensions(event_key.as_str()),
        )),
        Ok(Outcome::Conflict { event_key, .. }) => Some((
            Metric::Conflicts,
            telemetry::key_dimensions(event_key.as_str()),
        )),
        Ok(Outcome::Quarantined { event_key, reason }) => {
            let mut dimensions = telemetry::key_dimensions(event_key.as_str());
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
    use std::sync::Arc;

    use domain::error::{AuthFailure, DependencyError};
    use domain::ids::EventKey;
    use pipeline::fakes::MemoryAws;
    use telemetry::fakes::capture_logs;
    use tracing::Instrument;
    use vendors::fakes::{demo_revel, signed_revel_request};
    use vendors::revel::RevelEventType;

    use super::*;

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

    fn event(body: &str, base64: bool) -> ApiGatewayEvent {
        serde_json::from_value(json!({
            "version": "2.0",
            "routeKey": "POST /revel/{instance}/orders/finalized",
            "rawPath": "/revel/demo/orders/finalized",
            "rawQueryString": "",
            "headers": {"x-revel-signature": "ab12", "content-type": "application/json"},
            "pathParameters": {"instance": "demo"},
            "requestContext": {"requestId": "apigw-1", "http": {"method": "POST", "path": "/revel/demo/orders/finalized"}},
            "body": body,
            "isBase64Encoded": base64,
        }))
        .unwrap()
    }

    #[test]
    fn a_request_carries_the_signed_bytes_its_headers_path_parameters_and_request_id() {
        let text = webhook_request(event("{\"a\": 1}", false), Some("lambda-7"));
        assert_eq!(text.body, b"{\"a\": 1}");
        assert_eq!(text.request_id, "lambda-7");
        assert_eq!(text.headers["x-revel-signature"], "ab12");
        assert_eq!(
            text.path_params,
            vec![("instance".to_owned(), "demo".to_owned())]
        );
        // base64 of "{\"a\": 1}"
        let encoded = webhook_request(event("eyJhIjogMX0=", true), None);
        assert_eq!(encoded.body, b"{\"a\": 1}");
        assert_eq!(encoded.request_id, "apigw-1");
        // Not base64: kept as sent, so its signature cannot verify.
        let broken = webhook_request(event("not base64!", true), None);
        assert_eq!(broken.body, b"not base64!");
    }

    #[test]
    fn an_answer_reaches_api_gateway_with_its_status_headers_and_text_body() {
        let response = api_gateway_response(answer(&Err(ReceiveError::Unavailable(
            DependencyError::new("dynamodb", "PutItem", "down"),
        ))));
        assert_eq!(response.status_code, 503);
        assert!(!response.is_base64_encoded);
        assert_eq!(
            response.headers["retry-after"],
            RETRY_AFTER_SECS.to_string()
        );
        assert_eq!(response.headers["content-type"], "application/json");
        let Some(Body::Text(body)) = response.body else {
            panic!("a text body")
        };
        assert_eq!(body, r#"{"error":"unavailable"}"#);
    }

    fn customer(updated: &str, name: &str) -> String {
        format!(
            r#"{{"uuid": "c-1", "updated_date": "{updated}", "first_name": "{name}", "cc_last_4_digits": "4242"}}"#
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn every_log_line_of_a_request_carries_its_request_event_instance_and_type_and_no_secret()
    {
        let logs = capture_logs();
        let captured = logs.captured.clone();
        let memory = MemoryAws::default();
        let receiver = memory.receiver(
            Arc::new(demo_revel()),
            Arc::new(RevelEventType::CustomerCreated),
        );
        let request = signed_revel_request(&customer("2021-12-28T21:05:13.977077", "Annunziata"));
        let mut forged = request.clone();
        forged.body = customer("2021-12-28T21:05:13.977077", "Evangelina").into_bytes();

        let mut answers = String::new();
        for (request_id, request) in [("req-ok", &request), ("req-forged", &forged)] {
            let mut request = request.clone();
            request.request_id = request_id.into();
            let span = request_span(&receiver, request_id);
            let answer = async { answer(&receiver.receive(&request).await) }
                .instrument(span)
                .await;
            answers.push_str(&format!("{:?} {:?}\n", answer.headers(), answer.body()));
        }

        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("JSON log line"))
            .collect();
        let accepted: Vec<_> = lines
            .iter()
            .filter(|l| l["span"]["request_id"] == "req-ok")
            .collect();
        let rejected: Vec<_> = lines
            .iter()
            .filter(|l| l["span"]["request_id"] == "req-forged")
            .collect();
        assert!(!accepted.is_empty() && !rejected.is_empty(), "{text}");
        assert_eq!(
            accepted.len() + rejected.len(),
            lines.len(),
            "a line outside any request: {text}"
        );
        for line in accepted.iter().chain(&rejected) {
            assert_eq!(line["span"]["event_type"], "customer.created", "{line}");
            assert_eq!(line["span"]["source"], "revel", "{line}");
        }
        for line in &accepted {
            assert!(
                line["span"]["event_key"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("revel:demo:")),
                "{line}"
            );
            assert_eq!(line["span"]["instance"], "demo", "{line}");
        }
        let signature = request.headers["x-revel-signature"].to_str().unwrap();
        for secret in ["demo-webhook-secret", signature] {
            assert!(!text.contains(secret), "a secret reached the log: {text}");
            assert!(
                !answers.contains(secret),
                "a secret reached an answer: {answers}"
            );
        }
        assert!(
            text.contains("Accepted") && text.contains("Rejected"),
            "the metric lines were not captured: {text}"
        );
        assert!(
            !text.contains("Annunziata") && !text.contains("Evangelina"),
            "a body reached the log"
        );
    }
}
