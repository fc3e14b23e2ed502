//! A plain graphql-ws (`graphql-transport-ws`) client over a real WebSocket, written from the
//! protocol description, not from the server's code.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::TestApp;

/// How long a test waits for a message it expects: generous, since on a loaded machine a
/// worker process starting (it detects its toolchains by running them) or a reaper taking up
/// a dead worker's run (its heartbeat is stale after 10 s) takes well over 15 s. A test that
/// passes never waits this long.
pub const WAIT: Duration = Duration::from_secs(40);

/// What the server sent for one operation.
#[derive(Debug, Clone)]
pub enum Event {
    /// A `next` payload: `{ data, errors }`.
    Next(Value),
    /// An `error` message: a list of GraphQL errors.
    Error(Value),
    Complete,
}

impl Event {
    /// The `data` of a `next` without errors.
    pub fn data(&self) -> &Value {
        match self {
            Event::Next(payload) if payload.get("errors").is_none() => &payload["data"],
            other => panic!("expected data, got {other:?}"),
        }
    }

    /// The first error's `extensions.code`, whether sent as `next` or `error`.
    pub fn code(&self) -> String {
        let error = match self {
            Event::Next(payload) => &payload["errors"][0],
            Event::Error(errors) => &errors[0],
            Event::Complete => panic!("expected an error, got complete"),
        };
        error["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("error without a code: {error}"))
            .to_owned()
    }
}

pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    pending: HashMap<String, VecDeque<Event>>,
}

impl WsClient {
    /// Connect and send `connection_init` with `{ authorization: "Bearer <token>" }` when a
    /// token is given; waits for `connection_ack`.
    pub async fn connect(app: &TestApp, token: Option<&str>) -> WsClient {
        Self::connect_with(app, token, WebSocketConfig::default()).await
    }

    /// [`WsClient::connect`] with the client's own limits on what it takes (frame sizes, say).
    pub async fn connect_with(
        app: &TestApp,
        token: Option<&str>,
        config: WebSocketConfig,
    ) -> WsClient {
        let mut client = Self::open_with(app, config).await;
        let payload = match token {
            Some(token) => json!({ "authorization": format!("Bearer {token}") }),
            None => json!({}),
        };
        client
            .send(json!({ "type": "connection_init", "payload": payload }))
            .await;
        loop {
            let message = client.receive().await.expect("connection_ack");
            match message["type"].as_str() {
                Some("connection_ack") => return client,
                Some("ping") => client.send(json!({ "type": "pong" })).await,
                _ => panic!("expected connection_ack, got {message}"),
            }
        }
    }

    /// Open the socket without initialising the connection.
    pub async fn open(app: &TestApp) -> WsClient {
        Self::open_with(app, WebSocketConfig::default()).await
    }

    async fn open_with(app: &TestApp, config: WebSocketConfig) -> WsClient {
        let mut request = format!("ws://{}/graphql", app.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (socket, response) =
            tokio_tungstenite::connect_async_with_config(request, Some(config), false)
                .await
                .expect("WebSocket upgrade");
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        WsClient {
            socket,
            next_id: 0,
            pending: HashMap::new(),
        }
    }

    pub async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send on the WebSocket");
    }

    /// Send a raw frame (for protocol abuse tests).
    pub async fn send_frame(&mut self, frame: Message) {
        let _ = self.socket.send(frame).await;
    }

