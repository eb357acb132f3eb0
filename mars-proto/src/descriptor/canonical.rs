//! The canonical CBOR that a descriptor's id hashes.
//!
//! Keys sort by RFC 8949 §4.2.1 (shorter encodings first, then bytewise):
//! ttl, topic, payload, sequence, publisher, timestamp, schema_hash,
//! routing_keys. Hashes and identities are `[uint algorithm, bstr bytes]`
//! here, unlike the `{algorithm, digest}` maps of the message bodies.

use super::Descriptor;
use crate::wire::CborWriter;

pub(super) fn encode(d: &Descriptor) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(160 + d.payload.len() + d.topic.len() + 36 * d.routing_keys.len());
    let mut w = CborWriter::new(&mut out);
    w.map(8);
    w.key("ttl");
    w.uint(d.ttl as u64);
    w.key("topic");
    w.text(&d.topic);
    w.key("payload");
    w.bytes(&d.payload);
    w.key("sequence");
    w.uint(d.sequence);
    w.key("publisher");
    w.array(2);
    w.uint(d.publisher.algorithm() as u64);
    w.bytes(d.publisher.public_key());
    w.key("timestamp");
    w.uint(d.timestamp.as_micros());
    w.key("schema_hash");
    pair(
        &mut w,
        d.schema_hash.algorithm().code(),
        d.schema_hash.digest(),
    );
    w.key("routing_keys");
    w.array(d.routing_keys.len());
    for k in &d.routing_keys {
        pair(&mut w, k.algorithm().code(), k.digest());
    }
    out
}

fn pair(w: &mut CborWriter<'_>, alg: u8, digest: &[u8]) {
    w.array(2);
    w.uint(alg as u64);
    w.bytes(digest);
}
