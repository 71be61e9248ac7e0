//! Typed sockets over real loopback TCP: a struct through each codec, payloads
//! that do not decode (reported with their peer and bytes, the next message
//! still arriving), a user codec, and the typed stream and sink.

// The helpers below serve the tests of the built-in codecs, each behind its
// feature: built with none of them, only the user codec's tests remain.
#![cfg_attr(not(any(feature = "json", feature = "msgpack", feature = "postcard")), allow(dead_code))]

mod common;

use std::num::TryFromIntError;

use common::{pair, recv, within};
use futures::{SinkExt, StreamExt};
use smartsock::{Bytes, Codec, DecodeError, Error, ErrorKind, PeerId, Socket, TypedSocket};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Order {
    id: u64,
    item: String,
    quantity: u32,
    tags: Vec<String>,
    note: Option<String>,
}

fn order(id: u64) -> Order {
    Order {
        id,
        item: format!("item {id} ✓"),
        quantity: u32::try_from(id).expect("small") * 3,
        tags: vec!["a".into(), "b \"quoted\"".into()],
        note: (id % 2 == 0).then(|| "even".into()),
    }
}

/// Another shape, sent where an `Order` is expected.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Reading {
    sensor: String,
    value: f64,
}

/// Sends orders both ways through `C` (by round-robin, by identity), and
/// returns what the client's first order looked like on the wire.
async fn round_trip<C>() -> Bytes
where
    C: Codec<Order> + Default + Clone + Send + Sync + 'static,
{
    let (server, client) = pair().await;
    let (typed_server, typed_client) = (server.typed::<Order, C>(), client.typed::<Order, C>());
    for id in 0..10 {
        typed_client.send(&order(id)).await.expect("sent");
    }
    for id in 0..10 {
        let (from, got) = within("an order", typed_server.recv_from()).await.expect("open").expect("decodes");
        assert_eq!(from, client.identity());
        assert_eq!(got, order(id));
    }
    typed_server.send_to(client.identity(), &order(42)).await.expect("sent");
    assert_eq!(within("the reply", typed_client.recv()).await.expect("open").expect("decodes"), order(42));

    // A typed message is an ordinary message: the raw end sees the codec's bytes.
    typed_client.send(&order(1)).await.expect("sent");
    let raw = recv(&server).await;
    assert_eq!(raw, C::default().encode(&order(1)).expect("encodes"));
    raw
}

