//! [`AtLeastOnce`] and [`AtLeastOnceLayer`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use pin_project::pin_project;
use smartsock_patterns::{Destination, Message, PeerSet, SendError, SendErrorKind};
use smartsock_transport::{AckReceiver, Frame, MsgId, Transport};
use tokio::sync::Notify;
use tokio::sync::futures::OwnedNotified;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::{Layer, Service};

use crate::AtLeastOnceConfig;
use crate::core::Core;
use crate::driver::{AtLeastOnceHandle, DriverParts, ViaPeerSet, ViaService, drive};
use crate::undelivered::UndeliveredReceiver;

/// What at-least-once refuses to do, in words for the error.
const NO_PUBLISH: &str = "at-least-once delivery cannot be combined with publish: \
    one ACK cannot stand for every subscriber (use round-robin or send to a peer identity)";

/// Sends every message as a DATA_REQ and keeps it until its ACK arrives,
/// sending it again (same [`MsgId`]) through the service below when the ACK
/// is late. See the [crate docs](crate) for what this guarantees.
///
/// Not ready while [`AtLeastOnceConfig::max_in_flight`] messages wait for
/// their ACKs, or their payloads reach
/// [`AtLeastOnceConfig::max_in_flight_bytes`].
pub struct AtLeastOnce<S> {
    inner: S,
    core: Arc<Core>,
    /// Keeps the driver going while a service lives.
    _alive: Arc<DropGuard>,
    /// An in-flight place taken by `poll_ready` for the next `call`.
    reserved: bool,
    room: RoomWait,
}

impl<S: Clone> Clone for AtLeastOnce<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            _alive: self._alive.clone(),
            reserved: false,
            room: RoomWait::default(),
        }
    }
}

impl<S> Drop for AtLeastOnce<S> {
    fn drop(&mut self) {
        if std::mem::take(&mut self.reserved) {
            self.core.release();
        }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for AtLeastOnce<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtLeastOnce").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S> AtLeastOnce<S> {
    /// The service below.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The service below, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Takes the service below back.
    pub fn into_inner(mut self) -> S
    where
        S: Clone,
    {
        // `Drop` forbids moving out; the clone is as cheap as the services below.
        if std::mem::take(&mut self.reserved) {
            self.core.release();
        }
        self.inner.clone()
    }

    /// The shared state: messages in flight, counters, shutdown.
    pub fn handle(&self) -> AtLeastOnceHandle {
        AtLeastOnceHandle { core: self.core.clone() }
    }
}

/// Waiting for an in-flight place, from `poll_ready`.
#[derive(Default)]
struct RoomWait(Option<Pin<Box<OwnedNotified>>>);

impl<S> Service<Message> for AtLeastOnce<S>
where
    S: Service<Message, Response = (), Error = SendError>,
{
    type Response = ();
    type Error = SendError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        // The service below first: a place is taken only when the send can
        // go at once, so a caller that gives up waiting holds none.
        ready!(self.inner.poll_ready(cx))?;
        if self.reserved {
            return Poll::Ready(Ok(()));
        }
        loop {
            let signal: &Arc<Notify> = &self.core.room_signal;
            let wait = self.room.0.get_or_insert_with(|| Box::pin(signal.clone().notified_owned()));
            // Registered before the try, so that a place freed in between wakes us.
            wait.as_mut().enable();
            if self.core.try_reserve() {
                self.room.0 = None;
                self.reserved = true;
                return Poll::Ready(Ok(()));
            }
            match wait.as_mut().poll(cx) {
                Poll::Ready(()) => self.room.0 = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn call(&mut self, message: Message) -> Self::Future {
        let reserved = std::mem::take(&mut self.reserved);
        if matches!(message.to, Destination::Everyone { .. }) {
            // `call` uses up readiness: a refused message must not keep its
            // in-flight place (it would count as in flight).
            if reserved {
                self.core.release();
            }
            return ResponseFuture::failed(SendError::new(SendErrorKind::Refused(NO_PUBLISH), message));
        }
        if !matches!(message.frame, Frame::Data(_)) {
            // Not a fresh message (a layer above sent a control frame, or a
            // request it tracks itself): pass it on untracked.
            if reserved {
                self.core.release();
            }
            return ResponseFuture::untracked(self.inner.call(message));
        }
        match self.core.track(message, reserved, false) {
            Ok((tracked, request)) => {
                ResponseFuture::tracked(self.inner.call(request), tracked.seq, self.core.clone())
            }
            // Shut down, or called without readiness at the limit.
            Err(message) => ResponseFuture::failed(SendError::new(SendErrorKind::Closed, message)),
        }
    }
}

/// The response of [`AtLeastOnce`]: the service below's, and on failure the
/// message is forgotten (the error hands it back, so it must not be resent).
#[pin_project(PinnedDrop)]
pub struct ResponseFuture<F> {
    #[pin]
    state: State<F>,
}

#[pin_project::pinned_drop]
impl<F> PinnedDrop for ResponseFuture<F> {
    fn drop(self: Pin<&mut Self>) {
        // Dropped before it finished (a caller's timeout, say): the caller
        // takes the send as failed, so it must not be resent behind its back.
        if let StateProj::Sending { forget, .. } = self.project().state.project() {
            if let Some((seq, core)) = forget.take() {
                core.forget(seq);
            }
        }
    }
}

#[pin_project(project = StateProj)]
enum State<F> {
    Sending {
        #[pin]
        inner: F,
        forget: Option<(u64, Arc<Core>)>,
    },
    Failed {
        error: Option<SendError>,
    },
}

impl<F> ResponseFuture<F> {
    fn tracked(inner: F, seq: u64, core: Arc<Core>) -> Self {
        Self { state: State::Sending { inner, forget: Some((seq, core)) } }
    }

    fn untracked(inner: F) -> Self {
        Self { state: State::Sending { inner, forget: None } }
    }

    fn failed(error: SendError) -> Self {
        Self { state: State::Failed { error: Some(error) } }
    }
}

impl<F> Future for ResponseFuture<F>
where
    F: Future<Output = Result<(), SendError>>,
{
    type Output = Result<(), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Sending { inner, forget } => {
                let result = ready!(inner.poll(cx));
                if let Some((seq, core)) = forget.take() {
                    if result.is_err() {
                        core.forget(seq);
                    }
                }
                Poll::Ready(result)
            }
            StateProj::Failed { error } => {
                Poll::Ready(Err(error.take().expect("ResponseFuture polled after completion")))
            }
        }
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

/// Makes [`AtLeastOnce`] services. All services made by one layer share one
/// pending table and one driver task, spawned (on the current tokio runtime)
/// by the first [`layer`](Layer::layer) call; resends go through the service
/// that first call wrapped.
pub struct AtLeastOnceLayer {
    core: Arc<Core>,
    alive: Arc<DropGuard>,
    driver: Arc<Mutex<Option<DriverParts>>>,
}

impl Clone for AtLeastOnceLayer {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), alive: self.alive.clone(), driver: self.driver.clone() }
    }
}

