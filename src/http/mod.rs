//! The HTTP API: thin handlers that parse, call an actor or the store, and map errors.
pub mod primitives;
