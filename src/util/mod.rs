//! Helpers shared by the rest of the crate, one concern per file: files written safely
//! ([`fs`]) and Go-style durations ([`duration`]).

pub mod duration;
pub mod fs;
