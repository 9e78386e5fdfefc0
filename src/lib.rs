//! TORchat's parts (AUDIT.md has the map). They form a library so that the fuzz
//! targets (tests/fuzz) reach the parsers; main.rs wires them together.
#![forbid(unsafe_code)]

pub mod delivery;
pub mod journal;
pub mod node;
pub mod onion;
pub mod reactor;
pub mod sys;
pub mod wire;
