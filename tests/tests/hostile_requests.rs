//! A corpus of hostile requests to a Revel receiver and to the receivers of
//! VinesOS, WineSitting and the booking platform, through the real handlers
//! and the real SDK against the local endpoint: huge headers, deeply nested
//! JSON, invalid UTF-8, wrong content types, empty bodies, signatures of the
//! wrong length, not hex or missing, replayed old events, unknown instances,
//! path tricks, bodies over the limit. Each gets the answer of docs/sources.md's
//! "Answers" table, within a hang guard (the times are printed), and the
//! tables and the queue are scanned after each: a refusal writes nothing; an
//! answer writes at most its event record (the processor does the rest); a
//! signed body that can't be understood is archived once (quarantined), and
//! the stream processor skips it: nothing is applied or queued.

use std::time::{Duration, Instant};
use vendors::functions::Kind;

use integration_tests::*;
use local_stack::events::{routed_event, vinesos_headers, Route};
use serde_json::{json, Value};
use vendors::booking::BookingFamily;
use vendors::revel::signature::sign;
use vendors::revel::RevelEventType;
use vendors::vinesos::VinesOsEvent;

/// Not a latency target: a guard against a request that hangs or burns CPU.
const HANG_GUARD: Duration = Duration::from_secs(2);

const KIND: RevelEventType = RevelEventType::CustomerCreated;

