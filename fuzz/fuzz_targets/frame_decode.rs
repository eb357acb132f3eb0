//! Arbitrary bytes into every frame/body decoding entry point of mars-proto.
//!
//! Checks, besides "never panics, never overflows, never hangs":
//! - `Frame::decode` Ok ⇒ `encode` then `decode` again gives an equal frame;
//! - the header `Frame::decode` accepted is the one `FrameHeader::parse` sees;
//! - `decode_request` / `decode_response` agree with `decode` and the
//!   direction bit of the type;
//! - tighter `DecodeLimits` only ever refuse more: whatever decodes under them
//!   decodes identically under the defaults;
//! - the bytes as a bare body of each of the eight types: Ok ⇒ the message
//!   has that type and `encode_body` → `decode_body` gives it back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mars_proto::wire::{
    DecodeLimits, Frame, FrameHeader, HEADER_LEN, MAX_BODY_LEN, Message, MessageType,
};

const ALL_TYPES: [MessageType; 8] = [
    MessageType::Ping,
    MessageType::Store,
    MessageType::FindNode,
    MessageType::FindValue,
    MessageType::Pong,
    MessageType::StoreAck,
    MessageType::FindNodeResult,
    MessageType::FindValueResult,
];

/// Small limits, so list caps are reachable with short inputs.
const TIGHT: DecodeLimits = DecodeLimits {
    max_body_len: 512,
    max_nodes: 2,
    max_descriptors: 1,
    max_routing_keys: 2,
};

fuzz_target!(|data: &[u8]| {
    let defaults = DecodeLimits::default();

    // Header alone.
    let header = FrameHeader::parse(data, MAX_BODY_LEN);

    // Whole frame: parse → encode → parse.
    let frame = Frame::decode(data);
    if let Ok(frame) = &frame {
        let header = header.as_ref().expect("Frame::decode accepted a header FrameHeader::parse refuses");
        assert_eq!(header.msg_type, frame.message.message_type());
        assert_eq!(header.msg_id, frame.msg_id);
        assert_eq!(header.body_len, data.len() - HEADER_LEN);

        let encoded = frame.encode();
        let again = Frame::decode(&encoded).unwrap_or_else(|e| {
            panic!("re-encoded frame refused: {e}\nframe: {frame:?}\nencoded: {encoded:02x?}")
        });
        assert_eq!(frame, &again, "parse → encode → parse changed the frame");
    }

    // Direction-checked decoders agree with the plain one.
    let req = Frame::decode_request(data, &defaults);
    let resp = Frame::decode_response(data, &defaults);
    if let Ok(frame) = &frame {
        let is_response = frame.message.message_type().is_response();
        assert_eq!(req.as_ref().ok(), (!is_response).then_some(frame));
        assert_eq!(resp.as_ref().ok(), is_response.then_some(frame));
    } else {
        assert!(req.is_err() && resp.is_err());
    }

    // Tighter limits refuse a superset.
    if let Ok(tight) = Frame::decode_with(data, &TIGHT) {
        assert_eq!(frame.as_ref().ok(), Some(&tight), "tight limits accepted what defaults refuse");
    }

    // The same bytes as a bare body of every type (and the body after a
    // header, so a mutated header does not hide the body from the decoders).
    let mut bodies: Vec<&[u8]> = vec![data];
    if data.len() >= HEADER_LEN {
        bodies.push(&data[HEADER_LEN..]);
    }
    for body in bodies {
        for t in ALL_TYPES {
            let Ok(message) = Message::decode_body(t, body, &defaults) else {
                continue;
            };
            assert_eq!(message.message_type(), t);
            let mut out = Vec::new();
            message.encode_body(&mut out);
            let again = Message::decode_body(t, &out, &defaults).unwrap_or_else(|e| {
                panic!("re-encoded {t:?} body refused: {e}\nmessage: {message:?}\nencoded: {out:02x?}")
            });
            assert_eq!(message, again, "{t:?} body: decode → encode → decode changed it");
        }
    }
});
