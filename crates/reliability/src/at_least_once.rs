//! [`AtLeastOnce`] and [`AtLeastOnceLayer`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use pin_project::pin_project;
use smartsock_patterns::{Destination, Message, SendError, SendErrorKind};
use smartsock_transport::{AckReceiver, Frame, MsgId, Transport};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::PollSemaphore;
use tower::{Layer, Service};

use crate::AtLeastOnceConfig;
use crate::driver::{AtLeastOnceHandle, Command, Core, DriverParts, UndeliveredReceiver, as_request, drive};

/// What at-least-once refuses to do, in words for the error.
const NO_PUBLISH: &str = "at-least-once delivery cannot be combined with publish: \
    one ACK cannot stand for every subscriber (use round-robin or send to a peer identity)";

/// Sends every message as a DATA_REQ and keeps it until its ACK arrives,
/// sending it again (same [`MsgId`]) through the service below when the ACK
/// is late. See the [crate docs](crate) for what this guarantees.
///
/// Not ready while [`AtLeastOnceConfig::max_in_flight`] messages wait for
/// their ACKs.
pub struct AtLeastOnce<S> {
    inner: S,
    core: Arc<Core>,
    commands: mpsc::Sender<Command>,
    permits: PollSemaphore,
    permit: Option<OwnedSemaphorePermit>,
}

impl<S: Clone> Clone for AtLeastOnce<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            core: self.core.clone(),
            commands: self.commands.clone(),
            permits: self.permits.clone(),
            permit: None,
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
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The shared state: messages in flight, counters, shutdown.
    pub fn handle(&self) -> AtLeastOnceHandle {
        AtLeastOnceHandle { core: self.core.clone() }
    }
}

impl<S> Service<Message> for AtLeastOnce<S>
where
    S: Service<Message, Response = (), Error = SendError>,
{
    type Response = ();
    type Error = SendError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), SendError>> {
        // The service below first: a permit is taken only when the send can
        // go at once, so a caller that gives up waiting holds none.
        ready!(self.inner.poll_ready(cx))?;
        if self.permit.is_none() {
            // The semaphore is never closed, so `None` cannot happen.
            self.permit = ready!(self.permits.poll_acquire(cx));
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut message: Message) -> Self::Future {
        if matches!(message.to, Destination::Everyone { .. }) {
            // `call` uses up readiness: a refused message must not keep its
            // in-flight place (it would count as in flight and block `settled`).
            self.permit = None;
            return ResponseFuture::failed(SendError::new(SendErrorKind::Refused(NO_PUBLISH), message));
        }
        let id = match &message.frame {
            Frame::Data(_) => self.core.next_id(),
            Frame::DataReq { id, .. } => *id,
            // Not a message (a layer above sent a control frame): pass it on untracked.
            _ => {
                self.permit = None;
                return ResponseFuture::untracked(self.inner.call(message));
            }
        };
        let permit = self.permit.take().expect("AtLeastOnce::call without poll_ready returning Ready");
        message.frame = as_request(message.frame, id);
        // Tracked before it is sent, so that its ACK can never arrive first.
        let track = Command::Track { id, message: message.clone(), permit };
        if self.commands.try_send(track).is_err() {
            return ResponseFuture::failed(SendError::new(SendErrorKind::Closed, message));
        }
        ResponseFuture::tracked(self.inner.call(message), id, self.commands.clone())
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
            if let Some((id, commands)) = forget.take() {
                let _ = commands.try_send(Command::Forget(id));
            }
        }
    }
}

#[pin_project(project = StateProj)]
enum State<F> {
    Sending {
        #[pin]
        inner: F,
        forget: Option<(MsgId, mpsc::Sender<Command>)>,
    },
    Failed {
        error: Option<SendError>,
    },
}

impl<F> ResponseFuture<F> {
    fn tracked(inner: F, id: MsgId, commands: mpsc::Sender<Command>) -> Self {
        Self { state: State::Sending { inner, forget: Some((id, commands)) } }
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
                if let Some((id, commands)) = forget.take() {
                    if result.is_err() {
                        // Best effort: if even this cannot be queued, the
                        // message is later reported undelivered as well.
                        let _ = commands.try_send(Command::Forget(id));
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
    commands: mpsc::Sender<Command>,
    driver: Arc<Mutex<Option<DriverParts>>>,
}

impl Clone for AtLeastOnceLayer {
    fn clone(&self) -> Self {
        Self { core: self.core.clone(), commands: self.commands.clone(), driver: self.driver.clone() }
    }
}

impl std::fmt::Debug for AtLeastOnceLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtLeastOnceLayer").field("config", &self.core.config).finish()
    }
}

impl AtLeastOnceLayer {
    /// A layer with `config`, fed with the ACKs received (the transport's
    /// [`TransportParts::acks`](smartsock_transport::TransportParts::acks)).
    /// Messages given up arrive on the returned receiver.
    pub fn new(
        config: AtLeastOnceConfig,
        acks: AckReceiver,
    ) -> Result<(Self, UndeliveredReceiver), String> {
        config.validate()?;
        let (core, commands_tx, commands) = Core::new(config);
        let (undelivered_tx, undelivered) = mpsc::channel(config.undelivered_capacity);
        let parts =
            DriverParts { commands, acks, undelivered: undelivered_tx, events: None, on_give_up: None };
        Ok((Self { core, commands: commands_tx, driver: Arc::new(Mutex::new(Some(parts))) }, undelivered))
    }

    /// Also report give-ups as `Event::Dropped` on `transport`'s events.
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
}

impl<S> Layer<S> for AtLeastOnceLayer
where
    S: Service<Message, Response = (), Error = SendError> + Clone + Send + 'static,
    S::Future: Send,
{
    type Service = AtLeastOnce<S>;

    fn layer(&self, inner: S) -> AtLeastOnce<S> {
        if let Some(parts) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tokio::spawn(drive(self.core.clone(), inner.clone(), parts));
        }
        let permits = PollSemaphore::new(self.core.in_flight.clone());
        AtLeastOnce { inner, core: self.core.clone(), commands: self.commands.clone(), permits, permit: None }
    }
}
