//! Strict decoding of message bodies into typed messages.
//!
//! Every map is definite, free of duplicate keys, and may carry unknown keys
//! (skipped, for forward compatibility). Byte fields are accepted as byte
//! strings or as arrays of small integers. Lists are bounded by
//! [`DecodeLimits`] before anything is allocated for them.

use std::borrow::Cow;

use super::cbor::{ByteField, CborError, FixedField, Item, KeySet, MapKey, Reader, unexpected};
use super::error::{DecodeError, Field};
use super::frame::{Frame, MessageType, MsgId};
use super::limits::{DecodeLimits, MAX_ADDRESS_LEN, MAX_PROTOCOL_LEN, MAX_REASON_LEN};
use super::message::*;
use crate::descriptor::Descriptor;
use crate::hash::{Hash, HashAlgorithm, MAX_DIGEST_LEN};
use crate::identity::{Identity, Signature};
use crate::time::Timestamp;

type Result<T> = std::result::Result<T, DecodeError>;

const DEPTH_LIMIT: u32 = 16;

/// Decodes a body of type `t` into a whole [`Frame`].
///
/// One function per message, each checking for trailing bytes before it
/// builds the frame it returns, so the frame is written straight into the
/// caller's slot: moving a 150-byte frame through two or three `Result`s was
/// a quarter of a STORE_ACK decode, and one function for all eight kept the
/// small messages' path spread over a 20 KiB body.
#[inline]
pub(crate) fn frame_body(
    msg_id: MsgId,
    t: MessageType,
    body: &[u8],
    limits: &DecodeLimits,
) -> Result<Frame> {
    let mut r = Reader::new(body);
    match t {
        MessageType::Ping => ping(&mut r, msg_id),
        MessageType::Pong => pong(&mut r, msg_id),
        MessageType::Store => store(&mut r, msg_id, limits),
        MessageType::StoreAck => store_ack(&mut r, msg_id),
        MessageType::FindNode => find_node(&mut r, msg_id),
        MessageType::FindNodeResult => find_node_result(&mut r, msg_id, limits),
        MessageType::FindValue => find_value(&mut r, msg_id),
        MessageType::FindValueResult => find_value_result(&mut r, msg_id, limits),
    }
}

/// PING: `sender`, `sender_addr`.
fn ping(r: &mut Reader<'_>, msg_id: MsgId) -> Result<Frame> {
    let (mut sender, mut addr) = (None, None);
    map(r, "ping", &["sender", "sender_addr"], 0, |r, i| {
        match i {
            0 => sender = Some(identity(r, "ping.sender", 1)?),
            _ => addr = Some(node_addr(r, "ping.sender_addr", 1)?),
        }
        Ok(())
    })?;
    end(r)?;
    let message = Message::Ping(Ping {
        sender: req(sender, "ping", "sender")?,
        sender_addr: req(addr, "ping", "sender_addr")?,
    });
    Ok(Frame { msg_id, message })
}

/// PONG: `sender`, `sender_addr`, `observed_addr`.
fn pong(r: &mut Reader<'_>, msg_id: MsgId) -> Result<Frame> {
    let (mut sender, mut addr, mut observed) = (None, None, None);
    map(
        r,
        "pong",
        &["sender", "sender_addr", "observed_addr"],
        0,
        |r, i| {
            match i {
                0 => sender = Some(identity(r, "pong.sender", 1)?),
                1 => addr = Some(node_addr(r, "pong.sender_addr", 1)?),
                _ => observed = Some(node_addr(r, "pong.observed_addr", 1)?),
            }
            Ok(())
        },
    )?;
    end(r)?;
    let message = Message::Pong(Pong {
        sender: req(sender, "pong", "sender")?,
        sender_addr: req(addr, "pong", "sender_addr")?,
        observed_addr: req(observed, "pong", "observed_addr")?,
    });
    Ok(Frame { msg_id, message })
}

