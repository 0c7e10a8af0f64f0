//! The route table: every endpoint of the API contract, declared once, here. The
//! `routes!` invocation below produces the [`Route`] enum, the table and the
//! compile-time [`tree`] that [`lookup`] walks.

pub mod tree;

use crate::http::parse::Method;
use tree::{build, capacity, Lookup, Tree};

/// Declares the routes: `METHOD "path" => Variant`. The variant names the handler.
macro_rules! routes {
    ($($method:ident $path:literal => $route:ident,)*) => {
        /// One variant per routed (method, path) pair.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Route { $($route,)* }

        /// (method, path pattern, route), in declaration order.
        pub const TABLE: &[(Method, &str, Route)] = &[$((Method::$method, $path, Route::$route),)*];
        const PATHS: &[(Method, &str)] = &[$((Method::$method, $path),)*];
    };
}

routes! {
    Get "/healthz" => Healthz,
    Get "/livez" => Livez,
    Get "/readyz" => Readyz,
    Post "/epro/submit" => Submit,
    Post "/api/v1/tags/add" => AddTag,
    Get "/api/v1/projects/{projectId}/sites/{siteId}/subjects" => Subjects,
    Get "/api/v1/projects/{projectId}/reports/summary" => Summary,
    Get "/api/v1/users/{userId}/permissions" => Permissions,
}

static TREE: Tree<{ capacity(PATHS) }> = build(PATHS);

/// A routing decision.
#[derive(Debug)]
pub enum Routed<'p> {
    Found(Route, tree::Params<'p>),
    /// Known path, other method: the bit set of allowed methods for `Allow`.
    MethodNotAllowed(u8),
    NotFound,
}

/// Routes a request path (without query) for `method`.
pub fn lookup(method: Method, path: &str) -> Routed<'_> {
    match TREE.lookup(method, path) {
        Lookup::Found(i, params) => Routed::Found(TABLE[i].2, params),
        Lookup::MethodNotAllowed(allowed) => Routed::MethodNotAllowed(allowed),
        Lookup::NotFound => Routed::NotFound,
    }
}
