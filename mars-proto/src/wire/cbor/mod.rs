//! A minimal CBOR (RFC 8949) layer: a strict reader for hostile input and a
//! writer that emits the definite, shortest forms the reference expects.
//!
//! Hand-written rather than built on serde so that every refusal can name the
//! field it happened in, every length is checked against the bytes present
//! *before* anything is allocated, and decoding borrows from the input.

mod read;
mod write;

pub use read::CborError;
pub(crate) use read::{ByteField, FixedField, Item, KeySet, MapKey, Reader, unexpected};
pub(crate) use write::Writer;
