//! [`Publish`]: each message to every peer.

use std::task::{Context, Poll};

use tower::{Layer, Service};

use crate::{Destination, Message, WhenFull};

/// Gives each un-addressed message to every connected peer.
///
/// Over a [`PeerSet`](crate::PeerSet) the payload is shared, not copied: each
/// peer's frame holds a reference to the same bytes.
///
/// A slow subscriber does not hold back the others. With the default
/// [`WhenFull::Drop`], a subscriber whose outbox is full misses that message:
/// it is counted ([`PeerSetStats`](crate::PeerSetStats)) and reported as an
/// `Event::Dropped` with `DropReason::SlowSubscriber`, as ZeroMQ's PUB does.
/// When *every* subscriber is full the send waits (the peer set is not
/// ready), since dropping would deliver the message to no one. With
/// [`WhenFull::Wait`] a send waits for every subscriber.
///
/// Messages left in the outbox of a subscriber that disconnects are dropped
/// and counted (`DropReason::PeerGone`): they were that subscriber's copies.
/// Messages addressed to a peer pass through untouched.
#[derive(Debug, Clone)]
pub struct Publish<S> {
    inner: S,
    when_full: WhenFull,
}

impl<S> Publish<S> {
    /// Publish routing over `inner`, dropping for full subscribers.
    pub fn new(inner: S) -> Self {
        Self { inner, when_full: WhenFull::Drop }
    }

    /// Publish routing over `inner` with the given slow-subscriber policy.
    pub fn with_policy(inner: S, when_full: WhenFull) -> Self {
        Self { inner, when_full }
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

impl<S: Service<Message>> Service<Message> for Publish<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut message: Message) -> S::Future {
        if message.to == Destination::Unresolved {
            message.to = Destination::Everyone { when_full: self.when_full };
        }
        self.inner.call(message)
    }
}

/// Makes [`Publish`] services.
#[derive(Debug, Clone, Copy)]
pub struct PublishLayer {
    when_full: WhenFull,
}

impl PublishLayer {
    /// The layer, dropping for full subscribers (the default policy).
    pub fn new() -> Self {
        Self { when_full: WhenFull::Drop }
    }

    /// The layer with the given slow-subscriber policy.
    pub fn when_full(when_full: WhenFull) -> Self {
        Self { when_full }
    }
}

impl Default for PublishLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for PublishLayer {
    type Service = Publish<S>;

    fn layer(&self, inner: S) -> Publish<S> {
        Publish::with_policy(inner, self.when_full)
    }
}
