//! (framing: being written)
