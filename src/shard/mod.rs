//! What one shard owns and how it speaks to the others: the [`context::Context`] a
//! request runs against (config, log, index, keys, limiter, counters), and the
//! channel mesh between shards with its messages ([`peers`]). Nothing here is shared
//! between cores: a peer's state is reached only by a message.

pub mod context;
pub mod peers;