    /// The next protocol message, answering pings on the way; `None` once the socket closed.
    async fn receive(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a message within the wait");
            match frame {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON message");
                    // WS_DEBUG=1 prints every message the server sends.
                    if std::env::var_os("WS_DEBUG").is_some() {
                        eprintln!("<- {message}");
                    }
                    if message["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(message);
                }
                Some(Ok(Message::Close(_))) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    /// Start an operation (query, mutation or subscription); returns its id.
    pub async fn subscribe(&mut self, query: &str, variables: Value) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.pending.insert(id.clone(), VecDeque::new());
        self.send(json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": variables },
        }))
        .await;
        id
    }

    /// Stop an operation.
    pub async fn complete(&mut self, id: &str) {
        self.send(json!({ "id": id, "type": "complete" })).await;
        self.pending.remove(id);
    }

    /// The next event of operation `id` (panics after [`WAIT`]).
    pub async fn next(&mut self, id: &str) -> Event {
        loop {
            if let Some(event) = self.pending.get_mut(id).and_then(VecDeque::pop_front) {
                return event;
            }
            let message = self.receive().await.expect("socket open");
            let Some(of) = message["id"].as_str() else {
                continue;
            };
            let event = match message["type"].as_str() {
                Some("next") => Event::Next(message["payload"].clone()),
                Some("error") => Event::Error(message["payload"].clone()),
                Some("complete") => Event::Complete,
                _ => continue,
            };
            if let Some(queue) = self.pending.get_mut(of) {
                queue.push_back(event);
            }
        }
    }

    /// Whether operation `id` produces nothing for `within` (an event that does arrive stays
    /// queued for [`WsClient::next`]).
    pub async fn is_quiet(&mut self, id: &str, within: Duration) -> bool {
        match tokio::time::timeout(within, self.next(id)).await {
            Err(_) => true,
            Ok(event) => {
                self.pending
                    .entry(id.to_owned())
                    .or_default()
                    .push_front(event);
                false
            }
        }
    }

    /// Run a query or mutation over the socket and return its one result payload.
    pub async fn request(&mut self, query: &str, variables: Value) -> Value {
        let id = self.subscribe(query, variables).await;
        let event = self.next(&id).await;
        let payload = match event {
            Event::Next(payload) => payload,
            Event::Error(errors) => json!({ "errors": errors }),
            Event::Complete => panic!("operation completed without a result"),
        };
        self.pending.remove(&id);
        payload
    }

    /// [`WsClient::request`] to a server that may die meanwhile: `None` when the socket
    /// closes before the result arrives.
    pub async fn try_request(&mut self, query: &str, variables: Value) -> Option<Value> {
        self.next_id += 1;
        let id = self.next_id.to_string();
        let start = json!({
            "id": id,
            "type": "subscribe",
            "payload": { "query": query, "variables": variables },
        });
        self.socket
            .send(Message::text(start.to_string()))
            .await
            .ok()?;
        loop {
            let message = self.receive().await?;
            let event = match message["type"].as_str() {
                Some("next") => Event::Next(message["payload"].clone()),
                Some("error") => Event::Error(message["payload"].clone()),
                Some("complete") => Event::Complete,
                _ => continue,
            };
            match (message["id"].as_str(), event) {
                (Some(of), Event::Next(payload)) if of == id => return Some(payload),
                (Some(of), Event::Error(errors)) if of == id => {
                    return Some(json!({ "errors": errors }));
                }
                (Some(of), _) if of == id => return None,
                (Some(of), event) => {
                    if let Some(queue) = self.pending.get_mut(of) {
                        queue.push_back(event);
                    }
                }
                (None, _) => {}
            }
        }
    }

    /// Whether the server closed the socket (waits up to [`WAIT`]).
    pub async fn closed(&mut self) -> bool {
        self.receive().await.is_none()
    }

    /// Read without answering anything (pings included) until the server closes the socket;
    /// the close code, or `None` when the connection just ended. Waits up to [`WAIT`].
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("the server closes the socket within the wait");
            match frame {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(text))) => {
                    let message: Value = serde_json::from_str(&text).expect("JSON message");
                    if let Some(id) = message["id"].as_str()
                        && let Some(queue) = self.pending.get_mut(id)
                    {
                        let event = match message["type"].as_str() {
                            Some("next") => Event::Next(message["payload"].clone()),
                            Some("error") => Event::Error(message["payload"].clone()),
                            _ => Event::Complete,
                        };
                        queue.push_back(event);
                    }
                }
                Some(Ok(_)) => {}
            }
        }
    }

    /// The events received so far for `id` (after [`WsClient::close_code`]).
    pub fn received(&mut self, id: &str) -> Vec<Event> {
        self.pending.remove(id).map(Vec::from).unwrap_or_default()
    }
}
