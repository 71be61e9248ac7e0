//! [`RoundRobin`]: each message to one peer, cycling.

use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::{Destination, Message};

/// Gives each un-addressed message to one peer, in turn.
///
/// Over a [`PeerSet`](crate::PeerSet): peers are taken in connection order;
/// a peer whose outbox is full is skipped for the next one with room, and a
/// send waits only when every peer is full. Messages left in the outbox of a
/// peer that disconnects are routed again to the others (or held until one
/// connects). Messages addressed to a peer pass through untouched.
#[derive(Debug, Clone)]
pub struct RoundRobin<S> {
    inner: S,
}

impl<S> RoundRobin<S> {
    /// Round-robin routing over `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The service below.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service below, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the service below back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Service<Message>> Service<Message> for RoundRobin<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut message: Message) -> S::Future {
        if message.to == Destination::Unresolved {
            message.to = Destination::AnyOne;
        }
        self.inner.call(message)
    }
}

/// Makes [`RoundRobin`] services.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinLayer {
    _private: (),
}

impl RoundRobinLayer {
    /// The layer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<S> Layer<S> for RoundRobinLayer {
    type Service = RoundRobin<S>;

    fn layer(&self, inner: S) -> RoundRobin<S> {
        RoundRobin::new(inner)
    }
}
