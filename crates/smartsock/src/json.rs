//! JSON helpers on [`Socket`] (feature `json`): shorthands for a
//! [`TypedSocket`](crate::TypedSocket) with the [`Json`] codec, on the same
//! encode and decode path, for types that need only one of `Serialize` and
//! `Deserialize`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::Json;
use crate::typed::{decoded, encoded};
use crate::{Error, PeerId, Socket};

impl Socket {
    /// Sends `value` as a JSON message, by the socket's send mode: what
    /// `self.typed::<T, Json>().send(value)` does, for unsized values too.
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
        self.send(encoded::<T, _>(Json::NAME, Json::to_bytes(value))?).await
    }

    /// Sends `value` as a JSON message to exactly the peer `to`.
    pub async fn send_json_to<T: Serialize + ?Sized>(&self, to: PeerId, value: &T) -> Result<(), Error> {
        self.send_to(to, encoded::<T, _>(Json::NAME, Json::to_bytes(value))?).await
    }

    /// Receives the next message as JSON of type `T`: what
    /// `self.typed::<T, Json>().recv()` does. `None` once the socket is
    /// closed and drained; `Some(Err(e))`, of kind `ErrorKind::Decode`
    /// naming the peer and holding the bytes, for a message that is not
    /// such JSON (the next call goes on with the next message).
    pub async fn recv_json<T: DeserializeOwned>(&self) -> Option<Result<T, Error>> {
        Some(self.recv_json_from().await?.map(|(_, value)| value))
    }

    /// Like [`recv_json`](Socket::recv_json), with the sender's identity.
    pub async fn recv_json_from<T: DeserializeOwned>(&self) -> Option<Result<(PeerId, T), Error>> {
        let (from, payload) = self.recv_from().await?;
        Some(match decoded(Json::NAME, from, payload, Json::from_bytes::<T>) {
            Ok(value) => Ok((from, value)),
            Err(error) => Err(error.into()),
        })
    }
}