/// STORE: `sender`, `sender_addr`, `descriptor` (not validated here).
fn store(r: &mut Reader<'_>, msg_id: MsgId, limits: &DecodeLimits) -> Result<Frame> {
    let (mut sender, mut addr, mut desc) = (None, None, None);
    map(
        r,
        "store",
        &["sender", "sender_addr", "descriptor"],
        0,
        |r, i| {
            match i {
                0 => sender = Some(identity(r, "store.sender", 1)?),
                1 => addr = Some(node_addr(r, "store.sender_addr", 1)?),
                _ => desc = Some(descriptor(r, "store.descriptor", limits, 1)?),
            }
            Ok(())
        },
    )?;
    end(r)?;
    let message = Message::Store(Store {
        sender: req(sender, "store", "sender")?,
        sender_addr: req(addr, "store", "sender_addr")?,
        descriptor: Box::new(req(desc, "store", "descriptor")?),
    });
    Ok(Frame { msg_id, message })
}

/// STORE_ACK: `stored`, and `reason` when refused.
fn store_ack(r: &mut Reader<'_>, msg_id: MsgId) -> Result<Frame> {
    let (mut stored, mut reason) = (None, None);
    map(r, "store_ack", &["stored", "reason"], 0, |r, i| {
        match i {
            0 => stored = Some(r.expect_bool().map_err(cbor("store_ack", "stored"))?),
            _ => reason = Some(text(r, "store_ack", "reason", MAX_REASON_LEN)?.to_owned()),
        }
        Ok(())
    })?;
    end(r)?;
    let message = Message::StoreAck(StoreAck {
        stored: req(stored, "store_ack", "stored")?,
        reason,
    });
    Ok(Frame { msg_id, message })
}

/// FIND_NODE: `sender`, `sender_addr`, `target`.
fn find_node(r: &mut Reader<'_>, msg_id: MsgId) -> Result<Frame> {
    let (mut sender, mut addr, mut target) = (None, None, None);
    map(
        r,
        "find_node",
        &["sender", "sender_addr", "target"],
        0,
        |r, i| {
            match i {
                0 => sender = Some(identity(r, "find_node.sender", 1)?),
                1 => addr = Some(node_addr(r, "find_node.sender_addr", 1)?),
                _ => target = Some(hash(r, "find_node.target", 1)?),
            }
            Ok(())
        },
    )?;
    end(r)?;
    let message = Message::FindNode(FindNode {
        sender: req(sender, "find_node", "sender")?,
        sender_addr: req(addr, "find_node", "sender_addr")?,
        target: req(target, "find_node", "target")?,
    });
    Ok(Frame { msg_id, message })
}

/// FIND_NODE_RESULT: `nodes`, at most `limits.max_nodes`.
fn find_node_result(r: &mut Reader<'_>, msg_id: MsgId, limits: &DecodeLimits) -> Result<Frame> {
    let mut nodes = None;
    map(r, "find_node_result", &["nodes"], 0, |r, _| {
        nodes = Some(node_list(r, "find_node_result", limits, 1)?);
        Ok(())
    })?;
    end(r)?;
    let message = Message::FindNodeResult(FindNodeResult {
        nodes: req(nodes, "find_node_result", "nodes")?,
    });
    Ok(Frame { msg_id, message })
}

/// FIND_VALUE: `sender`, `sender_addr`, `key`, `max_results`, optional `filters`.
fn find_value(r: &mut Reader<'_>, msg_id: MsgId) -> Result<Frame> {
    let (mut sender, mut addr, mut key, mut max, mut filters) = (None, None, None, None, None);
    map(
        r,
        "find_value",
        &["sender", "sender_addr", "key", "max_results", "filters"],
        0,
        |r, i| {
            match i {
                0 => sender = Some(identity(r, "find_value.sender", 1)?),
                1 => addr = Some(node_addr(r, "find_value.sender_addr", 1)?),
                2 => key = Some(hash(r, "find_value.key", 1)?),
                3 => max = Some(uint(r, "find_value", "max_results", u16::MAX as u64)? as u16),
                _ => filters = Some(filter_set(r, 1)?),
            }
            Ok(())
        },
    )?;
    end(r)?;
    let message = Message::FindValue(FindValue {
        sender: req(sender, "find_value", "sender")?,
        sender_addr: req(addr, "find_value", "sender_addr")?,
        key: req(key, "find_value", "key")?,
        max_results: req(max, "find_value", "max_results")?,
        filters: filters.map(Box::new),
    });
    Ok(Frame { msg_id, message })
}

