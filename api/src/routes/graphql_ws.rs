//! GraphQL over WebSocket, subprotocol `graphql-transport-ws` (the graphql-ws project's
//! PROTOCOL.md): queries, mutations and subscriptions on one socket.
//!
//! Written here rather than taken from async-graphql, whose handler has no `connection_init`
//! timeout, no server pings, no bound on a client that stops reading, replaces an operation
//! whose id is in use instead of closing with 4409, and closes with 1011 where the protocol
//! says 4401. The protocol is small: a connection is `connection_init` / `connection_ack`,
//! then `subscribe` / `next`* / (`error` | `complete`) per operation id, `ping` / `pong` at any
//! time, and close codes for every misuse.

use std::collections::{HashMap, HashSet};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_graphql::{Data, Response, Value};
use futures_util::future::OptionFuture;
use futures_util::stream::{AbortHandle, Abortable, BoxStream, SelectAll, SplitSink};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use schema::Viewer;
use schema::documents::live::{LiveFeed, LiveHandoff, SharedSelection};
use serde::Deserialize;
use serde_json::json;
use tokio::time::{Instant, interval_at, sleep, timeout};
use tokio_stream::StreamMap;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as DataKind, OpCode};
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::graphql::viewer_from_bearer;

/// The subprotocol spoken here.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// Most operations (queries, mutations and subscriptions) in flight on one socket. At the
/// bound the server stops reading the socket until one ends (back-pressure through TCP), so a
/// client that pipelines edits is slowed, never refused. (Subscriptions alone cannot fill it:
/// a connection holds at most `MAX_SUBSCRIPTIONS_PER_CONNECTION` of them.)
const MAX_OPERATIONS: usize = 128;
/// Most frames of subscriptions gathered into one write, beyond the first.
const BATCH: usize = 64;
/// The largest frame sent: a longer message (a document's catch-up, say) goes out in fragments
/// of this size, so that the socket's write buffer, which never shrinks, stays this small.
pub const FRAGMENT: usize = 4 * 1024;

/// An upgraded connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// The close codes this module sends.
mod close {
    pub const GOING_AWAY: u16 = 1001;
    /// The client stopped reading: reconnect, and resume documents with `since`.
    pub const TRY_AGAIN_LATER: u16 = 1013;
    /// No message from the client for two ping intervals.
    pub const TIMEOUT: u16 = 3008;
    pub const BAD_REQUEST: u16 = 4400;
    pub const UNAUTHORIZED: u16 = 4401;
    pub const FORBIDDEN: u16 = 4403;
    pub const INIT_TIMEOUT: u16 = 4408;
    pub const SUBSCRIBER_EXISTS: u16 = 4409;
    pub const TOO_MANY_INITS: u16 = 4429;
}

/// Timings of one connection.
#[derive(Clone, Copy, Debug)]
pub struct WsSettings {
    pub init_timeout: Duration,
    pub ping_interval: Duration,
    pub stall_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<serde_json::Value>,
    },
    Ping {},
    Pong {},
    Subscribe {
        id: String,
        payload: Box<async_graphql::Request>,
    },
    Complete {
        id: String,
    },
}

/// Why a connection ends, and what the client is told.
struct Closing(u16, String);

impl Closing {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        // A close frame's reason holds at most 123 bytes.
        if reason.len() > 123 {
            let mut end = 123;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Self(code, reason)
    }
}

// What the streams below yield is boxed: the connection's future keeps room for the largest
// thing any of them yields, in every state, idle too (a `Response` is 224 bytes).

/// An operation's responses, then `None` when it completes.
type Operation = BoxStream<'static, Option<Box<Response>>>;

/// The live part of a shared `documentUpdates` subscription: the `next` payloads its
/// resolver handed over (see `schema::documents::live`), all subscribers' one rendering.
type Feed = BoxStream<'static, Result<Arc<str>, Box<async_graphql::ServerError>>>;

/// Where a shared subscription's live part arrives once its catch-up is out.
type Handoff = BoxStream<'static, Box<LiveFeed>>;

