//! The endpoints, one function each, by family: the probes and documents anyone may
//! read ([`open`]), the three writes through one pipeline ([`mod@write`]), the v1 reads
//! ([`read`]) and the FHIR ones ([`fhir`]). [`HANDLERS`] pairs every route of the
//! table ([`crate::route`]) with its function, in the table's order.
//!
//! The onion ([`crate::api::middleware`]) has already checked the route's
//! [`crate::route::Access`]. A handler writes its answer through the [`Reply`] and
//! says, in its [`Outcome`], whether the connection continues and which stored record,
//! if any, must be durable before the response may leave; or it returns the
//! [`Refusal`], which the onion writes out.

pub mod fhir;
pub mod open;
pub mod read;
pub mod write;

use std::borrow::Cow;

use crate::api::outcome::Outcome;
use crate::api::refusal::{Refusal, Why};
use crate::domain::auth::Principal;
use crate::http::parse::Head;
use crate::http::percent;
use crate::http::request::Request;
use crate::http::response::Reply;
use crate::route::tree::Params;
use crate::route::Route;
use crate::shard::context::Context;

/// What a handler comes to: its answer written (and what the connection does next),
/// or a refusal for the onion to write.
pub type Handled = Result<Outcome, Refusal>;

/// A request for an authenticated route, as its handler sees it.
pub struct Ask<'a> {
    pub ctx: &'a Context,
    pub request: &'a Request<'a>,
    pub params: &'a Params<'a>,
    /// The principal the onion authenticated.
    pub who: &'a Principal,
}

impl<'a> Ask<'a> {
    pub fn head(&self) -> &'a Head<'a> {
        &self.request.head
    }

    /// Path parameter `name`, percent-decoded (`""` when the route has none of that
    /// name); a 400 when its escapes are malformed.
    pub fn param(&self, name: &str) -> Result<Cow<'a, str>, Refusal> {
        param(self.params, name).ok_or(Refusal::Fixed(Why::BadParam))
    }
}

/// Path parameter `name`, percent-decoded (`Some("")` when the route has none of that
/// name); `None` when its escapes are malformed.
fn param<'p>(params: &Params<'p>, name: &str) -> Option<Cow<'p, str>> {
    percent::decode(params.get(name).unwrap_or(""))
}

/// A route's handler: of an open route (no principal), or of one that needs a token.
#[derive(Clone, Copy)]
pub enum Handler {
    Open(fn(&Context, &Head<'_>, &mut Reply<'_>) -> Handled),
    Authed(fn(&Ask<'_>, &mut Reply<'_>) -> Handled),
}

/// Every route with its handler, in the route table's order (`HANDLERS[r as usize]`
/// is route `r`'s; a test checks it).
pub const HANDLERS: [(Route, Handler); Route::ALL.len()] = [
    (Route::Healthz, Handler::Open(open::ok)),
    (Route::Livez, Handler::Open(open::ok)),
    (Route::Readyz, Handler::Open(open::ready)),
    (Route::Metrics, Handler::Open(open::metrics)),
    (Route::OpenApi, Handler::Open(open::openapi)),
    (Route::Submit, Handler::Authed(write::submit)),
    (Route::AddTag, Handler::Authed(write::add_tag)),
    (Route::Subjects, Handler::Authed(read::subjects)),
    (Route::Summary, Handler::Authed(read::summary)),
    (Route::Permissions, Handler::Authed(read::permissions)),
    (Route::Record, Handler::Authed(read::record)),
    (Route::LogHeads, Handler::Authed(read::heads)),
    (Route::FhirCreate, Handler::Authed(write::create)),
    (Route::FhirRead, Handler::Authed(fhir::read)),
    (Route::FhirMetadata, Handler::Open(fhir::metadata)),
    (Route::FhirProfile, Handler::Open(fhir::profile)),
];

/// Runs `route`'s handler; `who`: the principal the onion authenticated (`None` on an
/// open route).
pub fn run(
    ctx: &Context,
    (route, params): (Route, &Params<'_>),
    who: Option<&Principal>,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled {
    match (HANDLERS[route as usize].1, who) {
        (Handler::Open(run), _) => run(ctx, &request.head, reply),
        (Handler::Authed(run), Some(who)) => {
            let ask = Ask {
                ctx,
                request,
                params,
                who,
            };
            run(&ask, reply)
        }
        // Never so while the table and the routes' access agree (a test checks it).
        (Handler::Authed(_), None) => Err(Refusal::Unauthenticated { bearer: false }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Access;

    #[test]
    fn every_route_has_one_handler_that_fits_its_access() {
        assert_eq!(HANDLERS.len(), Route::ALL.len());
        for (i, &(route, handler)) in HANDLERS.iter().enumerate() {
            assert_eq!(route as usize, i, "{route:?} out of the table's order");
            let open = matches!(handler, Handler::Open(_));
            assert_eq!(open, route.access() == Access::Open, "{route:?}");
        }
    }
}