/// FIND_VALUE_RESULT: exactly one of `descriptors` and `nodes`.
fn find_value_result(r: &mut Reader<'_>, msg_id: MsgId, limits: &DecodeLimits) -> Result<Frame> {
    let (mut descs, mut nodes) = (None, None);
    map(
        r,
        "find_value_result",
        &["descriptors", "nodes"],
        0,
        |r, i| {
            match i {
                0 => descs = Some(descriptor_list(r, limits, 1)?),
                _ => nodes = Some(node_list(r, "find_value_result", limits, 1)?),
            }
            Ok(())
        },
    )?;
    end(r)?;
    let message = Message::FindValueResult(match (descs, nodes) {
        (Some(d), None) => FindValueResult::Descriptors(d),
        (None, Some(n)) => FindValueResult::Nodes(n),
        (Some(_), Some(_)) => return Err(DecodeError::BothDescriptorsAndNodes),
        (None, None) => return Err(DecodeError::NeitherDescriptorsNorNodes),
    });
    Ok(Frame { msg_id, message })
}

/// Refuses bytes after the body's one item.
#[inline]
fn end(r: &Reader<'_>) -> Result<()> {
    match r.remaining() {
        0 => Ok(()),
        extra => Err(DecodeError::TrailingBytes { extra }),
    }
}

/// Decodes one descriptor from a CBOR map in its wire form (as inside a
/// STORE), refusing trailing bytes. The result is *not* validated.
pub fn descriptor_from_cbor(bytes: &[u8], limits: &DecodeLimits) -> Result<Descriptor> {
    if bytes.len() > limits.max_body_len {
        return Err(DecodeError::BodyTooLarge {
            declared: bytes.len() as u64,
            max: limits.max_body_len,
        });
    }
    let mut r = Reader::new(bytes);
    let d = descriptor(&mut r, "descriptor", limits, 0)?;
    if r.remaining() > 0 {
        return Err(DecodeError::TrailingBytes {
            extra: r.remaining(),
        });
    }
    Ok(d)
}

fn cbor(at: &'static str, name: &'static str) -> impl Fn(CborError) -> DecodeError {
    move |source| DecodeError::Cbor {
        field: Field { at, name },
        source,
    }
}

fn req<T>(v: Option<T>, at: &'static str, name: &'static str) -> Result<T> {
    v.ok_or(DecodeError::MissingField {
        field: Field { at, name },
    })
}

