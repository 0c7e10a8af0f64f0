//! The offline commands' glue and output: `export`, `backup`, `restore`,
//! `retire-shard` and `probe` ([`tools`]), `verify`'s report ([`verify`]), a progress bar
//! over a data directory's logs ([`progress`]), and stdout that ends quietly when its
//! reader leaves ([`out`]). `src/main.rs` parses the command line and calls these.

pub mod out;
pub mod progress;
pub mod tools;
pub mod verify;
