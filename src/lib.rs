//! TORchat's parts. They form a library so that the fuzz targets (tests/fuzz) can reach
//! the code that reads bytes from sockets and files; main.rs wires them together.

pub mod clock;
pub mod delivery;
pub mod logs;
pub mod onion;
pub mod protocol;
pub mod reactor;
pub mod store;
