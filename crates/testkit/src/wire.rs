//! The protocol's bytes, written out by hand (not through the codec) so that
//! tests check the wire format itself; numbered payloads; free ports.

use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of a HELLO on the wire: length prefix, type, version, identity.
pub const HELLO_LEN: usize = 22;

/// HELLO of `version`: `00 00 00 12 01 <version> <identity>`.
pub fn hello_v(version: u8, id: [u8; 16]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x00, 0x00, 0x12, 0x01, version];
    bytes.extend_from_slice(&id);
    bytes
}

/// HELLO of version 1.
pub fn hello(id: [u8; 16]) -> Vec<u8> {
    hello_v(0x01, id)
}

/// HEARTBEAT: `00 00 00 01 02`.
pub const HEARTBEAT: [u8; 5] = [0x00, 0x00, 0x00, 0x01, 0x02];

/// DATA: length (big-endian), `03`, payload.
pub fn data(payload: &[u8]) -> Vec<u8> {
    let mut bytes = envelope_len(payload.len() + 1).to_vec();
    bytes.push(0x03);
    bytes.extend_from_slice(payload);
    bytes
}

/// DATA_REQ: length, `04`, msg_id, payload.
pub fn data_req(id: [u8; 16], payload: &[u8]) -> Vec<u8> {
    let mut bytes = envelope_len(payload.len() + 17).to_vec();
    bytes.push(0x04);
    bytes.extend_from_slice(&id);
    bytes.extend_from_slice(payload);
    bytes
}

/// ACK: `00 00 00 11 05`, msg_id.
pub fn ack(id: [u8; 16]) -> Vec<u8> {
    let mut bytes = vec![0x00, 0x00, 0x00, 0x11, 0x05];
    bytes.extend_from_slice(&id);
    bytes
}

/// A frame header announcing an envelope of `len` bytes of type `kind`.
pub fn header(len: u32, kind: u8) -> Vec<u8> {
    let mut bytes = len.to_be_bytes().to_vec();
    bytes.push(kind);
    bytes
}

fn envelope_len(len: usize) -> [u8; 4] {
    u32::try_from(len).expect("an envelope under 4 GiB").to_be_bytes()
}

/// A payload whose bytes tell their position, so that a shifted byte shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// A payload that carries its sequence number in its first four bytes,
/// padded with a recognisable byte to `size` (at least 4) bytes.
pub fn payload(seq: u32, size: usize) -> Bytes {
    let mut buf = BytesMut::with_capacity(size.max(4));
    buf.put_u32(seq);
    buf.resize(size.max(4), 0xA5);
    buf.freeze()
}

/// The sequence number [`payload`] put in `bytes`.
pub fn seq(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes[..4].try_into().expect("payload shorter than 4 bytes"))
}

/// The numbered message `i` as text (`m00042`), as the facade's tests send them.
pub fn numbered(i: usize) -> Bytes {
    Bytes::from(format!("m{i:05}"))
}

/// The number in a message made by [`numbered`].
pub fn number_of(message: &[u8]) -> usize {
    let text = std::str::from_utf8(message).expect("utf-8");
    text.strip_prefix('m')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a numbered message: {text:?}"))
}

/// An address on loopback that nobody listens on now: bound, then released.
pub fn reserve_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}
