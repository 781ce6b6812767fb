//! Delivery to the partner system: an HTTPS POST per change, signed the
//! Standard Webhooks way (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`),
//! so the partner can verify it with any Standard Webhooks library.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The signing secret, `whsec_` followed by base64 of the key bytes.
#[derive(Clone)]
pub struct SigningSecret(Vec<u8>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("signing secret must be whsec_ followed by base64 of at least 16 bytes")]
pub struct InvalidSigningSecret;

impl SigningSecret {
    pub fn parse(raw: &str) -> Result<Self, InvalidSigningSecret> {
        let encoded = raw.trim().strip_prefix("whsec_").unwrap_or(raw.trim());
        let key = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| InvalidSigningSecret)?;
        if key.len() < 16 {
            return Err(InvalidSigningSecret);
        }
        Ok(Self(key))
    }

    /// The HMAC of one message, fed `{id}.{timestamp}.{body}`.
    fn mac(&self, message_id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(message_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, message_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(
                self.mac(message_id, timestamp, body)
                    .finalize()
                    .into_bytes()
            )
        )
    }

    /// True when one `v1,<base64>` entry of a `webhook-signature` header (a
    /// space-separated list) is the signature of this message, compared in
    /// constant time. Entries of other versions, and ones that don't decode,
    /// are skipped. The timestamp's age is the caller's to check.
    pub fn verify(
        &self,
        message_id: &str,
        timestamp: i64,
        body: &[u8],
        signature_header: &str,
    ) -> bool {
        let expected = self.mac(message_id, timestamp, body);
        signature_header
            .split_whitespace()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .fold(false, |found, claimed| {
                expected.clone().verify_slice(&claimed).is_ok() | found
            })
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// Why a delivery did not succeed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeliveryError {
    /// 5xx, 408, 429, a timeout or a connection error: worth retrying later.
    #[error("partner endpoint unavailable (status {status:?})")]
    Unavailable { status: Option<u16> },
    /// Another 4xx: the partner refuses this message; retries go to the DLQ.
    #[error("partner endpoint rejected the delivery with status {status}")]
    Rejected { status: u16 },
    /// No partner URL is configured (`DownstreamUrl` is empty): nothing can
    /// be sent until one is, so the delivery waits (the worker parks it).
    #[error("no partner URL is configured (DownstreamUrl)")]
    NotConfigured,
}

/// The partner system's webhook endpoint, as the worker sees it: a message
/// with a stable id, delivered or refused.
#[async_trait::async_trait]
pub trait Partner: Send + Sync {
    async fn deliver(&self, message_id: &str, body: &[u8]) -> Result<(), DeliveryError>;
}

#[async_trait::async_trait]
impl Partner for Downstream {
    async fn deliver(&self, message_id: &str, body: &[u8]) -> Result<(), DeliveryError> {
        Downstream::deliver(self, message_id, body).await
    }
}

/// Where deliveries go, and how they are signed.
pub struct Downstream {
    http: reqwest::Client,
    endpoint: String,
    secret: SigningSecret,
}

