//! Submits and tags with an idempotency key, stored at most once per (principal, key)
//! whichever shard receives them. The receiving shard has validated and authorized the
//! request ([`crate::handlers`]); here it hands the write to the key's owner shard
//! ([`crate::keys::owner`]), itself or a peer over the mesh (one round trip), and
//! answers with what the owner decided:
//!
//! - a new key: stored by the owner, in its log, and answered as a plain submit;
//! - the same key with the same bytes: the first answer again (same id, same
//!   `receivedAt`) with `Idempotent-Replayed: true`, after waiting, if the first is
//!   still being synced, for it to be durable; nothing new is stored;
//! - the same key with other bytes: 422.
//!
//! The owner is the only shard that reads or changes its keys, so no lock is needed
//! and two copies racing on two shards still meet in one place.

use std::rc::Rc;

use futures_channel::oneshot;

use crate::config::Durability;
use crate::context::Context;
use crate::handlers::{acknowledge, refuse_storage_reply};
use crate::http::response::{Reply, Status};
use crate::keys::{self, Entry, KeyedAnswer, KeyedWrite, Lookup};
use crate::log::LogError;
use crate::peers::Owner;

/// On the receiving shard: has `write` stored by its key's owner and answers.
pub async fn answer(ctx: &Context, write: KeyedWrite, reply: &mut Reply<'_>) {
    let shards = ctx.peers().map_or(1, |peers| peers.shards());
    let owner = keys::owner(&write.principal, &write.key, shards);
    let key_in_body = write.key_in_body;
    let answer = if owner == ctx.shard() {
        store(ctx, write).await
    } else {
        match ctx.peers() {
            Some(peers) => match peers.keyed(owner, write).await {
                Ok(answer) => answer,
                Err(message) => {
                    reply.error(Status::ServiceUnavailable, &[message.as_bytes()], None);
                    return;
                }
            },
            None => KeyedAnswer::Refused(LogError::Closed),
        }
    };
    match answer {
        KeyedAnswer::Stored(e) => acknowledge(reply, e.kind, e.shard, e.seq, e.received_ns, None),
        KeyedAnswer::Replayed(e) => {
            let replayed = Some((&b"Idempotent-Replayed"[..], &b"true"[..]));
            acknowledge(reply, e.kind, e.shard, e.seq, e.received_ns, replayed)
        }
        KeyedAnswer::Conflict => {
            let what: &[u8] = if key_in_body {
                b"submissionId"
            } else {
                b"Idempotency-Key"
            };
            reply.error(
                Status::UnprocessableContent,
                &[what, b" reused with a different body"],
                None,
            );
        }
        KeyedAnswer::Refused(e) => refuse_storage_reply(reply, e),
    }
}

/// On the owner shard: stores `write` unless its key is known, and says what happened.
/// With durability `sync` the answer comes once the record (new or earlier) is durable.
pub async fn store(ctx: &Context, write: KeyedWrite) -> KeyedAnswer {
    let Some(log) = ctx.log() else {
        return KeyedAnswer::Refused(LogError::Closed);
    };
    let body_hash = keys::body_hash(&write.body);
    let lookup = ctx
        .keys()
        .lookup(&write.principal, &write.key, write.kind, body_hash);
    let (entry, replayed) = match lookup {
        Lookup::Conflict => return KeyedAnswer::Conflict,
        Lookup::Replay(entry) => (entry, true),
        Lookup::New => {
            let header_key = (!write.key_in_body).then_some(write.key.as_str());
            let appended = log.append(
                write.kind,
                &write.principal,
                header_key,
                write.received_ns,
                &write.body,
            );
            let seq = match appended {
                Ok(seq) => seq,
                Err(e) => return KeyedAnswer::Refused(e),
            };
            let entry = Entry {
                kind: write.kind,
                shard: ctx.shard() as u16,
                seq,
                received_ns: write.received_ns,
                body_hash,
            };
            // Known at once: a retry arriving during the sync waits for it below.
            ctx.keys().insert(&write.principal, &write.key, entry);
            (entry, false)
        }
    };
    // A replayed record stored by another shard (before the number of shards changed)
    // is durable already: it was recovered from that shard's log.
    let local = usize::from(entry.shard) == ctx.shard();
    if local && log.durability() == Durability::Sync {
        if let Err(e) = log.durable(entry.seq).await {
            return KeyedAnswer::Refused(e);
        }
    }
    if replayed {
        KeyedAnswer::Replayed(entry)
    } else {
        KeyedAnswer::Stored(entry)
    }
}

/// A shard as the owner of its keys, for the messages its peers send it.
pub struct ShardOwner(pub Rc<Context>);

impl Owner for ShardOwner {
    fn healthy(&self) -> bool {
        self.0.is_ready()
    }

    fn keyed(&self, write: KeyedWrite, reply: oneshot::Sender<KeyedAnswer>) {
        let ctx = Rc::clone(&self.0);
        crate::task::spawn("keyed write", async move {
            let _ = reply.send(store(&ctx, write).await);
        })
        .detach();
    }

    fn take_keys(&self, keys: Vec<(Box<str>, Entry)>) {
        self.0.keys().take_in(keys);
    }
}