impl std::fmt::Debug for AtLeastOnceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtLeastOnceLayer").field("config", &self.core.config).finish()
    }
}

impl AtLeastOnceLayer {
    /// A layer with `config`, fed with the ACKs received (the transport's
    /// [`TransportParts::acks`](smartsock_transport::TransportParts::acks),
    /// which from now on hands them straight to this layer's table).
    /// Messages given up arrive on the returned receiver.
    pub fn new(config: AtLeastOnceConfig, acks: AckReceiver) -> Result<(Self, UndeliveredReceiver), String> {
        config.validate()?;
        let core = Core::new(config);
        acks.deliver_to(core.clone());
        let (undelivered_tx, undelivered) =
            crate::undelivered::channel(config.undelivered_capacity, config.undelivered_bytes);
        let users_gone = CancellationToken::new();
        let parts = DriverParts {
            undelivered: undelivered_tx,
            events: None,
            on_give_up: None,
            users_gone: users_gone.clone(),
        };
        let alive = Arc::new(users_gone.drop_guard());
        Ok((Self { core, alive, driver: Arc::new(Mutex::new(Some(parts))) }, undelivered))
    }

    /// Also report give-ups as `Event::Dropped` on `transport`'s events, and
    /// resend at once what a peer held when it disconnects.
    pub fn with_events(self, transport: &Transport) -> Self {
        if let Some(parts) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            parts.events = Some(transport.detached());
        }
        self
    }

    /// Calls `hook` with the id of every message given up, before it is
    /// handed back: to withdraw copies still waiting below (the socket takes
    /// them out of the peer set's no-peer buffer with `PeerSet::withdraw`), so
    /// that a message handed back is not delivered too. Set it before the
    /// first [`layer`](Layer::layer) call.
    pub fn on_give_up(self, hook: impl Fn(MsgId) + Send + Sync + 'static) -> Self {
        if let Some(parts) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            parts.on_give_up = Some(Box::new(hook));
        }
        self
    }

    /// The shared state of the services this layer makes.
    pub fn handle(&self) -> AtLeastOnceHandle {
        AtLeastOnceHandle { core: self.core.clone() }
    }

    /// Starts the driver with `resender` as the route for resends (the
    /// first [`layer`](Layer::layer) call does this with the service it
    /// wraps), for a caller that sends through
    /// [`AtLeastOnceHandle::try_send_tracked`] (or
    /// [`try_track`](AtLeastOnceHandle::try_track)) instead of a service.
    /// Does nothing if the driver runs already.
    pub fn start<R>(&self, resender: R)
    where
        R: Service<Message, Response = (), Error = SendError> + Send + 'static,
        R::Future: Send,
    {
        if let Some(parts) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(drive(self.core.clone(), ViaService(resender), parts));
        }
    }

    /// Like [`start`](AtLeastOnceLayer::start), resending straight into
    /// `peers` (by each message's destination), so that the driver learns
    /// which peer took each resend: while that peer keeps acknowledging
    /// what was sent before it, the message is not sent yet again.
    pub fn start_direct(&self, peers: PeerSet) {
        if let Some(parts) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(drive(self.core.clone(), ViaPeerSet(peers), parts));
        }
    }
}

impl<S> Layer<S> for AtLeastOnceLayer
where
    S: Service<Message, Response = (), Error = SendError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Service = AtLeastOnce<S>;

    fn layer(&self, inner: S) -> AtLeastOnce<S> {
        self.start(inner.clone());
        AtLeastOnce {
            inner,
            core: self.core.clone(),
            _alive: self.alive.clone(),
            reserved: false,
            room: RoomWait::default(),
        }
    }
}