/// Sends a `Reading`, then `garbage`, then a good order: the first two are
/// errors naming the client and holding exactly the bytes sent, and the
/// order still arrives.
async fn wrong_payloads_are_handed_back<C>(garbage: &'static [u8])
where
    C: Codec<Order> + Codec<Reading> + Default + Clone + Send + Sync + 'static,
{
    let (server, client) = pair().await;
    let reading = Reading { sensor: "t1".into(), value: 21.5 };
    let reading_bytes = client.typed::<Reading, C>().codec().encode(&reading).expect("encodes");
    client.typed::<Reading, C>().send(&reading).await.expect("sent");
    client.send(garbage).await.expect("sent");
    client.typed::<Order, C>().send(&order(7)).await.expect("sent");

    let orders = server.typed::<Order, C>();
    for expected in [reading_bytes, Bytes::from_static(garbage)] {
        let error: DecodeError =
            within("a decode error", orders.recv()).await.expect("open").expect_err("not an Order");
        assert_eq!(error.peer(), client.identity());
        assert_eq!(error.payload(), &expected);
        let text = error.to_string();
        assert!(text.contains(&client.identity().to_string()), "{text}");
        assert!(text.contains(<C as Codec<Order>>::NAME), "{text}");
        assert!(text.contains("Order"), "{text}");
        // Through the facade's error, the bytes still come back.
        assert_eq!(Error::from(error).into_payload(), Some(expected));
    }
    assert_eq!(within("the good order", orders.recv()).await.expect("open").expect("decodes"), order(7));
}

#[cfg(feature = "json")]
mod json {
    use super::*;
    use smartsock::Json;

    #[tokio::test]
    async fn a_struct_round_trips() {
        let raw = round_trip::<Json>().await;
        assert_eq!(raw, r#"{"id":1,"item":"item 1 ✓","quantity":3,"tags":["a","b \"quoted\""],"note":null}"#);
    }

    #[tokio::test]
    async fn wrong_payloads_are_handed_back() {
        super::wrong_payloads_are_handed_back::<Json>(b"{not json").await;
    }

    #[tokio::test]
    async fn the_json_helpers_and_the_typed_view_are_one_format() -> Result<(), Error> {
        let (server, client) = pair().await;
        client.send_json(&order(1)).await?;
        client.typed::<Order, Json>().send(&order(2)).await?;
        client.send(Bytes::from_static(&[0xff])).await?;
        assert_eq!(within("typed", server.typed::<Order, Json>().recv()).await.expect("open")?, order(1));
        assert_eq!(within("helper", server.recv_json::<Order>()).await.expect("open")?, order(2));
        match within("helper", server.recv_json::<Order>()).await.expect("open").map_err(Error::into_kind) {
            Err(ErrorKind::Decode(error)) => {
                assert_eq!(
                    (error.peer(), error.into_payload()),
                    (client.identity(), Bytes::from_static(&[0xff]))
                );
            }
            other => panic!("expected ErrorKind::Decode, got {other:?}"),
        }
        // An unsized value, which only the helper takes.
        client.send_json("text").await?;
        assert_eq!(within("helper", server.recv_json::<String>()).await.expect("open")?, "text");
        Ok(())
    }

    #[tokio::test]
    async fn a_value_that_does_not_encode_sends_nothing() -> Result<(), Error> {
        // JSON object keys must be strings.
        let unencodable = std::collections::BTreeMap::from([(vec![1u8], 1u8)]);
        let (server, client) = pair().await;
        let error = client.typed::<_, Json>().send(&unencodable).await.expect_err("keys are not strings");
        match error.kind() {
            ErrorKind::Encode(inner) => assert!(inner.cause().is::<serde_json::Error>(), "{inner:?}"),
            other => panic!("expected ErrorKind::Encode, got {other:?}"),
        }
        assert!(
            error.to_string().starts_with("cannot encode a `alloc::collections::btree::map::BTreeMap<"),
            "{error}"
        );
        assert!(error.to_string().contains("as JSON"), "{error}");
        assert_eq!(error.into_payload(), None);
        client.send("after").await?;
        assert_eq!(recv(&server).await, "after");
        Ok(())
    }
}

#[cfg(feature = "msgpack")]
mod msgpack {
    use super::*;
    use smartsock::{MsgPack, MsgPackError};

    #[tokio::test]
    async fn a_struct_round_trips() {
        let raw = round_trip::<MsgPack>().await;
        // A map of 5 (0x85) whose first key is the 2-byte string "id" (0xa2): field names
        // on the wire, as Python's and JavaScript's msgpack decoders expect.
        assert_eq!(raw[..5], [0x85, 0xa2, b'i', b'd', 0x01]);
        // Structs written as arrays by other encoders decode too.
        let compact = rmp_array(&order(1));
        assert_eq!(MsgPack.decode(&compact).ok(), Some(order(1)));
    }

    #[tokio::test]
    async fn wrong_payloads_are_handed_back() {
        super::wrong_payloads_are_handed_back::<MsgPack>(&[0xc1]).await;
    }

    #[test]
    fn decode_errors_are_told_apart_from_encode_errors() {
        let error = <MsgPack as Codec<Order>>::decode(&MsgPack, &Bytes::from_static(&[0xc1]))
            .expect_err("reserved byte");
        assert!(matches!(error, MsgPackError::Decode(_)), "{error:?}");
    }

    /// `order` as a MessagePack array, the positional form, written by hand.
    fn rmp_array(order: &Order) -> Bytes {
        let mut out = vec![0x95, 0x01]; // array of 5; id 1 (positive fixint)
        out.push(0xa0 | u8::try_from(order.item.len()).expect("short"));
        out.extend_from_slice(order.item.as_bytes());
        out.push(u8::try_from(order.quantity).expect("small"));
        out.push(0x92); // array of 2
        for tag in &order.tags {
            out.push(0xa0 | u8::try_from(tag.len()).expect("short"));
            out.extend_from_slice(tag.as_bytes());
        }
        out.push(0xc0); // nil
        Bytes::from(out)
    }
}

#[cfg(feature = "postcard")]
mod postcard {
    use super::*;
    use smartsock::Postcard;

    #[tokio::test]
    async fn a_struct_round_trips() {
        let raw = round_trip::<Postcard>().await;
        // id 1, item (len 10), quantity 3, tags (2: "a", "b \"quoted\""), note None:
        // no field names, varint integers.
        let mut expected = vec![0x01, 10];
        expected.extend_from_slice("item 1 ✓".as_bytes());
        expected.extend_from_slice(&[0x03, 0x02, 0x01, b'a', 0x0a]);
        expected.extend_from_slice(b"b \"quoted\"");
        expected.push(0x00);
        assert_eq!(raw, expected);
    }

    #[tokio::test]
    async fn wrong_payloads_are_handed_back() {
        // An order followed by a stray byte: a payload for another type, not
        // an order to accept while ignoring the rest.
        let mut padded = Postcard.encode(&order(3)).expect("encodes").to_vec();
        padded.push(0);
        let padded: &'static [u8] = padded.leak();
        super::wrong_payloads_are_handed_back::<Postcard>(padded).await;
    }
}

/// A user codec: a point as two big-endian 16-bit coordinates, four bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Compact;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, thiserror::Error)]
enum CompactError {
    #[error("a coordinate is out of the 16-bit range")]
    OutOfRange(#[from] TryFromIntError),
    #[error("a point is 4 bytes, not {0}")]
    Length(usize),
}

impl Codec<Point> for Compact {
    const NAME: &'static str = "compact point";
    type Error = CompactError;

    fn encode(&self, point: &Point) -> Result<Bytes, CompactError> {
        let (x, y) = (i16::try_from(point.x)?, i16::try_from(point.y)?);
        let mut bytes = [0; 4];
        bytes[..2].copy_from_slice(&x.to_be_bytes());
        bytes[2..].copy_from_slice(&y.to_be_bytes());
        Ok(Bytes::copy_from_slice(&bytes))
    }

    fn decode(&self, payload: &Bytes) -> Result<Point, CompactError> {
        match payload[..] {
            [x0, x1, y0, y1] => {
                Ok(Point { x: i16::from_be_bytes([x0, x1]).into(), y: i16::from_be_bytes([y0, y1]).into() })
            }
            _ => Err(CompactError::Length(payload.len())),
        }
    }
}

#[tokio::test]
async fn a_user_codec_round_trips_and_reports_its_own_errors() -> Result<(), Error> {
    let (server, client) = pair().await;
    let points = client.typed::<Point, Compact>();
    points.send(&Point { x: -2, y: 300 }).await?;
    let error = points.send(&Point { x: 1 << 20, y: 0 }).await.expect_err("out of range");
    assert_eq!(
        error.to_string(),
        "cannot encode a `typed::Point` as compact point: a coordinate is out of the 16-bit range"
    );
    client.send("five!").await?;
    points.send(&Point { x: 7, y: -7 }).await?;

    let received = server.typed::<Point, Compact>();
    assert_eq!(within("a point", received.recv()).await.expect("open")?, Point { x: -2, y: 300 });
    let error = within("a bad point", received.recv()).await.expect("open").expect_err("5 bytes");
    assert_eq!(
        error.to_string(),
        format!(
            "cannot decode a message from peer {} (5 bytes) as compact point `typed::Point`: a point is 4 bytes, not 5",
            client.identity()
        )
    );
    assert!(matches!(error.cause().downcast_ref::<CompactError>(), Some(CompactError::Length(5))));
    assert_eq!(error.into_payload(), "five!");
    assert_eq!(within("a point", received.recv()).await.expect("open")?, Point { x: 7, y: -7 });
    // The raw bytes, as the format says.
    points.send(&Point { x: 1, y: 258 }).await?;
    assert_eq!(recv(&server).await, [0, 1, 1, 2][..]);
    Ok(())
}

#[tokio::test]
async fn the_stream_goes_on_after_a_bad_payload_and_ends_at_close() -> Result<(), Error> {
    let (server, client) = pair().await;
    let points = client.typed::<Point, Compact>();
    points.send(&Point { x: 1, y: 1 }).await?;
    client.send("bad").await?;
    points.send(&Point { x: 2, y: 2 }).await?;

    let typed = server.typed::<Point, Compact>();
    let mut stream = typed.identity_messages();
    let first = within("item 1", stream.next()).await.expect("item")?;
    assert_eq!(first, (client.identity(), Point { x: 1, y: 1 }));
    let bad = within("item 2", stream.next()).await.expect("item").expect_err("3 bytes");
    assert_eq!((bad.peer(), bad.payload().clone()), (client.identity(), Bytes::from_static(b"bad")));
    let third = within("item 3", stream.next()).await.expect("item")?;
    assert_eq!(third, (client.identity(), Point { x: 2, y: 2 }));

    let mut values = typed.messages();
    points.send(&Point { x: 3, y: 3 }).await?;
    assert_eq!(within("a value", values.next()).await.expect("item")?, Point { x: 3, y: 3 });

    server.close().await;
    assert!(within("the end", values.next()).await.is_none());
    assert!(within("the end", stream.next()).await.is_none());
    assert!(within("the end", typed.recv()).await.is_none());
    Ok(())
}

#[tokio::test]
async fn the_sink_encodes_each_value_and_survives_one_that_does_not_encode() -> Result<(), Error> {
    let (server, client) = pair().await;
    let mut sink = client.typed::<Point, Compact>().sender();
    sink.send(Point { x: 0, y: 1 }).await?;
    let mut many = futures::stream::iter((2..102).map(|i| Ok(Point { x: i, y: -i })));
    within("send_all", sink.send_all(&mut many)).await?;

    let error = sink.send(Point { x: i32::MAX, y: 0 }).await.expect_err("out of range");
    assert!(matches!(error.kind(), ErrorKind::Encode(_)), "{error:?}");
    sink.send(Point { x: 5, y: 5 }).await?;
    sink.close().await?;

    let received: Vec<Point> = within(
        "102 points",
        server.typed::<Point, Compact>().messages().take(102).map(|item| item.expect("decodes")).collect(),
    )
    .await;
    let mut expected = vec![Point { x: 0, y: 1 }];
    expected.extend((2..102).map(|i| Point { x: i, y: -i }));
    expected.push(Point { x: 5, y: 5 });
    assert_eq!(received, expected);
    Ok(())
}

#[tokio::test]
async fn a_typed_view_is_a_cheap_clone_of_the_socket() -> Result<(), Error> {
    let (server, client) = pair().await;
    let view: TypedSocket<Point, Compact> = client.typed();
    let copy = view.clone();
    let by_value: TypedSocket<Point, Compact> = client.typed_with(Compact);
    copy.send(&Point { x: 1, y: 2 }).await?;
    by_value.send_to(server.identity(), &Point { x: 3, y: 4 }).await?;
    assert_eq!(view.get_ref().identity(), client.identity());
    let socket: Socket = view.into_inner();
    socket.send("raw").await?;

    let received = server.typed::<Point, Compact>();
    let peer: PeerId = client.identity();
    assert_eq!(within("1", received.recv_from()).await.expect("open")?, (peer, Point { x: 1, y: 2 }));
    assert_eq!(within("2", received.recv_from()).await.expect("open")?, (peer, Point { x: 3, y: 4 }));
    assert_eq!(recv(&server).await, "raw");
    assert!(format!("{received:?}").contains("typed::Point"), "{received:?}");
    Ok(())
}
