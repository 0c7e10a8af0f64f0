//! The rules of the domain, with no shard, socket or executor in sight: principals,
//! tokens and project scope ([`auth`]), per-principal rate limits ([`ratelimit`]),
//! body rules and their messages ([`validate`], with [`malformed`] saying where a body
//! is not JSON), FHIR R4 QuestionnaireResponse rules ([`fhir`]), the idempotency-key
//! table ([`keys`]), the read model ([`index`], fed from [`pending`]) and how shards'
//! answers merge ([`merge`]). Another program can reuse them as they are (the axum
//! baseline does).

pub mod auth;
pub mod fhir;
pub mod index;
pub mod keys;
pub mod malformed;
pub mod merge;
pub mod pending;
pub mod ratelimit;
pub mod validate;
