//! `GET /-/openapi.json`: `docs/openapi.yaml`, the one description of the
//! HTTP API, built into the binary and converted to JSON once. A test
//! holds it to the routers' tables ([`crate::api::ROUTES`]).

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;

/// The description, as written.
pub const YAML: &str = include_str!("../../../docs/openapi.yaml");

/// The description as a JSON value (`Err`: the YAML does not parse — a
/// test fails first).
pub fn parse() -> Result<serde_json::Value, String> {
    serde_norway::from_str(YAML).map_err(|e| format!("docs/openapi.yaml does not parse: {e}"))
}

static JSON: LazyLock<Result<String, String>> = LazyLock::new(|| parse().map(|v| v.to_string()));

pub async fn json() -> Response {
    match &*JSON {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body.as_str()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{KEY_ROUTE, ROUTES};
    use crate::jobs::JobKind;
    use trove_common::routes::{check, Route};

    /// `/-/{job}` is described as one path per job.
    fn expand(path: &str) -> Vec<String> {
        if path.contains("{job}") {
            JobKind::ALL
                .iter()
                .map(|k| path.replace("{job}", k.name()))
                .collect()
        } else {
            vec![path.to_string()]
        }
    }

    #[test]
    fn the_description_matches_the_router() {
        let doc = parse().unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let routes: Vec<&Route> = ROUTES.iter().chain([&KEY_ROUTE]).collect();
        let problems = check(&doc["paths"], &routes, expand);
        assert!(
            problems.is_empty(),
            "docs/openapi.yaml and the master's router differ:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn every_route_has_a_handler() {
        for route in ROUTES {
            let _ = crate::api::handler(route.path);
        }
    }

    /// A status in the table is one the handlers can answer: a success, or
    /// what some error maps to.
    #[test]
    fn every_status_in_the_table_can_be_answered() {
        let routes: Vec<&Route> = ROUTES.iter().chain([&KEY_ROUTE]).collect();
        let problems = trove_common::routes::unanswerable(&routes, &crate::error::every_status());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn served_as_json() {
        let body = JSON.as_ref().unwrap();
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(value, parse().unwrap());
    }
}
