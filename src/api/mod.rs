//! One request, from its head to its answer, against a shard's
//! [`Context`](crate::shard::context::Context): admission at head time
//! ([`admission`]: load shedding, rate limits), the onion ([`middleware`]: recovery,
//! access log, auth, the route's role rule), the endpoints ([`handlers`], FHIR in
//! [`fhir_api`], reads across shards in [`reads`], keyed writes in [`keyed`]), the
//! answers to a write ([`ack`]), what the connection does next ([`outcome`]), and the
//! OpenAPI document ([`openapi`]).

pub mod ack;
pub mod admission;
pub mod fhir_api;
pub mod handlers;
pub mod keyed;
pub mod middleware;
pub mod openapi;
pub mod outcome;
pub mod reads;