/// Walks one definite map, dispatching known keys to `f` by index and
/// skipping (but still checking) unknown ones.
fn map<'a>(
    r: &mut Reader<'a>,
    at: &'static str,
    names: &[&'static str],
    depth: u32,
    mut f: impl FnMut(&mut Reader<'a>, usize) -> Result<()>,
) -> Result<()> {
    let err = cbor(at, "");
    if depth > DEPTH_LIMIT {
        return Err(err(CborError::TooDeep));
    }
    let len = match r.eat_small_map() {
        Some(n) => n,
        None => match r.item().map_err(&err)? {
            Item::Map(n) => n,
            other => return Err(err(unexpected("map", other))),
        },
    };
    let n = r.check_count(len, 2).map_err(&err)?;
    let mut seen = 0u32;
    let mut unknown = KeySet::default();
    for _ in 0..n {
        let key = r.map_key(depth).map_err(&err)?;
        let idx = match &key {
            MapKey::Text(s) => names.iter().position(|k| k.as_bytes() == *s),
            MapKey::Other(_) => None,
        };
        match idx {
            Some(i) => {
                if seen & (1 << i) != 0 {
                    return Err(DecodeError::DuplicateField {
                        field: Field { at, name: names[i] },
                    });
                }
                seen |= 1 << i;
                f(r, i)?;
            }
            None => {
                key.check_utf8().map_err(&err)?;
                unknown.push(key);
                r.skip(depth + 1).map_err(&err)?;
            }
        }
    }
    unknown.check().map_err(&err)
}

/// Opens a definite array of at most `max` entries, each at least
/// `min_entry_bytes` long.
fn array(
    r: &mut Reader<'_>,
    at: &'static str,
    name: &'static str,
    max: usize,
    min_entry_bytes: usize,
) -> Result<usize> {
    let err = cbor(at, name);
    let len = match r.item().map_err(&err)? {
        Item::Array(n) => n,
        other => return Err(err(unexpected("array", other))),
    };
    let n = r.check_count(len, min_entry_bytes).map_err(&err)?;
    if n > max {
        return Err(DecodeError::TooManyItems {
            field: Field { at, name },
            count: n,
            max,
        });
    }
    Ok(n)
}

fn uint(r: &mut Reader<'_>, at: &'static str, name: &'static str, max: u64) -> Result<u64> {
    let v = r.expect_uint().map_err(cbor(at, name))?;
    if v > max {
        return Err(DecodeError::IntegerOutOfRange {
            field: Field { at, name },
            value: v,
            max,
        });
    }
    Ok(v)
}

fn text<'a>(
    r: &mut Reader<'a>,
    at: &'static str,
    name: &'static str,
    max: usize,
) -> Result<&'a str> {
    let s = r.expect_text().map_err(cbor(at, name))?;
    if s.len() > max {
        return Err(DecodeError::TooLong {
            field: Field { at, name },
            len: s.len(),
            max,
        });
    }
    Ok(s)
}

fn var_bytes<'a>(
    r: &mut Reader<'a>,
    at: &'static str,
    name: &'static str,
    max: usize,
) -> Result<Cow<'a, [u8]>> {
    let field = Field { at, name };
    match r.byte_field(max).map_err(cbor(at, name))? {
        ByteField::Bytes(b) => Ok(b),
        ByteField::TooLong(len) => Err(DecodeError::TooLong { field, len, max }),
        ByteField::ElementOutOfRange(value) => Err(DecodeError::ByteOutOfRange { field, value }),
    }
}

fn fixed<const N: usize>(
    r: &mut Reader<'_>,
    at: &'static str,
    name: &'static str,
) -> Result<[u8; N]> {
    let field = Field { at, name };
    match r.fixed_bytes::<N>().map_err(cbor(at, name))? {
        FixedField::Ok(a) => Ok(a),
        FixedField::WrongLength(found) => Err(DecodeError::WrongLength {
            field,
            expected: N,
            found,
        }),
        FixedField::ElementOutOfRange(value) => Err(DecodeError::ByteOutOfRange { field, value }),
    }
}

fn hash(r: &mut Reader<'_>, at: &'static str, depth: u32) -> Result<Hash> {
    let (mut alg, mut digest) = (None, None);
    map(r, at, &["algorithm", "digest"], depth, |r, i| {
        match i {
            0 => alg = Some(uint(r, at, "algorithm", u8::MAX as u64)? as u8),
            _ => digest = Some(var_bytes(r, at, "digest", MAX_DIGEST_LEN)?),
        }
        Ok(())
    })?;
    let alg = req(alg, at, "algorithm")?;
    let digest = req(digest, at, "digest")?;
    Hash::new(HashAlgorithm::from_code(alg), &digest).map_err(|source| DecodeError::BadDigest {
        field: Field { at, name: "digest" },
        source,
    })
}

