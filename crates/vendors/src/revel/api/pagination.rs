//! Revel's pages: `{"meta": {"next", "total_count"}, "objects": [...]}`.
//! The next page is the `offset` of `meta.next`, which must move forward,
//! so a run can never page forever; `total_count` is reported, never used
//! to guess another page.

use serde::Deserialize;

use super::RevelApiError;

/// One request for one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// `Product`, `Order`, ...: ASCII letters and digits only.
    pub resource: String,
    /// Field filters sent after `format`, `limit` and `offset`, in this order,
    /// e.g. `("updated_date__gte", "2024-01-01T00:00:00")`.
    pub filters: Vec<(String, String)>,
    pub offset: u64,
}

/// One page of objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub objects: Vec<serde_json::Value>,
    /// offset of the next page, from meta.next (its `offset` query parameter), None on the last page
    pub next_offset: Option<u64>,
    pub total_count: Option<u64>,
}

/// The documented body: `{"meta": {...}, "objects": [...]}`.
#[derive(Deserialize)]
struct Envelope {
    meta: Meta,
    objects: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    total_count: Option<u64>,
}

pub(super) fn parse_page(body: &[u8], offset: u64) -> Result<Page, RevelApiError> {
    let envelope: Envelope = serde_json::from_slice(body).map_err(|_| {
        RevelApiError::InvalidResponse("body is not a JSON object with `meta` and `objects`")
    })?;
    let next_offset = match envelope.meta.next.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(next) => {
            let next = next_offset_of(next)
                .ok_or(RevelApiError::InvalidResponse("meta.next has no offset"))?;
            // A `next` that does not move forward would page forever.
            if next <= offset {
                return Err(RevelApiError::InvalidResponse(
                    "meta.next does not move past this page",
                ));
            }
            Some(next)
        }
    };
    // When `next` is absent, `total_count` is not used to guess another
    // page: `next` is what Revel says, `total_count` may be stale.
    Ok(Page {
        objects: envelope.objects,
        next_offset,
        total_count: envelope.meta.total_count,
    })
}

/// The `offset` query parameter of a (relative or absolute) `meta.next` URL.
fn next_offset_of(next: &str) -> Option<u64> {
    let (_, query) = next.split_once('?')?;
    let query = query.split('#').next().unwrap_or_default();
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "offset")
        .and_then(|(_, value)| value.parse().ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use wiremock::matchers::{path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::revel::api::testing::*;
    use crate::revel::api::{RevelApiError, RevelResources};

    #[tokio::test]
    async fn pagination_follows_meta_next_across_three_pages_and_collects_every_object_once() {
        let server = MockServer::start().await;
        let pages = [
            (
                "0",
                body(
                    &[1, 2],
                    Some("/resources/Product/?limit=2&offset=2&format=json"),
                    5,
                ),
            ),
            (
                "2",
                body(
                    &[3, 4],
                    Some("/resources/Product/?format=json&limit=2&offset=4"),
                    5,
                ),
            ),
            ("4", body(&[5], None, 5)),
        ];
        for (offset, page) in pages {
            Mock::given(path("/demo/resources/Product/"))
                .and(query_param("offset", offset))
                .respond_with(ResponseTemplate::new(200).set_body_json(page))
                .expect(1)
                .mount(&server)
                .await;
        }
        let budget = FixedBudget::new(10);
        let api = api(&server, budget.clone());

        let mut objects = Vec::new();
        let mut offset = Some(0);
        while let Some(current) = offset {
            let page = api
                .page(&instance(), &credentials(), &products(current))
                .await
                .unwrap();
            objects.extend(page.objects);
            offset = page.next_offset;
        }

        let ids: Vec<u64> = objects.iter().map(|o| o["id"].as_u64().unwrap()).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        assert_eq!(budget.used(), 3);
    }

    #[tokio::test]
    async fn a_missing_next_ends_pagination_even_when_total_count_says_more() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "meta": {"limit": 2, "offset": 0, "total_count": 9},
                "objects": [{"id": 1}, {"id": 2}],
            })))
            .mount(&server)
            .await;

        let page = api(&server, FixedBudget::new(10))
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap();

        assert_eq!(page.next_offset, None);
        assert_eq!(page.total_count, Some(9));
    }

    #[tokio::test]
    async fn a_200_whose_body_lacks_objects_is_an_invalid_response() {
        let server = MockServer::start().await;
        Mock::given(path("/demo/resources/Product/"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"meta": {"next": null}})))
            .expect(1)
            .mount(&server)
            .await;

        let error = api(&server, FixedBudget::new(10))
            .page(&instance(), &credentials(), &products(0))
            .await
            .unwrap_err();

        assert!(
            matches!(error, RevelApiError::InvalidResponse(_)),
            "{error:?}"
        );
        assert!(!error.is_retryable_later());
    }

    #[test]
    fn a_next_that_does_not_move_forward_or_has_no_offset_is_an_invalid_response() {
        let backwards = body(&[1], Some("/resources/Product/?offset=0"), 5);
        let no_offset = body(&[1], Some("/resources/Product/?limit=20"), 5);
        for bad in [backwards, no_offset] {
            let raw = serde_json::to_vec(&bad).unwrap();
            assert!(matches!(
                parse_page(&raw, 0),
                Err(RevelApiError::InvalidResponse(_))
            ));
        }
    }

    #[test]
    fn the_next_offset_is_read_from_relative_and_absolute_urls() {
        assert_eq!(
            next_offset_of("/resources/Product/?limit=20&offset=20&format=json"),
            Some(20)
        );
        assert_eq!(
            next_offset_of("https://demo.revelup.com/resources/Order/?offset=300"),
            Some(300)
        );
        assert_eq!(next_offset_of("/resources/Product/"), None);
    }
}
