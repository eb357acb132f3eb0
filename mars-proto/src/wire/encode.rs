//! Encoding: maps keyed by field name in the reference's field order, byte
//! fields as CBOR byte strings (about half the size of the reference's
//! integer arrays, and accepted by it).

use super::cbor::Writer;
use super::frame::{FrameHeader, HEADER_LEN, MessageType, MsgId};
use super::message::*;
use crate::descriptor::Descriptor;
use crate::hash::Hash;
use crate::identity::Identity;
use crate::time::Timestamp;

pub(crate) fn message_body(m: &Message, out: &mut Vec<u8>) {
    let mut w = Writer::new(out);
    match m {
        Message::Ping(p) => {
            w.map(2);
            sender(&mut w, &p.sender, &p.sender_addr);
        }
        Message::Pong(p) => {
            w.map(3);
            sender(&mut w, &p.sender, &p.sender_addr);
            w.key("observed_addr");
            node_addr(&mut w, &p.observed_addr);
        }
        Message::Store(s) => {
            w.map(3);
            sender(&mut w, &s.sender, &s.sender_addr);
            w.key("descriptor");
            descriptor(&mut w, &s.descriptor);
        }
        Message::StoreAck(a) => {
            w.map(1 + a.reason.is_some() as usize);
            w.key("stored");
            w.bool(a.stored);
            if let Some(r) = &a.reason {
                w.key("reason");
                w.text(r);
            }
        }
        Message::FindNode(f) => {
            w.map(3);
            sender(&mut w, &f.sender, &f.sender_addr);
            w.key("target");
            hash(&mut w, &f.target);
        }
        Message::FindNodeResult(r) => {
            w.map(1);
            w.key("nodes");
            nodes(&mut w, &r.nodes);
        }
        Message::FindValue(f) => {
            w.map(4 + f.filters.is_some() as usize);
            sender(&mut w, &f.sender, &f.sender_addr);
            w.key("key");
            hash(&mut w, &f.key);
            w.key("max_results");
            w.uint(f.max_results as u64);
            if let Some(fl) = &f.filters {
                w.key("filters");
                filters(&mut w, fl);
            }
        }
        Message::FindValueResult(r) => {
            w.map(1);
            match r {
                FindValueResult::Descriptors(ds) => {
                    w.key("descriptors");
                    w.array(ds.len());
                    for d in ds {
                        descriptor(&mut w, d);
                    }
                }
                FindValueResult::Nodes(ns) => {
                    w.key("nodes");
                    nodes(&mut w, ns);
                }
            }
        }
    }
}

/// Appends a whole FIND_VALUE_RESULT frame carrying `descriptors`, encoded
/// from borrowed descriptors (a server answers from its store without
/// copying payloads into a `Message` first). Same bytes as encoding
/// `FindValueResult::Descriptors` of the same descriptors.
pub fn encode_descriptors_result<'a>(
    msg_id: MsgId,
    descriptors: impl ExactSizeIterator<Item = &'a Descriptor> + Clone,
    out: &mut Vec<u8>,
) {
    let hint: usize = descriptors.clone().map(descriptor_size_hint).sum();
    list_frame(
        (msg_id, MessageType::FindValueResult),
        "descriptors",
        hint,
        descriptors,
        out,
        descriptor,
    );
}

/// One entry of a node list, borrowed for encoding: identity, address and
/// last-seen time, as a [`NodeInfo`] holds them.
pub type NodeRef<'a> = (&'a Identity, &'a NodeAddr, Timestamp);

/// Appends a whole FIND_NODE_RESULT frame listing `nodes`, encoded from
/// borrowed entries (a server answers from its routing table without
/// copying them into a `Message` first). Same bytes as encoding a
/// [`FindNodeResult`] of the same nodes.
pub fn encode_find_node_result<'a>(
    msg_id: MsgId,
    nodes: impl ExactSizeIterator<Item = NodeRef<'a>> + Clone,
    out: &mut Vec<u8>,
) {
    nodes_result(msg_id, MessageType::FindNodeResult, nodes, out)
}

/// Appends a whole FIND_VALUE_RESULT frame listing `nodes` (the "no
/// descriptors here, ask these" answer), like
/// [`encode_find_node_result`]. Same bytes as encoding
/// `FindValueResult::Nodes` of the same nodes.
pub fn encode_find_value_nodes<'a>(
    msg_id: MsgId,
    nodes: impl ExactSizeIterator<Item = NodeRef<'a>> + Clone,
    out: &mut Vec<u8>,
) {
    nodes_result(msg_id, MessageType::FindValueResult, nodes, out)
}

fn nodes_result<'a>(
    msg_id: MsgId,
    msg_type: MessageType,
    nodes: impl ExactSizeIterator<Item = NodeRef<'a>> + Clone,
    out: &mut Vec<u8>,
) {
    let hint: usize = nodes.clone().map(|(_, a, _)| node_size_hint(a)).sum();
    list_frame(
        (msg_id, msg_type),
        "nodes",
        hint,
        nodes,
        out,
        |w, (id, addr, seen)| node(w, id, addr, seen),
    );
}

