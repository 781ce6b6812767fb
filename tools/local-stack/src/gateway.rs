//! A local stand-in for API Gateway: serves each receiver of the table of
//! functions (`vendors::functions`, which template.yaml is held to) at its
//! routes, converting every request to the HTTP API payload 2.0 event
//! that API Gateway would send and running the function's own handler on it.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use pipeline::receive::Receiver;
use vendors::functions::Function;

use crate::events::Route;
use crate::Error;

/// API Gateway's own payload limit; larger bodies never reach a function.
const API_GATEWAY_MAX_BODY: usize = 10 * 1024 * 1024;

/// Each template route (method, path template) with its receiver.
pub type Routes = Arc<Vec<(String, Route, Arc<Receiver>)>>;

/// Every route of the table of functions (POST, as the template declares
/// them), each bound to the receiver `make` builds for its function.
pub fn routes(make: impl Fn(&Function) -> Option<Receiver>) -> Result<Routes, Error> {
    let mut routes = Vec::new();
    for function in vendors::functions::all() {
        let receiver = Arc::new(
            make(function)
                .ok_or_else(|| format!("no receiver for function {}", function.logical_id))?,
        );
        for route in function.routes {
            routes.push((
                "POST".to_owned(),
                Route::exact(route),
                Arc::clone(&receiver),
            ));
        }
    }
    Ok(Arc::new(routes))
}

fn plain(status: u16, body: &'static str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("static response")
}

async fn dispatch(State(routes): State<Routes>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let found = routes.iter().find(|(method, route, _)| {
        method == parts.method.as_str() && route.matches(parts.uri.path()).is_some()
    });
    let Some((_, route, receiver)) = found.cloned() else {
        return plain(404, r#"{"message":"Not Found"}"#);
    };
    let Ok(body) = to_bytes(body, API_GATEWAY_MAX_BODY).await else {
        return plain(413, r#"{"message":"Request Entity Too Large"}"#);
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let event = crate::events::routed_event(
        parts.method.as_str(),
        &route,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &headers,
        &body,
    );
    let event = match serde_json::from_value(event) {
        Ok(event) => event,
        Err(_) => return plain(400, r#"{"message":"Bad Request"}"#),
    };
    let answer = shared::http::handle(&receiver, event, None).await;
    let (parts, body) = answer.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(text) => text.into_bytes(),
        lambda_http::Body::Binary(bytes) => bytes,
        _ => Vec::new(),
    };
    Response::from_parts(parts, Body::from(bytes))
}

/// Serves `routes` on `listener` until the process ends, with `extra`
/// routes (the local stand-ins of Revel's API and of the partner) beside them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    routes: Routes,
    extra: axum::Router,
) -> Result<(), Error> {
    let app = extra.merge(axum::Router::new().fallback(dispatch).with_state(routes));
    axum::serve(listener, app).await?;
    Ok(())
}