/// Serve one upgraded socket until it closes, the client misbehaves, or `shutdown`.
///
/// One task per connection reads the client, runs its operations and writes their frames
/// itself: no writer task and no queue between them, which were about a quarter of an idle
/// connection's memory and a second wake-up for every frame a subscriber is sent.
///
/// Not an `async fn`: the future returned holds the socket's two halves, not the socket
/// itself as well (an `async fn` keeps its arguments for its whole life, even once moved).
pub fn serve(
    socket: Socket,
    state: Arc<AppState>,
    settings: WsSettings,
    shutdown: CancellationToken,
    client: Option<schema::budgets::ClientIp>,
) -> impl Future<Output = ()> + Send + 'static {
    let (sink, mut incoming) = socket.split();
    let mut connection = Connection {
        state,
        out: Outgoing {
            sink,
            stall: settings.stall_timeout,
            unflushed: false,
            broken: None,
        },
        data: None,
        client,
        operations: Operations::default(),
        feeds: StreamMap::new(),
        handoffs: StreamMap::new(),
        answered: HashSet::new(),
    };

    async move {
        // Boxed, and dropped once the client is in: a timer is not small.
        let mut init_timer = Some(Box::pin(sleep(settings.init_timeout)));
        let mut pings = interval_at(
            Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        let mut last_heard = Instant::now();
        // Every handler below that waits is boxed. A future is as large as the largest state
        // it ever waits in, and this one lives as long as the connection: unboxed, sending a
        // frame or an answer made every idle connection's state three times larger. (A
        // frame forwarded costs one small allocation more, beside the frame's own text.)
        let closing = loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    // The protocol's way to end operations the server will not finish.
                    let ids: Vec<String> = connection
                        .operations
                        .ids()
                        .chain(connection.feeds.keys())
                        .cloned()
                        .collect();
                    for id in ids {
                        Box::pin(connection.send(json!({ "id": id, "type": "complete" }))).await;
                    }
                    break Closing::new(close::GOING_AWAY, "the server is shutting down");
                }
                Some(()) = OptionFuture::from(init_timer.as_mut()), if init_timer.is_some() => {
                    break Closing::new(close::INIT_TIMEOUT, "Connection initialisation timeout");
                }
                _ = pings.tick() => {
                    if connection.operations.len() >= MAX_OPERATIONS {
                        // Not reading (see MAX_OPERATIONS): the client's silence is ours.
                        last_heard = Instant::now();
                    }
                    if last_heard.elapsed() > settings.ping_interval * 2 {
                        break Closing::new(close::TIMEOUT, "no answer to pings");
                    }
                    Box::pin(connection.send(json!({ "type": "ping" }))).await;
                }
                message = incoming.next(), if connection.operations.len() < MAX_OPERATIONS => {
                    let text = match message {
                        None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break Closing::new(0, ""),
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            last_heard = Instant::now();
                            continue;
                        }
                        Some(Ok(Message::Binary(_) | Message::Frame(_))) => {
                            break Closing::new(close::BAD_REQUEST, "messages must be text");
                        }
                    };
                    last_heard = Instant::now();
                    if let Err(closing) = Box::pin(connection.receive(&text)).await {
                        break closing;
                    }
                    if connection.data.is_some() {
                        init_timer = None;
                    }
                }
                Some((id, response)) = connection.operations.next(), if connection.operations.is_polled() => {
                    Box::pin(connection.answer(id, response)).await;
                }
                Some((id, frame)) = connection.feeds.next(), if !connection.feeds.is_empty() => {
                    Box::pin(connection.forward(id, frame)).await;
                    // Frames of other subscriptions that are ready too go out in the same write.
                    for _ in 0..BATCH {
                        match connection.feeds.next().now_or_never() {
                            Some(Some((id, frame))) => Box::pin(connection.forward(id, frame)).await,
                            _ => break,
                        }
                    }
                }
                Some((id, feed)) = connection.handoffs.next(), if !connection.handoffs.is_empty() => {
                    connection.take_over(id, *feed);
                }
            }
            connection.out.flush().await;
            if let Some(broken) = connection.out.broken {
                break broken.closing();
            }
        };
        // The operations end first (their subscriptions, budgets and loaded documents are let go
        // of at once), then the socket closes.
        let Connection {
            out,
            operations,
            feeds,
            handoffs,
            ..
        } = connection;
        drop((operations, feeds, handoffs));
        Box::pin(out.close(closing)).await;
    }
}

/// Why the socket cannot be written to any more.
#[derive(Clone, Copy, Debug)]
enum Broken {
    /// The connection is gone.
    Failed,
    /// The socket took nothing for `stall`: the client stopped reading.
    Stalled,
}

