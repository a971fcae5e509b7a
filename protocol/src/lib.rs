//! The wire layer of the coordinator: RESP2/RESP3 framing on `redis-protocol`, guarded by a limit
//! scanner, and a typed model of the sentinel commands, replies and events. Nothing here touches a
//! socket: the codecs work on buffers, so the same code serves the coordinator, the lab and the fuzzer.

pub mod codec;
pub mod command;
pub mod event;
pub mod info;
pub mod limits;
pub mod reply;
pub mod role;
pub mod sentinel;