fn identity(r: &mut Reader<'_>, at: &'static str, depth: u32) -> Result<Identity> {
    // The canonical layout (both implementations write it) by its fixed
    // bytes; anything else takes the general path below.
    const CANONICAL: &[u8] = b"\xa2\x69algorithm\x01\x6apublic_key\x58\x20";
    if depth <= DEPTH_LIMIT {
        let start = r.mark();
        if r.eat(CANONICAL) {
            if let Some(key) = r.eat_array::<32>() {
                return Ok(Identity::from_ed25519_bytes(key));
            }
            r.reset(start);
        }
    }
    let (mut alg, mut key) = (None, None);
    map(r, at, &["algorithm", "public_key"], depth, |r, i| {
        match i {
            0 => alg = Some(r.expect_uint().map_err(cbor(at, "algorithm"))?),
            _ => key = Some(fixed::<32>(r, at, "public_key")?),
        }
        Ok(())
    })?;
    let alg = req(alg, at, "algorithm")?;
    if alg != Identity::ED25519 as u64 {
        return Err(DecodeError::UnsupportedIdentity {
            field: Field {
                at,
                name: "algorithm",
            },
            algorithm: alg,
        });
    }
    Ok(Identity::from_ed25519_bytes(req(key, at, "public_key")?))
}

fn node_addr(r: &mut Reader<'_>, at: &'static str, depth: u32) -> Result<NodeAddr> {
    // The canonical layout by its fixed bytes, as in `identity`.
    if depth <= DEPTH_LIMIT {
        if let Some(addr) = node_addr_canonical(r) {
            return Ok(addr);
        }
    }
    let (mut protocol, mut address) = (None, None);
    map(r, at, &["protocol", "address"], depth, |r, i| {
        match i {
            0 => protocol = Some(text(r, at, "protocol", MAX_PROTOCOL_LEN)?),
            _ => address = Some(text(r, at, "address", MAX_ADDRESS_LEN)?),
        }
        Ok(())
    })?;
    Ok(NodeAddr::new(
        req(protocol, at, "protocol")?,
        req(address, at, "address")?,
    ))
}

/// `{protocol, address}` in that order with one-byte heads, or `None` with
/// nothing consumed (the general decoder then gives the same result).
fn node_addr_canonical(r: &mut Reader<'_>) -> Option<NodeAddr> {
    const PROTOCOL: &[u8] = b"\xa2\x68protocol";
    const ADDRESS: &[u8] = b"\x67address";
    let start = r.mark();
    let mut read = || {
        if !r.eat(PROTOCOL) {
            return None;
        }
        let protocol = r.eat_short_text(MAX_PROTOCOL_LEN)?;
        if !r.eat(ADDRESS) {
            return None;
        }
        let address = r.eat_short_text(MAX_ADDRESS_LEN)?;
        Some(NodeAddr::new(protocol, address))
    };
    let addr = read();
    if addr.is_none() {
        r.reset(start);
    }
    addr
}

fn node_list(
    r: &mut Reader<'_>,
    at: &'static str,
    limits: &DecodeLimits,
    depth: u32,
) -> Result<Vec<NodeInfo>> {
    // The smallest NodeInfo map is well over 8 bytes; 8 is a safe floor.
    let n = array(r, at, "nodes", limits.max_nodes, 8)?;
    let mut out = Vec::with_capacity(n);
    const AT: &str = "nodes[]";
    let fast = depth + 2 <= DEPTH_LIMIT;
    for _ in 0..n {
        if fast {
            if let Some(info) = node_info_canonical(r) {
                out.push(info);
                continue;
            }
        }
        let (mut id, mut addr, mut seen) = (None, None, None);
        map(
            r,
            AT,
            &["identity", "addr", "last_seen"],
            depth + 1,
            |r, i| {
                match i {
                    0 => id = Some(identity(r, "nodes[].identity", depth + 2)?),
                    1 => addr = Some(node_addr(r, "nodes[].addr", depth + 2)?),
                    _ => seen = Some(Timestamp::from_micros(uint(r, AT, "last_seen", u64::MAX)?)),
                }
                Ok(())
            },
        )?;
        out.push(NodeInfo {
            identity: req(id, AT, "identity")?,
            addr: req(addr, AT, "addr")?,
            last_seen: req(seen, AT, "last_seen")?,
        });
    }
    Ok(out)
}