impl Broken {
    fn closing(self) -> Closing {
        match self {
            Self::Failed => Closing::new(0, ""),
            Self::Stalled => {
                tracing::info!("closing a WebSocket whose client stopped reading");
                Closing::new(
                    close::TRY_AGAIN_LATER,
                    "the client stopped reading; reconnect",
                )
            }
        }
    }
}

/// The socket's sending half. Frames are buffered (tungstenite's write buffer) and flushed
/// once per event the connection handles, so what one event sends is one system call. A
/// socket that takes nothing for `stall` is given up on, which closes it and frees its
/// buffers; until then the connection waits for it (back-pressure: it stops reading the
/// client and its subscriptions, which then resync from their version vectors).
struct Outgoing {
    sink: SplitSink<Socket, Message>,
    stall: Duration,
    /// Frames were fed since the last flush.
    unflushed: bool,
    broken: Option<Broken>,
}

impl Outgoing {
    async fn send(&mut self, message: Message) {
        if self.broken.is_some() {
            return;
        }
        let fed = within(self.stall, self.sink.feed(message)).await;
        self.unflushed = true;
        if let Err(broken) = fed {
            self.broken = Some(broken);
        }
    }

    async fn flush(&mut self) {
        if !self.unflushed || self.broken.is_some() {
            return;
        }
        self.unflushed = false;
        if let Err(broken) = within(self.stall, self.sink.flush()).await {
            self.broken = Some(broken);
        }
    }

    /// Send the close frame `closing` names (none for code 0) and close the socket.
    async fn close(mut self, closing: Closing) {
        match self.broken {
            Some(Broken::Failed) => return,
            Some(Broken::Stalled) => {
                // Whatever fits into what the socket still takes; the client is not reading.
                self.stall = Duration::from_millis(100);
                self.broken = None;
            }
            None => {}
        }
        if closing.0 != 0 {
            let frame = CloseFrame {
                code: closing.0.into(),
                reason: Utf8Bytes::from(closing.1),
            };
            self.send(Message::Close(Some(frame))).await;
        }
        self.flush().await;
        if self.broken.is_none() {
            let _ = timeout(self.stall, self.sink.close()).await;
        }
    }
}

/// Run one write on the socket, giving up after `stall`. Most writes finish at once: only one
/// that has to wait sets a timer.
async fn within(
    stall: Duration,
    write: impl Future<Output = Result<(), tokio_tungstenite::tungstenite::Error>>,
) -> Result<(), Broken> {
    let mut write = pin!(write);
    let done = match write.as_mut().now_or_never() {
        Some(done) => done,
        // Boxed: the timer is needed only here, not in every connection's state.
        None => match Box::pin(timeout(stall, write)).await {
            Ok(done) => done,
            Err(_) => return Err(Broken::Stalled),
        },
    };
    done.map_err(|_| Broken::Failed)
}

/// The operations in flight on one socket, by id.
///
/// Not tokio-stream's `StreamMap`, which polls every stream it holds whenever any one of them
/// wakes: a client pipelining edits had up to `MAX_OPERATIONS` async-graphql executions polled
/// for every answer. `SelectAll` polls only the streams that woke. It cannot take a stream out,
/// so an operation ended early is aborted, and dropped the next time the set is polled (the
/// abort wakes it).
#[derive(Default)]
struct Operations {
    /// `None` once nothing is left in it: an empty `SelectAll` still holds two allocations,
    /// and a typical connection runs no operation for hours.
    running: Option<SelectAll<Running>>,
    /// The operations not ended, by id.
    handles: HashMap<String, AbortHandle>,
}

/// One operation in the set, with its id.
struct Running {
    id: String,
    responses: Abortable<Operation>,
}

impl Stream for Running {
    type Item = (String, Option<Box<Response>>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let response = ready!(self.responses.poll_next_unpin(cx));
        Poll::Ready(response.map(|response| (self.id.clone(), response)))
    }
}

impl Operations {
    /// How many have not ended.
    fn len(&self) -> usize {
        self.handles.len()
    }

    fn contains(&self, id: &str) -> bool {
        self.handles.contains_key(id)
    }

    fn ids(&self) -> impl Iterator<Item = &String> {
        self.handles.keys()
    }

    fn insert(&mut self, id: String, responses: Operation) {
        let (handle, registration) = AbortHandle::new_pair();
        if let Some(previous) = self.handles.insert(id.clone(), handle) {
            previous.abort();
        }
        let responses = Abortable::new(responses, registration);
        self.running
            .get_or_insert_with(SelectAll::new)
            .push(Running { id, responses });
    }

