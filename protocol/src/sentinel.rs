//! (typed model: being written)
