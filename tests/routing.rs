//! The router as a spec: each line is a request and what it routes to.

use epro_ingest::http::parse::Method::{self, *};
use epro_ingest::route::tree::{allow_header, build, capacity, Lookup, Tree};
use epro_ingest::route::{lookup, Route, Routed};

/// One spec line: method, path, the route (or index) expected or the status, and the
/// parameters expected.
type Case<T> = (
    Method,
    &'static str,
    Result<T, u16>,
    &'static [(&'static str, &'static str)],
);

const API: &[Case<Route>] = &[
    (Get, "/healthz", Ok(Route::Healthz), &[]),
    (Get, "/livez", Ok(Route::Livez), &[]),
    (Get, "/readyz", Ok(Route::Readyz), &[]),
    (Get, "/metrics", Ok(Route::Metrics), &[]),
    (
        Get,
        "/api/v1/records/s1-42",
        Ok(Route::Record),
        &[("id", "s1-42")],
    ),
    (Post, "/epro/submit", Ok(Route::Submit), &[]),
    (Post, "/api/v1/tags/add", Ok(Route::AddTag), &[]),
    (
        Get,
        "/api/v1/projects/P001/sites/S01/subjects",
        Ok(Route::Subjects),
        &[("projectId", "P001"), ("siteId", "S01")],
    ),
    (
        Get,
        "/api/v1/projects/P001/reports/summary",
        Ok(Route::Summary),
        &[("projectId", "P001")],
    ),
    (
        Get,
        "/api/v1/users/u-7/permissions",
        Ok(Route::Permissions),
        &[("userId", "u-7")],
    ),
    (Get, "/epro/submit", Err(405), &[]),
    (Put, "/healthz", Err(405), &[]),
    (Other, "/healthz", Err(405), &[]),
    (Get, "/", Err(404), &[]),
    (Get, "", Err(404), &[]),
    (Get, "healthz", Err(404), &[]),
    (Get, "/healthz/", Err(404), &[]),
    (Get, "//healthz", Err(404), &[]),
    (Get, "/HEALTHZ", Err(404), &[]),
    (Get, "/api/v1/projects//reports/summary", Err(404), &[]),
    (Get, "/api/v1/projects/P001/reports", Err(404), &[]),
    (
        Get,
        "/api/v1/projects/P001/reports/summary/x",
        Err(404),
        &[],
    ),
    (Get, "/api/v1/users/u-7", Err(404), &[]),
    (Post, "/api/v1/users/u-7/permissions", Err(405), &[]),
    // HEAD goes wherever GET does (RFC 9110 9.1), and nowhere else.
    (Head, "/healthz", Ok(Route::Healthz), &[]),
    (
        Head,
        "/api/v1/projects/P001/reports/summary",
        Ok(Route::Summary),
        &[("projectId", "P001")],
    ),
    (Head, "/epro/submit", Err(405), &[]),
];

#[test]
fn a_405_allows_head_beside_get() {
    let Routed::MethodNotAllowed(allowed) = lookup(Post, "/healthz") else {
        panic!("405 expected");
    };
    let mut out = [0u8; 64];
    let len = allow_header(allowed, &mut out);
    assert_eq!(&out[..len], b"GET, HEAD");
    let Routed::MethodNotAllowed(allowed) = lookup(Get, "/epro/submit") else {
        panic!("405 expected");
    };
    let len = allow_header(allowed, &mut out);
    assert_eq!(&out[..len], b"POST");
}

#[test]
fn api_routes() {
    for &(method, path, want, params) in API {
        match (lookup(method, path), want) {
            (Routed::Found(route, got), Ok(expected)) => {
                assert_eq!(route, expected, "{method:?} {path}");
                let got: Vec<_> = got.iter().collect();
                assert_eq!(got, params, "{method:?} {path}");
            }
            (Routed::MethodNotAllowed(_), Err(405)) | (Routed::NotFound, Err(404)) => {}
            (other, want) => panic!("{method:?} {path}: got {other:?}, want {want:?}"),
        }
    }
}

const SPEC: &[(Method, &str)] = &[
    (Get, "/"),
    (Get, "/a/b/c"),
    (Get, "/a/{x}/d"),
    (Post, "/a/{x}/d"),
    (Get, "/a/{x}"),
    (Get, "/a/b"),
    (Delete, "/u/{id}/{part}"),
    (Get, "/u/me/{part}"),
];
static TREE: Tree<{ capacity(SPEC) }> = build(SPEC);

/// Expected: the index into `SPEC`, or the status.
const SPEC_CASES: &[Case<usize>] = &[
    (Get, "/", Ok(0), &[]),
    (Get, "/a/b/c", Ok(1), &[]),
    // Static `b` is tried first; its subtree has no `d`, so the parameter matches.
    (Get, "/a/b/d", Ok(2), &[("x", "b")]),
    (Post, "/a/z/d", Ok(3), &[("x", "z")]),
    (Get, "/a/z", Ok(4), &[("x", "z")]),
    (Get, "/a/b", Ok(5), &[]),
    (Get, "/u/me/x", Ok(7), &[("part", "x")]),
    (Delete, "/u/me/x", Ok(6), &[("id", "me"), ("part", "x")]),
    (Delete, "/u/7/x", Ok(6), &[("id", "7"), ("part", "x")]),
    (Put, "/a/z/d", Err(405), &[]),
    (Get, "/a", Err(404), &[]),
    (Get, "/a/", Err(404), &[]),
    (Get, "/a/b/c/d", Err(404), &[]),
];

#[test]
fn static_before_parameter_with_backtracking() {
    for &(method, path, want, params) in SPEC_CASES {
        match (TREE.lookup(method, path), want) {
            (Lookup::Found(i, got), Ok(expected)) => {
                assert_eq!(i, expected, "{method:?} {path}");
                let got: Vec<_> = got.iter().collect();
                assert_eq!(got, params, "{method:?} {path}");
            }
            (Lookup::MethodNotAllowed(_), Err(405)) | (Lookup::NotFound, Err(404)) => {}
            (other, want) => panic!("{method:?} {path}: got {other:?}, want {want:?}"),
        }
    }
}

#[test]
fn allow_header_lists_methods_in_order() {
    let Lookup::MethodNotAllowed(allowed) = TREE.lookup(Put, "/a/z/d") else {
        panic!("expected 405");
    };
    let mut out = [0u8; 64];
    let len = allow_header(allowed, &mut out);
    assert_eq!(&out[..len], b"GET, POST");
    // Overlapping routes: `/u/me/x` is matched by GET /u/me/{part} and by
    // DELETE /u/{id}/{part}, at different leaves; Allow names both.
    let Lookup::MethodNotAllowed(allowed) = TREE.lookup(Put, "/u/me/x") else {
        panic!("expected 405");
    };
    let len = allow_header(allowed, &mut out);
    assert_eq!(&out[..len], b"GET, DELETE");
}