/// Appends a whole frame whose body is `{<key>: [items…]}`, the shape of
/// both list answers; `hint` is the items' encoded size, for one reserve.
fn list_frame<T>(
    (msg_id, msg_type): (MsgId, MessageType),
    key: &str,
    hint: usize,
    items: impl ExactSizeIterator<Item = T>,
    out: &mut Vec<u8>,
    mut item: impl FnMut(&mut Writer<'_>, T),
) {
    out.reserve(HEADER_LEN + 24 + hint);
    let start = out.len();
    out.extend_from_slice(&[0u8; HEADER_LEN]);
    let mut w = Writer::new(out);
    w.map(1);
    w.key(key);
    w.array(items.len());
    for i in items {
        item(&mut w, i);
    }
    FrameHeader::patch(out, start, msg_type, msg_id);
}

/// Bytes that hold one encoded node-list entry (fixed part generously).
pub(crate) fn node_size_hint(a: &NodeAddr) -> usize {
    130 + a.protocol_bytes().len() + a.address_bytes().len()
}

/// Bytes that hold one encoded descriptor: its variable fields exactly,
/// the fixed part (keys, hashes, identity, signature) generously.
pub(crate) fn descriptor_size_hint(d: &Descriptor) -> usize {
    420 + d.topic.len() + d.payload.len() + 48 * d.routing_keys.len()
}

/// Appends one descriptor as the map the wire carries (not the canonical
/// form hashed for its id).
pub fn descriptor_into(d: &Descriptor, out: &mut Vec<u8>) {
    descriptor(&mut Writer::new(out), d)
}

fn sender(w: &mut Writer<'_>, id: &Identity, addr: &NodeAddr) {
    w.key("sender");
    identity(w, id);
    w.key("sender_addr");
    node_addr(w, addr);
}

/// `{algorithm: 1, public_key: h'…'}` up to the key bytes: an identity
/// is always an Ed25519 key of 32 bytes, so its head is fixed.
const IDENTITY_HEAD: &[u8] = b"\xa2\x69algorithm\x01\x6apublic_key\x58\x20";

fn identity(w: &mut Writer<'_>, id: &Identity) {
    debug_assert_eq!(id.algorithm() as u64, 1);
    w.raw(IDENTITY_HEAD);
    w.raw(id.public_key());
}

fn hash(w: &mut Writer<'_>, h: &Hash) {
    w.map(2);
    w.key("algorithm");
    w.uint(h.algorithm().code() as u64);
    w.key("digest");
    w.bytes(h.digest());
}

fn node_addr(w: &mut Writer<'_>, a: &NodeAddr) {
    w.raw(b"\xa2\x68protocol");
    w.text_utf8(a.protocol_bytes());
    w.raw(b"\x67address");
    w.text_utf8(a.address_bytes());
}

fn nodes(w: &mut Writer<'_>, ns: &[NodeInfo]) {
    w.array(ns.len());
    for n in ns {
        node(w, &n.identity, &n.addr, n.last_seen);
    }
}

/// One node-list entry, for the decoder's tests.
#[cfg(test)]
pub(crate) fn node_for_tests(w: &mut Writer<'_>, n: &NodeInfo) {
    node(w, &n.identity, &n.addr, n.last_seen)
}

/// The fixed bytes of a node-list entry are written as runs (node lists
/// are most of what a node encodes); the vectors check the result byte for
/// byte against the general form.
fn node(w: &mut Writer<'_>, id: &Identity, addr: &NodeAddr, last_seen: Timestamp) {
    w.raw(b"\xa3\x68identity");
    identity(w, id);
    w.raw(b"\x64addr");
    node_addr(w, addr);
    w.raw(b"\x69last_seen");
    w.uint(last_seen.as_micros());
}

fn filters(w: &mut Writer<'_>, f: &Filters) {
    let n = f.schema_hash.is_some() as usize
        + f.min_timestamp.is_some() as usize
        + f.publisher.is_some() as usize;
    w.map(n);
    if let Some(h) = &f.schema_hash {
        w.key("schema_hash");
        hash(w, h);
    }
    if let Some(t) = f.min_timestamp {
        w.key("min_timestamp");
        w.uint(t.as_micros());
    }
    if let Some(p) = &f.publisher {
        w.key("publisher");
        identity(w, p);
    }
}

fn descriptor(w: &mut Writer<'_>, d: &Descriptor) {
    w.map(10);
    w.key("schema_hash");
    hash(w, &d.schema_hash);
    w.key("topic");
    w.text(&d.topic);
    w.key("payload");
    w.bytes(&d.payload);
    w.key("publisher");
    identity(w, &d.publisher);
    w.key("timestamp");
    w.uint(d.timestamp.as_micros());
    w.key("sequence");
    w.uint(d.sequence);
    w.key("ttl");
    w.uint(d.ttl as u64);
    w.key("routing_keys");
    w.array(d.routing_keys.len());
    for k in &d.routing_keys {
        hash(w, k);
    }
    w.key("id");
    hash(w, &d.id);
    w.key("signature");
    w.bytes(d.signature.as_bytes());
}