/// One node-list entry in the canonical layout every implementation writes
/// (keys in the reference's order, shortest heads, key as a byte string),
/// read by matching its fixed bytes; `None`, with nothing consumed, for any
/// other layout, which the general decoder then reads (or refuses) with
/// the same result. Node lists are most of what a node decodes, and this
/// reads them about three times faster.
fn node_info_canonical(r: &mut Reader<'_>) -> Option<NodeInfo> {
    const IDENTITY: &[u8] = b"\xa3\x68identity\xa2\x69algorithm\x01\x6apublic_key\x58\x20";
    const ADDR: &[u8] = b"\x64addr";
    const LAST_SEEN: &[u8] = b"\x69last_seen";
    let start = r.mark();
    let mut read = || {
        if !r.eat(IDENTITY) {
            return None;
        }
        let key = r.eat_array::<32>()?;
        if !r.eat(ADDR) {
            return None;
        }
        let addr = node_addr_canonical(r)?;
        if !r.eat(LAST_SEEN) {
            return None;
        }
        let last_seen = r.expect_uint().ok()?;
        Some(NodeInfo {
            identity: Identity::from_ed25519_bytes(key),
            addr,
            last_seen: Timestamp::from_micros(last_seen),
        })
    };
    let info = read();
    if info.is_none() {
        r.reset(start);
    }
    info
}

fn descriptor_list(
    r: &mut Reader<'_>,
    limits: &DecodeLimits,
    depth: u32,
) -> Result<Vec<Descriptor>> {
    let n = array(
        r,
        "find_value_result",
        "descriptors",
        limits.max_descriptors,
        8,
    )?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(descriptor(r, "descriptors[]", limits, depth + 1)?);
    }
    Ok(out)
}

fn filter_set(r: &mut Reader<'_>, depth: u32) -> Result<Filters> {
    const AT: &str = "find_value.filters";
    let mut f = Filters::default();
    map(
        r,
        AT,
        &["schema_hash", "min_timestamp", "publisher"],
        depth,
        |r, i| {
            match i {
                0 => f.schema_hash = Some(hash(r, "find_value.filters.schema_hash", depth + 1)?),
                1 => {
                    f.min_timestamp = Some(Timestamp::from_micros(uint(
                        r,
                        AT,
                        "min_timestamp",
                        u64::MAX,
                    )?))
                }
                _ => f.publisher = Some(identity(r, "find_value.filters.publisher", depth + 1)?),
            }
            Ok(())
        },
    )?;
    Ok(f)
}

const DESCRIPTOR_FIELDS: [&str; 10] = [
    "schema_hash",
    "topic",
    "payload",
    "publisher",
    "timestamp",
    "sequence",
    "ttl",
    "routing_keys",
    "id",
    "signature",
];

