//! The wire: frame header, the eight messages, and their strict codec
//! (WIRE.md, "Frame").
//!
//! ```
//! use mars_proto::wire::{Frame, Message, MsgId, NodeAddr, Ping};
//! use mars_proto::Keypair;
//!
//! let me = Keypair::from_secret_bytes(&[1; 32]).identity();
//! let ping = Frame::new(
//!     MsgId([9; 16]),
//!     Message::Ping(Ping { sender: me, sender_addr: NodeAddr::quic("127.0.0.1:4433") }),
//! );
//! let bytes = ping.encode();
//! assert_eq!(Frame::decode(&bytes).unwrap(), ping);
//! // One byte more and the frame is refused, with the reason.
//! let mut longer = bytes.clone();
//! longer.push(0);
//! assert!(Frame::decode(&longer).is_err());
//! ```

mod cbor;
mod decode;
mod encode;
mod error;
mod frame;
mod limits;
mod message;
mod node_addr;

pub use cbor::CborError;
pub(crate) use cbor::Writer as CborWriter;
pub(crate) use cbor::{
    Item as CborItem, KeySet as CborKeySet, MapKey as CborMapKey, Reader as CborReader,
};
pub use decode::descriptor_from_cbor;
pub use encode::{
    NodeRef, descriptor_into, encode_descriptors_result, encode_find_node_result,
    encode_find_value_nodes,
};
pub use error::{DecodeError, Field};
pub use frame::{Frame, FrameHeader, HEADER_LEN, MAGIC, MessageType, MsgId, VERSION};
pub use limits::{DecodeLimits, MAX_ADDRESS_LEN, MAX_BODY_LEN, MAX_PROTOCOL_LEN, MAX_REASON_LEN};
pub use message::{
    Filters, FindNode, FindNodeResult, FindValue, FindValueResult, Message, NodeAddr, NodeInfo,
    Ping, Pong, Store, StoreAck,
};
