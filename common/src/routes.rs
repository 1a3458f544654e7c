//! The routes a server registers, as data: each router is built from its
//! table (`ROUTES` in `trove-master`'s and `trove-volume`'s `api`), and a
//! test holds `docs/openapi.yaml` to the same tables with [`check`], so the
//! description cannot silently drift from the code.

use serde_json::Value;

/// A method a route answers, with every status it can answer it with
/// (besides `405` for another method and a `5xx` for a fault inside).
#[derive(Debug)]
pub struct Operation {
    pub method: &'static str,
    pub statuses: &'static [u16],
}

/// One path a router registers.
#[derive(Debug)]
pub struct Route {
    pub path: &'static str,
    pub operations: &'static [Operation],
}

pub const fn op(method: &'static str, statuses: &'static [u16]) -> Operation {
    Operation { method, statuses }
}

/// A read: `GET` and `HEAD`, with the same answers.
pub const fn read(statuses: &'static [u16]) -> [Operation; 2] {
    [op("GET", statuses), op("HEAD", statuses)]
}

/// The methods an OpenAPI path item holds as operations; any other (such
/// as Trove's `UNLINK`) is described under `x-<method>` in lower case.
const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Where in an OpenAPI path item the operation for `method` is.
fn operation_name(method: &str) -> String {
    let lower = method.to_ascii_lowercase();
    if OPENAPI_METHODS.contains(&lower.as_str()) {
        lower
    } else {
        format!("x-{lower}")
    }
}

/// Compares `paths` (an OpenAPI paths object) with `routes`, and returns
/// every difference: a route, method or status the code has and the
/// description lacks, or one it describes that the code does not have.
/// `expand` turns a route's path into the paths that describe it (a
/// route with a parameter, such as `/-/{job}`, may be described as one
/// path per value).
pub fn check(paths: &Value, routes: &[&Route], expand: impl Fn(&str) -> Vec<String>) -> Vec<String> {
    let mut problems = vec![];
    let mut described: Vec<String> = vec![];
    for route in routes {
        for path in expand(route.path) {
            described.push(path.clone());
            let Some(item) = paths.get(&path) else {
                problems.push(format!("{path} (route {}) is not described", route.path));
                continue;
            };
            for op in route.operations {
                let name = operation_name(op.method);
                let Some(responses) = item.get(&name).and_then(|o| o.get("responses")) else {
                    problems.push(format!("{} {path} is not described", op.method));
                    continue;
                };
                let documented: Vec<u16> = responses
                    .as_object()
                    .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
                    .unwrap_or_default();
                for s in op.statuses.iter().filter(|s| !documented.contains(s)) {
                    problems.push(format!("{} {path}: status {s} is not described", op.method));
                }
                for s in documented.iter().filter(|s| !op.statuses.contains(s)) {
                    problems.push(format!(
                        "{} {path}: status {s} is described, but never answered",
                        op.method
                    ));
                }
            }
            for name in item.as_object().into_iter().flat_map(|o| o.keys()) {
                let is_operation = OPENAPI_METHODS.contains(&name.as_str())
                    || (name.starts_with("x-") && !name.starts_with("x-trove"));
                if is_operation
                    && !route
                        .operations
                        .iter()
                        .any(|op| operation_name(op.method) == *name)
                {
                    problems.push(format!("{name} {path} is described, but not routed"));
                }
            }
        }
    }
    for path in paths.as_object().into_iter().flat_map(|o| o.keys()) {
        if !described.contains(path) {
            problems.push(format!("{path} is described, but no route answers it"));
        }
    }
    problems
}

/// The statuses a server answers without an error: the successes and
/// the redirect its routes use and `304 Not Modified` (a conditional read).
pub const SUCCESSES: [u16; 7] = [200, 201, 202, 204, 206, 302, 304];

/// Every status in `routes`' tables that no handler can answer: neither a
/// success nor one of `errors` (every status the server's error type can
/// become). Both servers' tests hold their tables to their error types
/// with this, so a documented status is one a client can really get.
pub fn unanswerable(routes: &[&Route], errors: &[u16]) -> Vec<String> {
    let mut problems = vec![];
    for route in routes {
        for op in route.operations {
            for s in op.statuses {
                if !SUCCESSES.contains(s) && !errors.contains(s) {
                    problems.push(format!("{} {}: no handler answers {s}", op.method, route.path));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &[Route] = &[
        Route {
            path: "/-/a",
            operations: &read(&[200]),
        },
        Route {
            path: "/{key}",
            operations: &[op("PUT", &[201, 400]), op("UNLINK", &[204])],
        },
    ];

    fn problems(doc: Value) -> Vec<String> {
        check(&doc, &ROUTES.iter().collect::<Vec<_>>(), |p| vec![p.to_string()])
    }

    #[test]
    fn a_faithful_description_passes() {
        let doc = serde_json::json!({
            "/-/a": {"get": {"responses": {"200": {}}}, "head": {"responses": {"200": {}}}},
            "/{key}": {"put": {"responses": {"201": {}, "400": {}}}, "x-unlink": {"responses": {"204": {}}},
                       "parameters": []},
        });
        assert_eq!(problems(doc), Vec::<String>::new());
    }

    #[test]
    fn every_difference_is_named() {
        let doc = serde_json::json!({
            "/-/a": {"get": {"responses": {"200": {}, "404": {}}}, "post": {"responses": {}}},
            "/{key}": {"put": {"responses": {"201": {}}}},
            "/-/b": {"get": {"responses": {"200": {}}}},
        });
        let found = problems(doc);
        for expected in [
            "GET /-/a: status 404 is described, but never answered",
            "HEAD /-/a is not described",
            "post /-/a is described, but not routed",
            "PUT /{key}: status 400 is not described",
            "UNLINK /{key} is not described",
            "/-/b is described, but no route answers it",
        ] {
            assert!(
                found.iter().any(|p| p == expected),
                "{expected} missing from {found:#?}"
            );
        }
        assert_eq!(found.len(), 6, "{found:#?}");
    }

    #[test]
    fn a_status_no_error_becomes_is_named() {
        let routes: Vec<&Route> = ROUTES.iter().collect();
        assert_eq!(unanswerable(&routes, &[400]), Vec::<String>::new());
        assert_eq!(
            unanswerable(&routes, &[]),
            vec!["PUT /{key}: no handler answers 400".to_string()]
        );
    }
}
