//! One request, from its head to its answer, against a shard's
//! [`Context`](crate::shard::context::Context): admission at head time
//! ([`admission`]: load shedding, rate limits), the onion ([`middleware`]: recovery,
//! access log, auth, the route's role rule), the endpoints ([`handlers`], by family,
//! the writes through one pipeline; reads across shards in [`reads`], keyed writes in
//! [`keyed`]), the answers to a write ([`ack`]), every refusal and how it is said
//! ([`refusal`]), what the connection does next ([`outcome`]), and the OpenAPI
//! document ([`openapi`]).

// A refusal holds a body's broken rules inline ([`crate::domain::validate::Invalids`]),
// so refusing allocates nothing: it is moved, not boxed.
#![allow(clippy::result_large_err)]

pub mod ack;
pub mod admission;
pub mod handlers;
pub mod keyed;
pub mod middleware;
pub mod openapi;
pub mod outcome;
pub mod reads;
pub mod refusal;