fn descriptor(
    r: &mut Reader<'_>,
    at: &'static str,
    limits: &DecodeLimits,
    depth: u32,
) -> Result<Descriptor> {
    let mut schema_hash = None;
    let mut topic = None;
    let mut payload = None;
    let mut publisher = None;
    let mut timestamp = None;
    let mut sequence = None;
    let mut ttl = None;
    let mut routing_keys = None;
    let mut id = None;
    let mut signature = None;
    map(r, at, &DESCRIPTOR_FIELDS, depth, |r, i| {
        match i {
            0 => schema_hash = Some(hash(r, "descriptor.schema_hash", depth + 1)?),
            // Topic and payload sizes are validation rules with their own
            // errors (Descriptor::validate); here only the body cap bounds them.
            1 => topic = Some(text(r, at, "topic", limits.max_body_len)?.to_owned()),
            2 => payload = Some(var_bytes(r, at, "payload", limits.max_body_len)?.into_owned()),
            3 => publisher = Some(identity(r, "descriptor.publisher", depth + 1)?),
            4 => timestamp = Some(Timestamp::from_micros(uint(r, at, "timestamp", u64::MAX)?)),
            5 => sequence = Some(uint(r, at, "sequence", u64::MAX)?),
            6 => ttl = Some(uint(r, at, "ttl", u32::MAX as u64)? as u32),
            7 => {
                // A hash map is at least 4 bytes.
                let n = array(r, at, "routing_keys", limits.max_routing_keys, 4)?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(hash(r, "descriptor.routing_keys[]", depth + 2)?);
                }
                routing_keys = Some(keys);
            }
            8 => id = Some(hash(r, "descriptor.id", depth + 1)?),
            _ => signature = Some(Signature::from_bytes(fixed::<64>(r, at, "signature")?)),
        }
        Ok(())
    })?;
    Ok(Descriptor {
        schema_hash: req(schema_hash, at, "schema_hash")?,
        topic: req(topic, at, "topic")?,
        payload: req(payload, at, "payload")?,
        publisher: req(publisher, at, "publisher")?,
        timestamp: req(timestamp, at, "timestamp")?,
        sequence: req(sequence, at, "sequence")?,
        ttl: req(ttl, at, "ttl")?,
        routing_keys: req(routing_keys, at, "routing_keys")?,
        id: req(id, at, "id")?,
        signature: req(signature, at, "signature")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::cbor::Writer;

    fn info(n: u8, address: &str) -> NodeInfo {
        NodeInfo {
            identity: Identity::from_ed25519_bytes([n; 32]),
            addr: NodeAddr::quic(address),
            last_seen: Timestamp::from_micros(u64::from(n) << 40),
        }
    }

    /// One entry written with the keys in another order: valid, but not
    /// the canonical layout, so the general decoder reads it.
    fn reordered(w: &mut Writer<'_>, n: &NodeInfo) {
        w.map(3);
        w.key("last_seen");
        w.uint(n.last_seen.as_micros());
        w.key("addr");
        w.map(2);
        w.key("address");
        w.text(n.addr.address());
        w.key("protocol");
        w.text(n.addr.protocol());
        w.key("identity");
        w.map(2);
        w.key("public_key");
        w.bytes(n.identity.public_key());
        w.key("algorithm");
        w.uint(1);
    }

    #[test]
    fn canonical_and_other_layouts_decode_alike() {
        let long = format!("{}:1", "h".repeat(40));
        let nodes = vec![
            info(1, "10.0.0.1:4433"),
            info(2, &long),
            info(3, "[2001:db8::1]:4433"),
            info(4, &"a".repeat(262)),
            info(5, ""),
        ];
        let canonical = Message::FindNodeResult(FindNodeResult {
            nodes: nodes.clone(),
        });
        let mut body = Vec::new();
        canonical.encode_body(&mut body);
        let mut mixed = Vec::new();
        let mut w = Writer::new(&mut mixed);
        w.map(1);
        w.key("nodes");
        w.array(nodes.len());
        for (i, n) in nodes.iter().enumerate() {
            if i % 2 == 1 {
                reordered(&mut w, n);
            } else {
                super::super::encode::node_for_tests(&mut w, n);
            }
        }
        let limits = DecodeLimits::default();
        for b in [&body, &mixed] {
            let m = Message::decode_body(MessageType::FindNodeResult, b, &limits).unwrap();
            assert_eq!(m, canonical);
        }
        // Cut anywhere, both layouts fail the same way as before: with an
        // error, never a panic, and never a shorter list.
        for cut in 0..body.len() {
            assert!(
                Message::decode_body(MessageType::FindNodeResult, &body[..cut], &limits).is_err()
            );
        }
    }

    #[test]
    fn canonical_entries_over_the_limits_are_refused_as_before() {
        let mut bad = info(1, "10.0.0.1:4433");
        bad.addr = NodeAddr::new(&"q".repeat(17), "10.0.0.1:4433");
        let mut body = Vec::new();
        Message::FindNodeResult(FindNodeResult { nodes: vec![bad] }).encode_body(&mut body);
        let e = Message::decode_body(MessageType::FindNodeResult, &body, &DecodeLimits::default())
            .unwrap_err();
        assert!(
            matches!(
                e,
                DecodeError::TooLong {
                    len: 17,
                    max: 16,
                    ..
                }
            ),
            "{e}"
        );
    }
}
