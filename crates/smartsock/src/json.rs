//! Typed messages as JSON (feature `json`).

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Socket};

impl Socket {
    /// Sends `value` as a JSON message, by the socket's send mode.
    ///
    /// ```
    /// use serde::{Deserialize, Serialize};
    /// use smartsock::Socket;
    ///
    /// #[derive(Serialize, Deserialize, Debug, PartialEq)]
    /// struct Job { id: u32, name: String }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), smartsock::Error> {
    /// let worker = Socket::new()?;
    /// let addr = worker.bind("127.0.0.1:0").await?;
    /// let boss = Socket::new()?;
    /// boss.connect(&addr.to_string())?;
    ///
    /// boss.send_json(&Job { id: 7, name: "resize".into() }).await?;
    /// let job: Job = worker.recv_json().await.expect("open")?;
    /// assert_eq!(job, Job { id: 7, name: "resize".into() });
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        self.send(encode(value)?).await
    }

    /// Sends `value` as a JSON message to exactly the peer `to`.
    pub async fn send_json_to<T: Serialize + ?Sized>(
        &self,
        to: crate::PeerId,
        value: &T,
    ) -> Result<(), Error> {
        self.send_to(to, encode(value)?).await
    }

    /// Receives the next message as JSON of type `T`. `None` once the socket
    /// is closed and drained; `Some(Err(Error::Json { .. }))`, holding the
    /// bytes, for a message that is not such JSON (the next call goes on
    /// with the next message).
    pub async fn recv_json<T: DeserializeOwned>(&self) -> Option<Result<T, Error>> {
        self.recv_json_from().await.map(|result| result.map(|(_, value)| value))
    }

    /// Like [`recv_json`](Socket::recv_json), with the sender's identity.
    pub async fn recv_json_from<T: DeserializeOwned>(&self) -> Option<Result<(crate::PeerId, T), Error>> {
        let (from, payload) = self.recv_from().await?;
        Some(match serde_json::from_slice(&payload) {
            Ok(value) => Ok((from, value)),
            Err(source) => Err(Error::Json { source, payload }),
        })
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, Error> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|source| Error::Json { source, payload: Bytes::new() })
}