impl fmt::Debug for Downstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Downstream")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Downstream {
    pub fn new(endpoint: impl Into<String>, secret: SigningSecret, timeout: Duration) -> Self {
        let http = crate::http_client()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(3))
            .build()
            .expect("a TLS client can be built");
        Self {
            http,
            endpoint: endpoint.into(),
            secret,
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// POSTs `body` (JSON) with a stable `message_id`, so the partner can drop
    /// a repeat of the same message.
    pub async fn deliver(&self, message_id: &str, body: &[u8]) -> Result<(), DeliveryError> {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let signature = self.secret.sign(message_id, timestamp, body);
        let response = self
            .http
            .post(&self.endpoint)
            .header("content-type", "application/json")
            .header("webhook-id", message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|_| DeliveryError::Unavailable { status: None })?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(DeliveryError::Unavailable {
                status: Some(status),
            }),
            _ => Err(DeliveryError::Rejected { status }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wiremock::matchers::{header_exists, method};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn downstream(uri: String) -> Downstream {
        Downstream::new(
            uri,
            SigningSecret::parse(SECRET).unwrap(),
            Duration::from_secs(2),
        )
    }

    #[test]
    fn signatures_match_the_standard_webhooks_reference_implementation() {
        let ours = SigningSecret::parse(SECRET).unwrap();
        let reference = standardwebhooks::Webhook::new(SECRET).unwrap();
        let body = br#"{"type":"revel.order.changed"}"#;
        assert_eq!(
            ours.sign("msg_1", 1_700_000_000, body),
            reference.sign("msg_1", 1_700_000_000, body).unwrap()
        );
    }

    #[test]
    fn a_signature_made_by_sign_verifies() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let body = br#"{"id":"evt_1"}"#;
        let signature = secret.sign("msg_1", 1_700_000_000, body);
        assert!(secret.verify("msg_1", 1_700_000_000, body, &signature));
    }

    #[test]
    fn a_signature_made_by_the_standard_webhooks_crate_verifies() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let body = br#"{"type":"customer.created","data":{"id":"c-1"}}"#;
        let signature = standardwebhooks::Webhook::new(SECRET)
            .unwrap()
            .sign("msg_2", 1_700_000_123, body)
            .unwrap();
        assert!(secret.verify("msg_2", 1_700_000_123, body, &signature));
    }

    #[test]
    fn a_changed_body_id_or_timestamp_fails_verification() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let body = br#"{"a":1}"#;
        let signature = secret.sign("msg_1", 1_700_000_000, body);
        assert!(!secret.verify("msg_1", 1_700_000_000, br#"{"a":2}"#, &signature));
        assert!(!secret.verify("msg_2", 1_700_000_000, body, &signature));
        assert!(!secret.verify("msg_1", 1_700_000_001, body, &signature));
        let other = SigningSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert!(!other.verify("msg_1", 1_700_000_000, body, &signature));
    }

    #[test]
    fn a_header_with_a_v2_entry_and_the_right_v1_entry_passes() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let body = br#"{"a":1}"#;
        let v1 = secret.sign("msg_1", 1_700_000_000, body);
        let v2 = v1.replacen("v1,", "v2,", 1);
        let wrong_v1 = secret.sign("msg_1", 1_700_000_000, b"other");
        let header = format!("v2,bm90IGEgc2lnbmF0dXJl {wrong_v1} v1,!!! {v1}");
        assert!(secret.verify("msg_1", 1_700_000_000, body, &header));
        assert!(!secret.verify("msg_1", 1_700_000_000, body, &v2));
    }

    #[test]
    fn a_garbage_signature_header_fails() {
        let secret = SigningSecret::parse(SECRET).unwrap();
        let body = br#"{"a":1}"#;
        for header in [
            "",
            "   ",
            "garbage",
            "v1,",
            "v1,not base64!",
            "v1,c2hvcnQ=",
            "v1",
            ",v1",
        ] {
            assert!(
                !secret.verify("msg_1", 1_700_000_000, body, header),
                "{header:?}"
            );
        }
    }

    #[test]
    fn short_or_malformed_secrets_are_refused_and_never_printed() {
        assert!(SigningSecret::parse("whsec_c2hvcnQ=").is_err());
        assert!(SigningSecret::parse("not base64!").is_err());
        assert!(!format!("{:?}", SigningSecret::parse(SECRET).unwrap()).contains("MfKQ"));
    }

    #[tokio::test]
    async fn a_delivery_verifies_with_a_standard_webhooks_verifier() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(header_exists("webhook-signature"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server)
            .await;
        let downstream = downstream(server.uri());
        let body = br#"{"type":"revel.customer.changed","data":{"id":"c-1"}}"#;
        downstream.deliver("msg_abc", body).await.unwrap();
        let received = &server.received_requests().await.unwrap()[0];
        let mut headers = http::HeaderMap::new();
        for (name, value) in received.headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        standardwebhooks::Webhook::new(SECRET)
            .unwrap()
            .verify(&received.body, &headers)
            .unwrap();
        assert_eq!(received.body, body);
        let tampered = br#"{"type":"revel.customer.changed","data":{"id":"c-2"}}"#;
        assert!(standardwebhooks::Webhook::new(SECRET)
            .unwrap()
            .verify(tampered, &headers)
            .is_err());
    }

    #[tokio::test]
    async fn server_errors_are_retryable_and_client_errors_are_not() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(503))
            .up_to_n_times(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(422))
            .mount(&server)
            .await;
        let downstream = downstream(server.uri());
        assert_eq!(
            downstream.deliver("m", b"{}").await,
            Err(DeliveryError::Unavailable { status: Some(503) })
        );
        assert_eq!(
            downstream.deliver("m", b"{}").await,
            Err(DeliveryError::Rejected { status: 422 })
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable_not_rejected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let downstream = downstream(format!("http://{address}"));
        assert_eq!(
            downstream.deliver("m", b"{}").await,
            Err(DeliveryError::Unavailable { status: None })
        );
    }
}