    fn remove(&mut self, id: &str) {
        if let Some(handle) = self.handles.remove(id) {
            handle.abort();
        }
        if self.handles.is_empty() {
            self.handles = HashMap::new();
        }
    }

    /// Whether the set holds streams, ended ones among them, that have not been dropped.
    fn is_polled(&self) -> bool {
        self.running.is_some()
    }
}

impl Stream for Operations {
    type Item = (String, Option<Box<Response>>);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(running) = self.running.as_mut() else {
            return Poll::Ready(None);
        };
        let next = ready!(running.poll_next_unpin(cx));
        if next.is_none() {
            self.running = None;
        }
        Poll::Ready(next)
    }
}

struct Connection {
    state: Arc<AppState>,
    out: Outgoing,
    /// Set by `connection_init`: who is connected, and what their operations share.
    data: Option<Arc<Data>>,
    /// The client's address, for the budgets of what it asks.
    client: Option<schema::budgets::ClientIp>,
    operations: Operations,
    /// Shared subscriptions' live parts, by the id of their operation.
    feeds: StreamMap<String, Feed>,
    /// Shared subscriptions whose catch-up is on its way.
    handoffs: StreamMap<String, Handoff>,
    /// Operations that have sent at least one `next`.
    answered: HashSet<String>,
}

impl Connection {
    async fn send(&mut self, message: serde_json::Value) {
        self.send_text(message.to_string()).await;
    }

    async fn send_text(&mut self, text: String) {
        if text.len() <= FRAGMENT {
            self.out.send(Message::Text(Utf8Bytes::from(text))).await;
            return;
        }
        // Fragments may split a character: the client checks UTF-8 on the whole message.
        let text = Bytes::from(text);
        let mut start = 0;
        while start < text.len() {
            let end = (start + FRAGMENT).min(text.len());
            let opcode = OpCode::Data(if start == 0 {
                DataKind::Text
            } else {
                DataKind::Continue
            });
            let fragment = Frame::message(text.slice(start..end), opcode, end == text.len());
            self.out.send(Message::Frame(fragment)).await;
            start = end;
        }
    }

    /// End an operation on the server's side.
    fn end(&mut self, id: &str) {
        self.operations.remove(id);
        self.feeds.remove(id);
        self.handoffs.remove(id);
        self.answered.remove(id);
        self.let_go_of_empty();
    }

    /// A shared subscription's live part arrived: it replaces async-graphql's stream, which
    /// has nothing more to send (its resolver waits forever) and whose memory is freed.
    fn take_over(&mut self, id: String, feed: LiveFeed) {
        self.operations.remove(&id);
        self.handoffs.remove(&id);
        self.answered.remove(&id);
        let frames = feed.into_stream().map(|frame| frame.map_err(Box::new));
        self.feeds.insert(id, frames.boxed());
        self.let_go_of_empty();
    }

    /// Give back the allocations of what has emptied. A typical connection holds one
    /// subscription for hours, and the operations that set it up would otherwise leave
    /// their places behind (about 300 bytes).
    fn let_go_of_empty(&mut self) {
        if self.handoffs.is_empty() {
            self.handoffs = StreamMap::new();
        }
        if self.answered.is_empty() {
            self.answered = HashSet::new();
        }
    }

