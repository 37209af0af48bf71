//! Helpers shared by the rest of the crate, one concern per file: files written safely
//! ([`fs`]), records made durable in batches ([`group_commit`]), Go-style durations
//! ([`duration`]) and retrying with backoff ([`retry`]).

pub mod duration;
pub mod fs;
pub mod group_commit;
pub mod retry;