type Headers = Vec<(String, String)>;
/// A crafted request's path parameters (name, value).
type Params = Vec<(&'static str, String)>;

fn unauthorized() -> (u16, Value) {
    (401, json!({"error": "unauthorized"}))
}

/// An API Gateway request for `path` on `route`, with the path parameters
/// API Gateway would pass, or `params` when given (what a crafted URL
/// decodes to).
fn api_request(
    route: &str,
    path: &str,
    params: Option<&[(&str, &str)]>,
    headers: &[(String, String)],
    body: &[u8],
) -> shared::http::ApiGatewayEvent {
    let route = Route {
        template: route.to_owned(),
    };
    let mut event = routed_event("POST", &route, path, "", headers, body);
    if let Some(params) = params {
        event["pathParameters"] = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    integration_tests::api_gateway_event(&event.to_string()).expect("a valid API Gateway event")
}

fn revel_request(headers: &[(String, String)], body: &[u8]) -> shared::http::ApiGatewayEvent {
    api_request(
        Kind::Revel(KIND).function().route(),
        Kind::Revel(KIND).function().route(),
        None,
        headers,
        body,
    )
}

/// Revel's headers for `body` with one header replaced (or removed when `value` is `None`).
fn revel_headers_with(body: &[u8], name: &str, value: Option<String>) -> Vec<(String, String)> {
    let mut headers = local_stack::events::revel_headers(KIND, DEMO_INSTANCE, DEMO_SECRET, body);
    headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    if let Some(value) = value {
        headers.push((name.to_owned(), value));
    }
    headers
}

fn deeply_nested(levels: usize) -> Vec<u8> {
    let mut body = vec![b'['; levels];
    body.extend(std::iter::repeat_n(b']', levels));
    body
}

/// Bytes no compressor can shrink (xorshift), so the archive can't hold them.
fn incompressible(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Runs one hostile request: the answer, the time, and what it wrote.
async fn probe(
    stack: &Stack,
    receiver: &pipeline::receive::Receiver,
    case: &str,
    request: shared::http::ApiGatewayEvent,
) -> (u16, Value, Written) {
    let before = stack.written().await;
    let started = Instant::now();
    let (status, answer) = deliver(receiver, request).await;
    let took = started.elapsed();
    let after = stack.written().await;
    println!("HOSTILE {case}: {status} {answer} in {took:?}");
    assert!(took < HANG_GUARD, "{case}: answered in {took:?}");
    let delta = Written {
        events: after.events - before.events,
        entities: after.entities - before.entities,
        jobs: after.jobs - before.jobs,
    };
    (status, answer, delta)
}

const NOTHING: Written = Written {
    events: 0,
    entities: 0,
    jobs: 0,
};

/// A refusal: exactly `expected`, and nothing written.
async fn refused(
    stack: &Stack,
    receiver: &pipeline::receive::Receiver,
    case: &str,
    request: shared::http::ApiGatewayEvent,
    expected: (u16, Value),
) {
    let (status, answer, written) = probe(stack, receiver, case, request).await;
    assert_eq!((status, answer), expected, "{case}");
    assert_eq!(written, NOTHING, "{case} wrote something");
}

/// A signed body that can't be understood: 202, archived once, quarantined,
/// nothing applied or queued.
async fn quarantined(
    stack: &Stack,
    receiver: &pipeline::receive::Receiver,
    case: &str,
    request: shared::http::ApiGatewayEvent,
    reason: &str,
) {
    let (status, answer, written) = probe(stack, receiver, case, request).await;
    assert_eq!(status, 202, "{case}: {answer}");
    assert_eq!(answer["status"], "quarantined", "{case}");
    assert_eq!(answer["reason"], reason, "{case}");
    assert_eq!(written, ONE_RECORD, "{case}");
    let record = stack
        .event(answer["event_id"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(text(&record, "status"), "quarantined", "{case}");
    stack.settle().await;
    let after = stack.written().await;
    assert_eq!(
        (after.entities, after.jobs),
        (0, 0),
        "{case}: the processor skipped it"
    );
}

/// After the processor: the event kept its one entity and queued one job.
async fn processed_into_one_entity_and_one_job(stack: &Stack) {
    stack.settle().await;
    let after = stack.written().await;
    assert_eq!((after.entities, after.jobs), (1, 1), "{after:?}");
}

/// Only the event record: what an answer writes.
const ONE_RECORD: Written = Written {
    events: 1,
    entities: 0,
    jobs: 0,
};

#[tokio::test]
async fn forged_revel_requests_are_refused_quickly_with_nothing_written() {
    let stack = Stack::new().await;
    let receiver = stack.receiver(KIND);
    let body = payload("customer.json");
    let good = sign(DEMO_SECRET.as_bytes(), &body);
    let huge = "a".repeat(64 * 1024);

    let mut cases: Vec<(&str, Headers, Vec<u8>)> = vec![
        (
            "64 KB signature header",
            revel_headers_with(&body, "x-revel-signature", Some(huge.clone())),
            body.clone(),
        ),
        (
            "64 KB instance header",
            revel_headers_with(&body, "x-revel-instance", Some(huge.clone())),
            body.clone(),
        ),
        (
            "64 KB user-agent, no signature",
            revel_headers_with(&body, "x-revel-signature", None)
                .into_iter()
                .chain([("user-agent".to_owned(), huge.clone())])
                .collect(),
            body.clone(),
        ),
        (
            "2000 headers, wrong signature",
            revel_headers_with(&body, "x-revel-signature", Some("0".repeat(40)))
                .into_iter()
                .chain((0..2000).map(|i| (format!("x-filler-{i}"), "x".repeat(100))))
                .collect(),
            body.clone(),
        ),
        (
            "100k levels of [ under a wrong signature",
            revel_headers_with(&body, "x-revel-signature", Some(good.clone())),
            deeply_nested(100_000),
        ),
        (
            "invalid UTF-8 under a wrong signature",
            revel_headers_with(&body, "x-revel-signature", Some(good.clone())),
            vec![0xff, 0xfe, 0xc3, 0x28, b'{', 0x80],
        ),
        (
            "text/plain, no signature",
            revel_headers_with(&body, "x-revel-signature", None)
                .into_iter()
                .filter(|(k, _)| k != "content-type")
                .chain([("content-type".to_owned(), "text/plain".to_owned())])
                .collect(),
            body.clone(),
        ),
        (
            "multipart form, wrong signature",
            revel_headers_with(&body, "x-revel-signature", Some("1".repeat(40)))
                .into_iter()
                .filter(|(k, _)| k != "content-type")
                .chain([(
                    "content-type".to_owned(),
                    "multipart/form-data; boundary=x".to_owned(),
                )])
                .collect(),
            b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--\r\n".to_vec(),
        ),
        (
            "empty body, no signature",
            revel_headers_with(b"", "x-revel-signature", None),
            Vec::new(),
        ),
        (
            "empty body, the signature of another body",
            revel_headers_with(b"", "x-revel-signature", Some(good.clone())),
            Vec::new(),
        ),
        (
            "no signature",
            revel_headers_with(&body, "x-revel-signature", None),
            body.clone(),
        ),
        (
            "empty signature",
            revel_headers_with(&body, "x-revel-signature", Some(String::new())),
            body.clone(),
        ),
        (
            "signature one hex digit short",
            revel_headers_with(&body, "x-revel-signature", Some(good[..39].to_owned())),
            body.clone(),
        ),
        (
            "signature one byte long",
            revel_headers_with(&body, "x-revel-signature", Some(format!("{good}00"))),
            body.clone(),
        ),
        (
            "signature twice as long",
            revel_headers_with(&body, "x-revel-signature", Some(good.repeat(2))),
            body.clone(),
        ),
        (
            "signature not hex",
            revel_headers_with(&body, "x-revel-signature", Some("zz".repeat(20))),
            body.clone(),
        ),
        (
            "signature with a sha1= prefix",
            revel_headers_with(&body, "x-revel-signature", Some(format!("sha1={good}"))),
            body.clone(),
        ),
        (
            "signature base64 of the right digest",
            revel_headers_with(&body, "x-revel-signature", Some(base64_of_hex(&good))),
            body.clone(),
        ),
        (
            "the right signature and a wrong one (joined by API Gateway)",
            revel_headers_with(&body, "x-revel-signature", Some(good.clone()))
                .into_iter()
                .chain([("x-revel-signature".to_owned(), "0".repeat(40))])
                .collect(),
            body.clone(),
        ),
        (
            "signed with another secret",
            local_stack::events::revel_headers(KIND, DEMO_INSTANCE, "guessed", &body),
            body.clone(),
        ),
        (
            "unknown instance",
            local_stack::events::revel_headers(KIND, "stranger", DEMO_SECRET, &body),
            body.clone(),
        ),
        (
            "instance with a path",
            revel_headers_with(&body, "x-revel-instance", Some("../demo".into())),
            body.clone(),
        ),
        (
            "instance as a host name",
            revel_headers_with(&body, "x-revel-instance", Some("demo.revelup.com".into())),
            body.clone(),
        ),
        (
            "instance of 64 characters",
            revel_headers_with(&body, "x-revel-instance", Some("d".repeat(64))),
            body.clone(),
        ),
        (
            "no instance",
            revel_headers_with(&body, "x-revel-instance", None),
            body.clone(),
        ),
    ];
    for (case, headers, body) in cases.drain(..) {
        refused(
            &stack,
            &receiver,
            case,
            revel_request(&headers, &body),
            unauthorized(),
        )
        .await;
    }

    // Over the limit: refused before the signature is even looked at.
    let oversized = vec![b' '; stack.config.settings.max_body_bytes + 1];
    refused(
        &stack,
        &receiver,
        "1 MiB + 1 byte, unsigned",
        revel_request(
            &revel_headers_with(&oversized, "x-revel-signature", None),
            &oversized,
        ),
        (413, json!({"error": "payload_too_large"})),
    )
    .await;
    assert_eq!(stack.written().await, NOTHING);
}

fn base64_of_hex(hex_digest: &str) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..hex_digest.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex_digest[i..i + 2], 16).unwrap())
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn signed_but_hostile_revel_bodies_are_quarantined_or_refused_and_nothing_is_applied() {
    let stack = Stack::new().await;
    let receiver = stack.receiver(KIND);
    let signed = |body: &[u8]| revel_request(&revel_headers_with(body, "", None), body);

    quarantined(
        &stack,
        &receiver,
        "signed, 100k levels of [",
        signed(&deeply_nested(100_000)),
        "invalid_json",
    )
    .await;
    quarantined(
        &stack,
        &receiver,
        "signed, invalid UTF-8",
        signed(&[0xff, 0xfe, b'{', 0xc3, 0x28, b'}']),
        "invalid_json",
    )
    .await;
    quarantined(
        &stack,
        &receiver,
        "signed, empty body",
        signed(b""),
        "invalid_json",
    )
    .await;
    let form = b"uuid=58126996&updated_date=2021-12-28";
    let mut headers = revel_headers_with(form, "content-type", None);
    headers.push((
        "content-type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    quarantined(
        &stack,
        &receiver,
        "signed, a form body",
        revel_request(&headers, form),
        "invalid_json",
    )
    .await;

    // A body under the limit that, compressed, still can't fit one archive
    // item: it can't be kept, so it is not acknowledged.
    let noise = incompressible(stack.config.settings.max_body_bytes - 1);
    refused(
        &stack,
        &receiver,
        "signed, 1 MiB of incompressible bytes",
        signed(&noise),
        (413, json!({"error": "payload_too_large"})),
    )
    .await;

    // The content type is not what authenticates or parses a delivery: a
    // signed JSON body under any content type is the event.
    let body = payload("customer.json");
    let mut headers = revel_headers_with(&body, "content-type", None);
    headers.push(("content-type".into(), "text/plain; charset=latin1".into()));
    let (status, answer, written) = probe(
        &stack,
        &receiver,
        "signed JSON as text/plain",
        revel_request(&headers, &body),
    )
    .await;
    expect_outcome(status, &answer, 200, "accepted");
    assert_eq!(written, ONE_RECORD, "the answer waits for the record only");
    processed_into_one_entity_and_one_job(&stack).await;

    // A replay of a stored delivery is a duplicate and writes nothing.
    let (status, answer, written) = probe(
        &stack,
        &receiver,
        "replay of a stored delivery",
        revel_request(&headers, &body),
    )
    .await;
    expect_outcome(status, &answer, 200, "duplicate");
    assert_eq!(written, NOTHING);
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn vinesos_body() -> Vec<u8> {
    payload("vinesos-customer-created.json")
}

fn vinesos_request(
    instance: &str,
    params: Option<&[(&str, &str)]>,
    headers: &[(String, String)],
    body: &[u8],
) -> shared::http::ApiGatewayEvent {
    let event = VinesOsEvent::CustomerCreated;
    let path = Kind::VinesOs(event)
        .function()
        .route()
        .replace("{instance}", instance);
    api_request(
        Kind::VinesOs(event).function().route(),
        &path,
        params,
        headers,
        body,
    )
}

#[tokio::test]
async fn hostile_vinesos_requests_replays_and_path_tricks_are_refused_with_nothing_written() {
    let stack = Stack::new().await;
    let receiver = stack.receiver_for(
        Kind::VinesOs(VinesOsEvent::CustomerCreated)
            .function()
            .logical_id,
    );
    let body = vinesos_body();
    let secret = local_stack::DEMO_VINESOS_SECRET;
    let at = |timestamp: i64| vinesos_headers(secret, &body, timestamp);
    let replace = |mut headers: Vec<(String, String)>, name: &str, value: Option<String>| {
        headers.retain(|(k, _)| k != name);
        if let Some(value) = value {
            headers.push((name.to_owned(), value));
        }
        headers
    };
    let huge = "a".repeat(64 * 1024);

    let cases: Vec<(&str, Headers, Option<Params>, Vec<u8>)> = vec![
        (
            "signed 5 min 1 s ago (a replay)",
            at(now() - 301),
            None,
            body.clone(),
        ),
        (
            "signed an hour ago (a replay)",
            at(now() - 3600),
            None,
            body.clone(),
        ),
        (
            "signed 7 min in the future",
            at(now() + 420),
            None,
            body.clone(),
        ),
        (
            "timestamp not a number",
            replace(at(now()), "webhook-timestamp", Some("yesterday".into())),
            None,
            body.clone(),
        ),
        (
            "timestamp overflowing i64",
            replace(at(now()), "webhook-timestamp", Some("9".repeat(30))),
            None,
            body.clone(),
        ),
        (
            "no signature",
            replace(at(now()), "webhook-signature", None),
            None,
            body.clone(),
        ),
        (
            "signature not base64",
            replace(
                at(now()),
                "webhook-signature",
                Some("v1,!!!not-base64!!!".into()),
            ),
            None,
            body.clone(),
        ),
        (
            "64 KB signature",
            replace(at(now()), "webhook-signature", Some(format!("v1,{huge}"))),
            None,
            body.clone(),
        ),
        (
            "64 KB webhook-id",
            replace(at(now()), "webhook-id", Some(huge.clone())),
            None,
            body.clone(),
        ),
        (
            "100k levels of [ under another body's signature",
            at(now()),
            None,
            deeply_nested(100_000),
        ),
        (
            "empty body under another body's signature",
            at(now()),
            None,
            Vec::new(),
        ),
        (
            "unknown instance",
            at(now()),
            Some(vec![("instance", "stranger".into())]),
            body.clone(),
        ),
        (
            "instance ../demo",
            at(now()),
            Some(vec![("instance", "../demo".into())]),
            body.clone(),
        ),
        (
            "instance with an encoded slash",
            at(now()),
            Some(vec![("instance", "demo%2F..%2Fother".into())]),
            body.clone(),
        ),
        (
            "instance with a decoded slash",
            at(now()),
            Some(vec![("instance", "other/../demo".into())]),
            body.clone(),
        ),
        (
            "overlong instance (10 000 characters)",
            at(now()),
            Some(vec![("instance", "d".repeat(10_000))]),
            body.clone(),
        ),
        (
            "no instance parameter",
            at(now()),
            Some(vec![]),
            body.clone(),
        ),
    ];
    for (case, headers, params, body) in cases {
        let params: Option<Vec<(&str, &str)>> = params
            .as_ref()
            .map(|p| p.iter().map(|(k, v)| (*k, v.as_str())).collect());
        refused(
            &stack,
            &receiver,
            &format!("vinesos: {case}"),
            vinesos_request(DEMO_INSTANCE, params.as_deref(), &headers, &body),
            unauthorized(),
        )
        .await;
    }

    // The same message signed now is accepted once; its replay within the
    // window is a duplicate and writes nothing.
    let fresh = at(now());
    let (status, answer, written) = probe(
        &stack,
        &receiver,
        "vinesos: signed now",
        vinesos_request(DEMO_INSTANCE, None, &fresh, &body),
    )
    .await;
    expect_outcome(status, &answer, 200, "accepted");
    assert_eq!(written, ONE_RECORD, "the answer waits for the record only");
    processed_into_one_entity_and_one_job(&stack).await;
    let (status, answer, written) = probe(
        &stack,
        &receiver,
        "vinesos: replayed within the window",
        vinesos_request(DEMO_INSTANCE, None, &fresh, &body),
    )
    .await;
    expect_outcome(status, &answer, 200, "duplicate");
    assert_eq!(written, NOTHING);
}

#[tokio::test]
async fn winesitting_and_booking_path_tricks_are_refused_with_nothing_written() {
    let stack = Stack::new().await;
    let receiver = stack.receiver_for(Kind::WineSitting.function().logical_id);
    let body = payload("winesitting-order.json");
    let token = local_stack::DEMO_WINESITTING_TOKEN;
    let json_headers = vec![("content-type".to_owned(), "application/json".to_owned())];
    let long_token = "t".repeat(100_000);
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "wrong token",
            vec![("account", "demo".into()), ("token", "guess".into())],
        ),
        (
            "empty token",
            vec![("account", "demo".into()), ("token", String::new())],
        ),
        ("no token", vec![("account", "demo".into())]),
        (
            "token with ../",
            vec![("account", "demo".into()), ("token", format!("../{token}"))],
        ),
        (
            "token with an encoded slash",
            vec![
                ("account", "demo".into()),
                ("token", format!("{token}%2F..")),
            ],
        ),
        (
            "token and a NUL",
            vec![
                ("account", "demo".into()),
                ("token", format!("{token}\u{0}")),
            ],
        ),
        (
            "the token's prefix",
            vec![
                ("account", "demo".into()),
                ("token", token[..20].to_owned()),
            ],
        ),
        (
            "a 100 KB token",
            vec![("account", "demo".into()), ("token", long_token.clone())],
        ),
        (
            "account ../demo",
            vec![("account", "../demo".into()), ("token", token.into())],
        ),
        (
            "account with an encoded slash",
            vec![("account", "x%2F..%2Fdemo".into()), ("token", token.into())],
        ),
        (
            "account with a decoded slash",
            vec![("account", "x/../demo".into()), ("token", token.into())],
        ),
        (
            "unknown account, the demo token",
            vec![("account", "stranger".into()), ("token", token.into())],
        ),
        (
            "overlong account",
            vec![("account", "d".repeat(10_000)), ("token", token.into())],
        ),
    ];
    for (case, params) in cases {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        refused(
            &stack,
            &receiver,
            &format!("winesitting: {case}"),
            api_request(
                Kind::WineSitting.function().route(),
                "/winesitting/x/y",
                Some(&params),
                &json_headers,
                &body,
            ),
            unauthorized(),
        )
        .await;
    }

    let family = BookingFamily::Bookings;
    let receiver = stack.receiver_for(Kind::Booking(family).function().logical_id);
    let body = payload("booking-bookings.json");
    let signed = local_stack::events::booking_headers(
        local_stack::DEMO_BOOKING_HEADER,
        local_stack::DEMO_BOOKING_SECRET,
        &body,
    );
    let with_signature = |value: Option<String>| {
        let mut headers = signed.clone();
        headers.retain(|(k, _)| k != local_stack::DEMO_BOOKING_HEADER);
        if let Some(value) = value {
            headers.push((local_stack::DEMO_BOOKING_HEADER.to_owned(), value));
        }
        headers
    };
    let good = signed
        .iter()
        .find(|(k, _)| k == local_stack::DEMO_BOOKING_HEADER)
        .unwrap()
        .1
        .clone();
    let booking_cases: Vec<(&str, Headers, Params)> = vec![
        (
            "no signature",
            with_signature(None),
            vec![("account", "demo".into())],
        ),
        (
            "signature one digit short",
            with_signature(Some(good[..63].to_owned())),
            vec![("account", "demo".into())],
        ),
        (
            "signature not hex nor base64",
            with_signature(Some("!".repeat(64))),
            vec![("account", "demo".into())],
        ),
        (
            "64 KB signature",
            with_signature(Some("a".repeat(64 * 1024))),
            vec![("account", "demo".into())],
        ),
        (
            "a signed account's URL with a token instead",
            with_signature(None),
            vec![
                ("account", "demo".into()),
                ("token", "demo-booking-secret".into()),
            ],
        ),
        (
            "tokened account, 100 KB token",
            Vec::new(),
            vec![("account", "tokened".into()), ("token", long_token.clone())],
        ),
        (
            "tokened account, token with ../",
            Vec::new(),
            vec![
                ("account", "tokened".into()),
                ("token", "../tokened-booking-token".into()),
            ],
        ),
        (
            "account ../demo",
            signed.clone(),
            vec![("account", "../demo".into())],
        ),
    ];
    for (case, headers, params) in booking_cases {
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        refused(
            &stack,
            &receiver,
            &format!("booking: {case}"),
            api_request(
                Kind::Booking(family).function().routes[1],
                "/booking/x/bookings/y",
                Some(&params),
                &headers,
                &body,
            ),
            unauthorized(),
        )
        .await;
    }
    assert_eq!(stack.written().await, NOTHING);
}
