//! The route table: every endpoint of the API contract, declared once, here, with who
//! may call it. The `routes!` invocation below produces the [`Route`] enum, the table,
//! each route's [`Access`] and the compile-time [`tree`] that [`lookup`] walks.

pub mod tree;

use crate::domain::auth::Role;
use crate::http::parse::Method;
use tree::{build, capacity, Lookup, Tree};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token needed (health and readiness probes).
    Open,
    /// A bearer token of a principal with one of these roles.
    Roles(&'static [Role]),
}

/// `open` or `[Role, ...]` in a `routes!` line.
macro_rules! access {
    (open) => {
        Access::Open
    };
    ([$($role:ident),+]) => {
        Access::Roles(&[$(Role::$role),+])
    };
}

/// Declares the routes: `METHOD "path" => Variant, access`. The variant indexes its
/// handler in `crate::api::handlers`' table; the access is enforced by the onion, and
/// nowhere else.
macro_rules! routes {
    ($($method:ident $path:literal => $route:ident, $access:tt;)*) => {
        /// One variant per routed (method, path) pair.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Route { $($route,)* }

        /// (method, path pattern, route), in declaration order.
        pub const TABLE: &[(Method, &str, Route)] = &[$((Method::$method, $path, Route::$route),)*];
        const PATHS: &[(Method, &str)] = &[$((Method::$method, $path),)*];

        impl Route {
            /// Every route, in declaration order (`ALL[r as usize] == r`).
            pub const ALL: &'static [Route] = &[$(Route::$route,)*];

            /// The route's path pattern, as declared (`/api/v1/users/{userId}/permissions`).
            pub const fn template(self) -> &'static str {
                match self { $(Route::$route => $path,)* }
            }

            /// Who may call this route.
            pub const fn access(self) -> Access {
                match self { $(Route::$route => access!($access),)* }
            }
        }
    };
}

routes! {
    Get "/healthz" => Healthz, open;
    Get "/livez" => Livez, open;
    Get "/readyz" => Readyz, open;
    Get "/metrics" => Metrics, open;
    Get "/openapi.json" => OpenApi, open;
    Post "/epro/submit" => Submit, [Device, Staff, Admin];
    Post "/api/v1/tags/add" => AddTag, [Staff, Admin];
    Get "/api/v1/projects/{projectId}/sites/{siteId}/subjects" => Subjects, [Staff, Admin];
    Get "/api/v1/projects/{projectId}/reports/summary" => Summary, [Staff, Admin];
    Get "/api/v1/users/{userId}/permissions" => Permissions, [Device, Staff, Admin];
    Get "/api/v1/records/{id}" => Record, [Staff, Admin];
    Get "/api/v1/log/heads" => LogHeads, [Admin];
    Post "/fhir/QuestionnaireResponse" => FhirCreate, [Device, Staff, Admin];
    Get "/fhir/QuestionnaireResponse/{id}" => FhirRead, [Staff, Admin];
    Get "/fhir/metadata" => FhirMetadata, open;
    Get "/fhir/StructureDefinition/epro-questionnaireresponse" => FhirProfile, open;
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

/// The route `path` and `method` reach, if any (for counting and logging an answer).
pub fn found(method: Method, path: &str) -> Option<Route> {
    match lookup(method, path) {
        Routed::Found(route, _) => Some(route),
        _ => None,
    }
}

/// Routes a request path (without query) for `method`. `HEAD` goes wherever `GET`
/// does (RFC 9110 9.1; the reply then sends the headers alone), and a 405's `Allow`
/// lists `HEAD` beside `GET`.
pub fn lookup(method: Method, path: &str) -> Routed<'_> {
    let routed = if method == Method::Head {
        Method::Get
    } else {
        method
    };
    match TREE.lookup(routed, path) {
        Lookup::Found(i, params) => Routed::Found(TABLE[i].2, params),
        Lookup::MethodNotAllowed(allowed) => {
            let get = allowed & 1 << GET_BIT != 0;
            Routed::MethodNotAllowed(allowed | u8::from(get) << HEAD_BIT)
        }
        Lookup::NotFound => Routed::NotFound,
    }
}

/// Bits of [`Method::ALL`] positions in an allowed-methods set.
const GET_BIT: u8 = 0;
const HEAD_BIT: u8 = 1;
