//! The process: one address claimed once ([`listen`]), one glommio executor pinned
//! per CPU with signals, the watchdog and exit statuses ([`server`]), one shard's life
//! from recovery to drain ([`shard`]), the answers a shard gives its peers' keyed
//! writes ([`owner`]), and SIGHUP reloads ([`reload`]).

pub mod listen;
pub mod owner;
pub mod reload;
pub mod server;
pub mod shard;
