//! Submits, tags and FHIR creates with an idempotency key, stored at most once per
//! (principal, key) whichever shard receives them. The receiving shard has validated
//! and authorized the request ([`crate::api::handlers::write`]); the key's
//! owner shard ([`crate::domain::keys::owner`]) decides. When that is the receiving shard, it
//! decides at once, from the request's own bytes; else the write is copied to the
//! owner over the mesh (one round trip) and answered with what the owner decided:
//!
//! - a new key: stored by the owner, in its log, and answered as an unkeyed write is
//!   (a FHIR resource's 201 included);
//! - the same key with the same bytes: the first answer again (same id, same
//!   `receivedAt`) with `Idempotent-Replayed: true`, after waiting, if the first is
//!   still being synced, for it to be durable; nothing new is stored;
//! - the same key with other bytes: 422.
//!
//! The owner is the only shard that reads or changes its keys, so no lock is needed
//! and two copies racing on two shards still meet in one place. The owner answers a
//! peer from the message loop itself ([`crate::runtime::owner`]); only a wait for the disk
//! (durability `sync`) takes a task of its own.

use crate::api::ack::{acknowledge, fhir_created};
use crate::api::outcome::{Deferred, Outcome, Work};
use crate::api::refusal::{refuse_to, Refusal};
use crate::domain::keys::{self, Entry, Keyed, KeyedAnswer, KeyedWrite};
use crate::http::parse::Head;
use crate::http::request::Request;
use crate::http::response::{Header, Reply};
use crate::log::record::Kind;
use crate::log::Durability;
use crate::log::LogError;
use crate::shard::context::Context;

/// The request's `Idempotency-Key`, if it has one; `Err` (why, for a 400) when it is
/// not usable.
pub fn header_key<'h>(head: &Head<'h>) -> Result<Option<&'h str>, &'static str> {
    const BAD: &str = "Idempotency-Key must be 1 to 126 visible ASCII characters";
    match head.idempotency_key {
        None => Ok(None),
        Some(value) => keys::valid_header_key(value).map(Some).ok_or(BAD),
    }
}

/// Defers a keyed write to its key's owner shard, which answers it ([`answer`]).
pub fn defer(head: &Head<'_>, write: KeyedWrite) -> Outcome {
    let principal = write.borrowed().principal.to_owned();
    Outcome {
        deferred: Some(Deferred::new(Work::Keyed(write), principal)),
        ..Outcome::after(head)
    }
}

/// Whether this shard owns `write`'s key (and decides it without a message).
pub fn owned_here(ctx: &Context, write: &Keyed<'_>) -> bool {
    keys::owner(write.principal, write.key, ctx.shards()) == ctx.shard()
}

/// On a receiving shard that does not own the key: has `write` stored by its owner
/// (one round trip over the mesh) and answers `request`.
pub async fn answer(
    ctx: &Context,
    write: KeyedWrite,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) {
    let (borrowed, key_in_body) = (write.borrowed(), write.key_in_body);
    let owner = keys::owner(borrowed.principal, borrowed.key, ctx.shards());
    let answer = match ctx.peers() {
        Some(peers) => match peers.keyed(owner, write).await {
            Ok(answer) => answer,
            Err(message) => return refuse_to(reply, &request.head, Refusal::Unavailable(message)),
        },
        None => KeyedAnswer::Refused(LogError::Closed),
    };
    respond(reply, request, answer, key_in_body);
}

/// Writes the response to `request` for what the owner decided: a FHIR resource's
/// 201, else the v1 200; a replay is the first answer again, marked.
pub fn respond(
    reply: &mut Reply<'_>,
    request: &Request<'_>,
    answer: KeyedAnswer,
    key_in_body: bool,
) {
    let stored = |reply: &mut Reply<'_>, e: Entry, extra: Option<Header<'_>>| {
        if e.kind == Kind::Fhir {
            fhir_created(reply, (e.shard, e.seq, e.received_ns), request, extra);
        } else {
            acknowledge(reply, e.kind, e.shard, e.seq, e.received_ns, extra);
        }
    };
    match answer {
        KeyedAnswer::Stored(e) => stored(reply, e, None),
        KeyedAnswer::Replayed(e) => {
            let replayed = Some((&b"Idempotent-Replayed"[..], &b"true"[..]));
            stored(reply, e, replayed)
        }
        KeyedAnswer::Conflict => {
            refuse_to(reply, &request.head, Refusal::KeyConflict { key_in_body });
        }
        KeyedAnswer::Refused(e) => refuse_to(reply, &request.head, Refusal::Storage(e)),
    }
}

/// The owner's decision about a keyed write, made at once; the answer may leave only
/// once `durable` (a sequence number of the owner's log, with durability `sync`) is.
pub struct Decision {
    pub answer: KeyedAnswer,
    pub durable: Option<u64>,
}

/// On the owner shard: stores `write` unless its key is known, and says what happened.
/// A report stored now is counted into the read index, once durable, by the fields
/// its validation read.
pub fn decide(ctx: &Context, write: &Keyed<'_>) -> Decision {
    let Some(log) = ctx.log() else {
        return Decision {
            answer: KeyedAnswer::Refused(LogError::Closed),
            durable: None,
        };
    };
    let body_hash = keys::body_hash(write.body);
    let shard = ctx.shard();
    // Known at once: a retry arriving during the sync waits for the same record.
    let answer = ctx
        .keys()
        .claim(write.principal, write.key, write.kind, body_hash, || {
            let header_key = (!write.key_in_body).then_some(write.key);
            let appended = log.append(
                write.kind,
                write.principal,
                header_key,
                write.received_ns,
                write.body,
            )?;
            Ok(Entry {
                kind: write.kind,
                shard: shard as u16,
                seq: appended.seq,
                received_ns: appended.received_ns,
                body_hash,
            })
        });
    if let (KeyedAnswer::Stored(e), Some(report)) = (&answer, write.report) {
        ctx.index().borrow_mut().expect_report(e.seq, report);
    }
    // A replayed record stored by another shard (before the number of shards changed)
    // is durable already: it was recovered from that shard's log.
    let durable = match answer {
        KeyedAnswer::Stored(e) | KeyedAnswer::Replayed(e) => Some(e.seq)
            .filter(|_| usize::from(e.shard) == shard && log.durability() == Durability::Sync),
        KeyedAnswer::Conflict | KeyedAnswer::Refused(_) => None,
    };
    Decision { answer, durable }
}
