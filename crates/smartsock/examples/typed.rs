//! Typed messages: structs through the crate's codecs, a stream and a sink of
//! them, a payload that does not decode, and a codec written by hand.
//!
//! `cargo run -p smartsock --example typed --features json`
//! (add `,msgpack,postcard` to compare the payload sizes of all three).

#![allow(clippy::print_stdout)]

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use smartsock::{Bytes, Codec, Json, Socket};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    item: String,
    quantity: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Receipt {
    order: u64,
    total_cents: u64,
}

#[tokio::main]
async fn main() -> Result<(), smartsock::Error> {
    let shop = Socket::new()?;
    let addr = shop.bind("127.0.0.1:0").await?;
    let customer = Socket::new()?;
    customer.connect(&addr.to_string())?;

    // The customer sends orders through a sink of `Order`...
    let mut orders = customer.typed::<Order, Json>().sender();
    for (id, item) in [(1, "tea"), (2, "cake"), (3, "scone")] {
        orders.send(Order { id, item: item.into(), quantity: 2 }).await?;
    }
    // ...and, by mistake, something that is not an order.
    customer.send("an order, honest").await?;
    customer.typed::<Order, Json>().send(&Order { id: 4, item: "jam".into(), quantity: 1 }).await?;

    // The shop reads a stream of them, answering each by its sender's
    // identity; the bad payload is reported and the stream goes on.
    let receipts = shop.typed::<Receipt, Json>();
    let mut incoming = shop.typed::<Order, Json>().identity_messages().take(5);
    while let Some(item) = incoming.next().await {
        match item {
            Ok((from, order)) => {
                println!("shop: order {} for {} x {}", order.id, order.quantity, order.item);
                let receipt = Receipt { order: order.id, total_cents: 250 * u64::from(order.quantity) };
                receipts.send_to(from, &receipt).await?;
            }
            Err(error) => {
                println!("shop: {error}");
                println!("shop: the payload was {:?}", error.into_payload());
            }
        }
    }
    let my_receipts = customer.typed::<Receipt, Json>();
    for _ in 0..4 {
        let receipt = my_receipts.recv().await.expect("socket open").expect("a receipt");
        println!("customer: receipt for order {}: {} cents", receipt.order, receipt.total_cents);
    }

    compare_sizes();
    hand_written_codec().await?;

    customer.close().await;
    shop.close().await;
    Ok(())
}

/// The same order in each codec compiled in.
fn compare_sizes() {
    let order = Order { id: 1234, item: "earl grey".into(), quantity: 12 };
    let size = |bytes: Bytes| bytes.len();
    println!("sizes of one order: JSON {} bytes", size(Json.encode(&order).expect("encodes")));
    #[cfg(feature = "msgpack")]
    println!(
        "                    MessagePack {} bytes",
        size(smartsock::MsgPack.encode(&order).expect("encodes"))
    );
    #[cfg(feature = "postcard")]
    println!(
        "                    postcard {} bytes",
        size(smartsock::Postcard.encode(&order).expect("encodes"))
    );
}

/// A trade in a fixed binary layout: a version byte (1), the price in cents
/// (8 bytes, big-endian), then the symbol as UTF-8.
#[derive(Debug, Clone, PartialEq)]
struct Trade {
    price_cents: u64,
    symbol: String,
}

/// A codec written by hand, for a format that serde does not know.
#[derive(Debug, Clone, Copy, Default)]
struct TradeV1;

#[derive(Debug, thiserror::Error)]
enum TradeError {
    #[error("too short for a trade: {0} bytes")]
    Short(usize),
    #[error("unknown version {0}")]
    Version(u8),
    #[error("the symbol is not UTF-8")]
    Symbol(#[from] std::str::Utf8Error),
}

impl Codec<Trade> for TradeV1 {
    const NAME: &'static str = "trade v1";
    type Error = TradeError;

    fn encode(&self, trade: &Trade) -> Result<Bytes, TradeError> {
        let mut bytes = Vec::with_capacity(9 + trade.symbol.len());
        bytes.push(1);
        bytes.extend_from_slice(&trade.price_cents.to_be_bytes());
        bytes.extend_from_slice(trade.symbol.as_bytes());
        Ok(Bytes::from(bytes))
    }

    fn decode(&self, payload: &Bytes) -> Result<Trade, TradeError> {
        let (&version, rest) = payload.split_first().ok_or(TradeError::Short(0))?;
        if version != 1 {
            return Err(TradeError::Version(version));
        }
        let (price, symbol) = rest.split_first_chunk::<8>().ok_or(TradeError::Short(payload.len()))?;
        Ok(Trade { price_cents: u64::from_be_bytes(*price), symbol: std::str::from_utf8(symbol)?.to_owned() })
    }
}

async fn hand_written_codec() -> Result<(), smartsock::Error> {
    let exchange = Socket::new()?;
    let addr = exchange.bind("127.0.0.1:0").await?;
    let trader = Socket::new()?;
    trader.connect(&addr.to_string())?;

    let trades = trader.typed::<Trade, TradeV1>();
    trades.send(&Trade { price_cents: 18_950, symbol: "ACME".into() }).await?;
    trader.send(Bytes::from_static(&[2, 0, 0])).await?; // a version this side does not speak

    let received = exchange.typed::<Trade, TradeV1>();
    let trade = received.recv().await.expect("socket open").expect("a trade");
    println!("exchange: {} at {}.{:02}", trade.symbol, trade.price_cents / 100, trade.price_cents % 100);
    let error = received.recv().await.expect("socket open").expect_err("version 2");
    println!("exchange: {error}");

    trader.close().await;
    exchange.close().await;
    Ok(())
}
