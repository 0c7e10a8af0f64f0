//! What a handler leaves the connection to do once it has run: keep the connection or
//! close it, wait for a record to be durable before the response may leave, or finish
//! a read that needs every shard, or a keyed write that needs its key's owner shard
//! (either writes the response itself).

use std::time::Instant;

use crate::base::logger::Peer;
use crate::domain::keys::KeyedWrite;
use crate::http::parse::Head;
use crate::http::request_id::RequestId;
use crate::log::Durability;
use crate::shard::context::Context;

/// What the connection does after a handler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub keep_alive: bool,
    /// Write the response only once this record sequence number is durable.
    pub durable: Option<u64>,
    /// No response written yet: the connection awaits this cross-shard read, which
    /// writes it (see [`crate::api::reads`]).
    pub deferred: Option<Deferred>,
}

impl Outcome {
    pub fn close() -> Outcome {
        Outcome {
            keep_alive: false,
            durable: None,
            deferred: None,
        }
    }

    /// Defers `read` (for `principal`) to [`crate::api::reads`], which answers it once
    /// the connection awaits it.
    pub fn deferred_read(read: Read, principal: &str, head: &Head<'_>) -> Outcome {
        Outcome {
            deferred: Some(Deferred::new(Work::Read(read), principal.to_string())),
            ..Outcome::after(head)
        }
    }

    /// The connection continues as the request asked.
    pub fn after(head: &Head<'_>) -> Outcome {
        Outcome {
            keep_alive: head.keep_alive,
            durable: None,
            deferred: None,
        }
    }

    /// After a record appended as `seq`: the connection continues as the request
    /// asked, and with durability `sync` the response waits for the record's sync.
    pub fn appended(ctx: &Context, head: &Head<'_>, seq: u64) -> Outcome {
        let sync = ctx
            .log()
            .is_some_and(|log| log.durability() == Durability::Sync);
        Outcome {
            durable: sync.then_some(seq),
            ..Outcome::after(head)
        }
    }
}

/// A read that needs every shard, authorized, with its parameters owned so they
/// outlive the request's borrow while the answers come in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred {
    pub work: Work,
    /// For the access log.
    pub principal: String,
    /// The request as the onion began it (it sets this).
    pub call: Option<Call>,
}

impl Deferred {
    pub fn new(work: Work, principal: String) -> Deferred {
        Deferred {
            work,
            principal,
            call: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    Subjects {
        project: String,
        site: String,
    },
    Summary {
        project: String,
    },
    /// `/readyz`, once this shard is ready: are all the others?
    Ready,
    /// `/metrics`: every shard's counters.
    Metrics,
    /// `/api/v1/log/heads`: every shard's chain head on stable storage.
    Heads,
    /// One record by its id, for this principal; `fhir`: a QuestionnaireResponse, read
    /// and refused the FHIR way.
    Record {
        shard: usize,
        seq: u64,
        principal: String,
        fhir: bool,
    },
}

/// What the onion knows of a request beyond its bytes: when it began (for its
/// duration), its id (echoed and logged) and the client's address (logged).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub began: Instant,
    pub id: RequestId,
    pub peer: Peer,
}

impl Call {
    /// Begins `head` now: its id is the caller's `X-Request-Id` when usable, else the
    /// shard's next.
    /// From a trusted proxy, the client is the `X-Forwarded-For` address it appended.
    pub fn begin(ctx: &Context, head: &Head<'_>, peer: Peer) -> Call {
        let peer = match head.forwarded_for.filter(|_| peer.proxy) {
            Some(chain) => ctx
                .config()
                .forwarded_client(chain)
                .map_or(peer, Peer::forwarded),
            None => peer,
        };
        let id = head
            .request_id
            .and_then(RequestId::from_header)
            .unwrap_or_else(|| ctx.next_request_id());
        Call {
            began: Instant::now(),
            id,
            peer,
        }
    }
}

/// What a deferred request waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Work {
    /// A read across every shard.
    Read(Read),
    /// A submit, tag or FHIR create with an idempotency key, for its key's owner shard
    /// to store.
    Keyed(KeyedWrite),
}