    async fn receive(&mut self, text: &str) -> Result<(), Closing> {
        let message: ClientMessage = serde_json::from_str(text).map_err(|error| {
            Closing::new(
                close::BAD_REQUEST,
                format!("Invalid message received: {error}"),
            )
        })?;
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.data.is_some() {
                    return Err(Closing::new(
                        close::TOO_MANY_INITS,
                        "Too many initialisation requests",
                    ));
                }
                let services = &self.state.services;
                let viewer = viewer_from_init(payload.as_ref(), services);
                let signed_out = matches!(&viewer, Viewer::User(user) if services.revoked_sessions.is_revoked(user.session_id));
                if viewer.user().is_err() || signed_out {
                    return Err(Closing::new(
                        close::FORBIDDEN,
                        "Forbidden: the access token is invalid or expired",
                    ));
                }
                let mut data = schema::connection_data(viewer);
                if let Some(client) = self.client {
                    data.insert(client);
                }
                self.data = Some(Arc::new(data));
                self.send(json!({ "type": "connection_ack" })).await;
            }
            ClientMessage::Ping {} => self.send(json!({ "type": "pong" })).await,
            ClientMessage::Pong {} => {}
            ClientMessage::Subscribe { id, payload } => {
                let Some(data) = self.data.clone() else {
                    return Err(Closing::new(close::UNAUTHORIZED, "Unauthorized"));
                };
                if self.operations.contains(&id) || self.feeds.contains_key(&id) {
                    return Err(Closing::new(
                        close::SUBSCRIBER_EXISTS,
                        format!("Subscriber for {id} already exists"),
                    ));
                }
                let mut request = payload.data(schema::user_loader(&self.state.services));
                if let Some(selection) =
                    SharedSelection::of(&mut request, &self.state.services.parsed)
                {
                    let (handoff, feed) = LiveHandoff::new(self.state.selections.share(selection));
                    request = request.data(Arc::new(handoff));
                    let feed = futures_util::stream::once(feed)
                        .filter_map(|feed| async move { feed.ok().map(Box::new) })
                        .boxed();
                    self.handoffs.insert(id.clone(), feed);
                }
                let responses = self
                    .state
                    .schema
                    .execute_stream_with_session_data(request, data)
                    .map(|response| Some(Box::new(response)))
                    .chain(futures_util::stream::once(async { None }))
                    .boxed();
                self.answered.remove(&id);
                self.operations.insert(id, responses);
            }
            ClientMessage::Complete { id } => self.end(&id),
        }
        Ok(())
    }

    /// Pass an operation's response on: `next`, or `error` when it failed before producing
    /// anything (a request that does not validate, a subscription refused), or `complete`.
    async fn answer(&mut self, id: String, response: Option<Box<Response>>) {
        let Some(mut response) = response else {
            self.end(&id);
            self.send(json!({ "id": id, "type": "complete" })).await;
            return;
        };
        schema::fill_codes(&mut response.errors);
        let first = self.answered.insert(id.clone());
        if first && response.data == Value::Null && !response.errors.is_empty() {
            self.end(&id);
            self.send(json!({ "id": id, "type": "error", "payload": response.errors }))
                .await;
            return;
        }
        match serde_json::to_string(&response) {
            Ok(payload) => self.send_text(next_frame(&id, &payload)).await,
            Err(error) => tracing::error!(%error, "cannot encode a GraphQL response"),
        }
    }

    /// Pass a shared subscription's live frame on; an error ends the operation as an
    /// error event of the ordinary path would.
    async fn forward(
        &mut self,
        id: String,
        frame: Result<Arc<str>, Box<async_graphql::ServerError>>,
    ) {
        match frame {
            Ok(payload) => self.send_text(next_frame(&id, &payload)).await,
            Err(error) => {
                let mut errors = vec![*error];
                schema::fill_codes(&mut errors);
                let response = Response::from_errors(errors);
                self.end(&id);
                if let Ok(payload) = serde_json::to_string(&response) {
                    self.send_text(next_frame(&id, &payload)).await;
                }
                self.send(json!({ "id": id, "type": "complete" })).await;
            }
        }
    }
}

/// A `next` message around an already serialized payload.
fn next_frame(id: &str, payload: &str) -> String {
    // Serialising a `&str` cannot fail.
    let id = serde_json::to_string(id).unwrap_or_default();
    let mut frame = String::with_capacity(id.len() + payload.len() + 32);
    frame.push_str("{\"id\":");
    frame.push_str(&id);
    frame.push_str(",\"type\":\"next\",\"payload\":");
    frame.push_str(payload);
    frame.push('}');
    frame
}

/// The `connection_init` payload: `{ "authorization": "Bearer <access token>" }`.
fn viewer_from_init(payload: Option<&serde_json::Value>, services: &schema::Services) -> Viewer {
    let value = payload.and_then(|payload| {
        payload
            .get("authorization")
            .or_else(|| payload.get("Authorization"))
            .and_then(|v| v.as_str())
    });
    match value {
        None => Viewer::Anonymous,
        Some(value) => viewer_from_bearer(value, services),
    }
}

#[cfg(test)]
mod tests {
    /// The future `serve` returns is a large part of what an idle connection costs (its
    /// task holds it whole for the connection's life), so what its handlers wait on stays
    /// boxed.
    #[test]
    fn a_connections_future_stays_small() {
        fn output_size<A, B, C, D, E, R>(_: fn(A, B, C, D, E) -> R) -> usize {
            std::mem::size_of::<R>()
        }
        let size = output_size(super::serve);
        assert!(size <= 768, "the connection's future takes {size} bytes");
    }
}
