//! Sockets: the shard's `SO_REUSEPORT` listener and its connection limit
//! ([`accept`]), and a connection owning its buffers ([`conn`]): read, frame,
//! dispatch into [`crate::api`], await durability, one write per batch of answers;
//! timeouts and the refusals that end a connection.

pub mod accept;
pub mod conn;
