//! Shared frames: one execution of a `documentUpdates` subscription per update and selection,
//! not one per subscriber.
//!
//! async-graphql executes a subscription's selection for every event of every subscriber:
//! with a hundred editors on a document, an update is resolved, turned into a `Value` and
//! serialized a hundred times, the same way each time. Here a WebSocket connection that sees
//! a `documentUpdates` subscription selecting only the update's own scalars
//! ([`SharedSelection::of`]) hands the resolver a [`LiveHandoff`]. The resolver still does
//! everything else (validation, access, budgets, the catch-up, revocation), then passes the
//! live part of the subscription, a [`LiveFeed`], back to the connection. The feed renders
//! each update once per selection ([`DocUpdate::frame`], cached on the update every
//! subscriber shares), so a subscriber's work is a pointer copy, a queue push and a socket
//! write.
//!
//! Anything else (a selection with `author`, fragments, directives, several operations) takes
//! the ordinary path. Both paths give the same JSON, which a test checks.

use std::sync::{Arc, Mutex, PoisonError};

use async_graphql::ServerError;
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use loro::VersionVector;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;

use super::hub::{DocUpdate, Documents, Entry, Subscription};
use crate::context::SubscriptionPermit;
use crate::error::ApiResult;
use crate::metrics::Metrics;
use crate::projects::revocation::Revocation;

/// The fields of `DocumentUpdate` a shared frame can hold: those that are the update's own,
/// the same for every viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Update,
    Seq,
    CatchUp,
    VersionVector,
    ClientId,
    Typename,
}

impl Field {
    fn named(name: &str) -> Option<Self> {
        Some(match name {
            "update" => Self::Update,
            "seq" => Self::Seq,
            "catchUp" => Self::CatchUp,
            "versionVector" => Self::VersionVector,
            "clientId" => Self::ClientId,
            "__typename" => Self::Typename,
            _ => return None,
        })
    }
}

/// What a shareable `documentUpdates` subscription selects: its response keys in order.
#[derive(Debug, PartialEq, Eq)]
pub struct SharedSelection {
    /// The root field's response key (`documentUpdates` or its alias).
    root: String,
    fields: Vec<(String, Field)>,
}

/// How many selections' frames an update keeps: enough for every client in practice, and a
/// bound on what clients selecting in ever new ways can make an update hold.
const FRAMES_PER_UPDATE: usize = 8;

/// Most selections [`Selections`] shares at once.
const SHARED_SELECTIONS: usize = 64;

/// The selections of the node's shared subscriptions, one copy of each: a hundred subscribers
/// selecting `{ update seq }` share one, instead of each keeping its own (part of what every
/// idle subscription costs), and their frames are found by pointer.
#[derive(Default)]
pub struct Selections(Mutex<Vec<std::sync::Weak<SharedSelection>>>);

impl Selections {
    /// The one copy of `selection`. Bounded: when `SHARED_SELECTIONS` different selections
    /// are all in use (clients selecting in ever new ways), a new one is simply not shared.
    pub fn share(&self, selection: SharedSelection) -> Arc<SharedSelection> {
        let mut shared = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = shared
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .find(|seen| **seen == selection)
        {
            return found;
        }
        let selection = Arc::new(selection);
        if shared.len() >= SHARED_SELECTIONS {
            shared.retain(|seen| seen.strong_count() > 0);
        }
        if shared.len() < SHARED_SELECTIONS {
            shared.push(Arc::downgrade(&selection));
        }
        selection
    }
}

/// The frames rendered of one update, by selection.
#[derive(Debug, Default)]
pub(super) struct Frames(Mutex<Vec<(Arc<SharedSelection>, Arc<str>)>>);

impl SharedSelection {
    /// The selection of `request` when it is one `documentUpdates` subscription over the
    /// update's own scalars, with no fragments or directives; `None` sends it down the
    /// ordinary path (which also reports whatever is wrong with it).
    ///
    /// Looked up among the documents parsed lately (`parsed`, as execution will look it up);
    /// one that is not there is parsed here, only once it passed [`crate::limits::scan`] as
    /// execution would, and stays in `request` so that execution does not parse it again.
    pub fn of(
        request: &mut async_graphql::Request,
        parsed: &crate::ParsedDocuments,
    ) -> Option<Self> {
        if let Some(document) = parsed.get(&request.query) {
            return Self::of_document(&document, request.operation_name.as_deref());
        }
        crate::limits::scan(&request.query).ok()?;
        // Taken out for the moment the document borrows the request, not copied.
        let operation_name = request.operation_name.take();
        let selection = match request.parsed_query() {
            Ok(document) => Self::of_document(document, operation_name.as_deref()),
            Err(_) => None,
        };
        request.operation_name = operation_name;
        selection
    }

    fn of_document(document: &ExecutableDocument, operation_name: Option<&str>) -> Option<Self> {
        let operation = match (&document.operations, operation_name) {
            (DocumentOperations::Single(operation), None) => operation,
            (DocumentOperations::Single(_), Some(_)) => return None,
            (DocumentOperations::Multiple(operations), Some(name)) => operations.get(name)?,
            // One named operation needs no operationName.
            (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => {
                operations.values().next()?
            }
            (DocumentOperations::Multiple(_), None) => return None,
        };
        let operation = &operation.node;
        if operation.ty != OperationType::Subscription || !operation.directives.is_empty() {
            return None;
        }
        let [root] = operation.selection_set.node.items.as_slice() else {
            return None;
        };
        let Selection::Field(root) = &root.node else {
            return None;
        };
        let root = &root.node;
        if root.name.node != "documentUpdates" || !root.directives.is_empty() {
            return None;
        }
        let fields = scalar_fields(&root.selection_set.node)?;
        Some(Self {
            root: root.response_key().node.to_string(),
            fields,
        })
    }

    /// `{"data":{<root>:{...}}}` for `update`.
    fn render(&self, update: &DocUpdate) -> String {
        let mut out = String::with_capacity(update.update.len() + 128);
        out.push_str("{\"data\":{");
        push_json(&mut out, &self.root);
        out.push_str(":{");
        for (index, (key, field)) in self.fields.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            push_json(&mut out, key);
            out.push(':');
            match field {
                Field::Update => push_json(&mut out, &update.update),
                Field::Seq => match update.seq {
                    Some(seq) => out.push_str(&seq.to_string()),
                    None => out.push_str("null"),
                },
                // As `DocumentUpdate.catchUp`: the catch-up and resyncs carry no `seq`.
                Field::CatchUp => out.push_str(if update.seq.is_none() {
                    "true"
                } else {
                    "false"
                }),
                Field::VersionVector => push_json(&mut out, &update.version_vector),
                Field::ClientId => match &update.client_id {
                    Some(client_id) => push_json(&mut out, client_id),
                    None => out.push_str("null"),
                },
                Field::Typename => out.push_str("\"DocumentUpdate\""),
            }
        }
        out.push_str("}}}");
        out
    }
}

/// The selected fields when every one is a plain scalar of the update's own, once each.
fn scalar_fields(set: &SelectionSet) -> Option<Vec<(String, Field)>> {
    let mut fields: Vec<(String, Field)> = Vec::with_capacity(set.items.len());
    for item in &set.items {
        let Selection::Field(field) = &item.node else {
            return None;
        };
        let field = &field.node;
        if !field.directives.is_empty()
            || !field.arguments.is_empty()
            || !field.selection_set.node.items.is_empty()
        {
            return None;
        }
        let key = field.response_key().node.as_str();
        if fields.iter().any(|(seen, _)| seen == key) {
            return None;
        }
        fields.push((key.to_string(), Field::named(&field.name.node)?));
    }
    (!fields.is_empty()).then_some(fields)
}

fn push_json(out: &mut String, text: &str) {
    // Writing a `&str` into a `String` cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

impl DocUpdate {
    /// This update as `selection` renders it, rendered once for every subscriber that
    /// selects the same (live updates are never catch-ups; catch-ups and resyncs belong to
    /// one subscriber and are not shared).
    pub fn frame(&self, selection: &Arc<SharedSelection>) -> Arc<str> {
        let mut frames = self.frames.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, frame)) = frames
            .iter()
            .find(|(seen, _)| Arc::ptr_eq(seen, selection) || **seen == **selection)
        {
            return frame.clone();
        }
        let frame: Arc<str> = selection.render(self).into();
        if frames.len() < FRAMES_PER_UPDATE {
            frames.push((selection.clone(), frame.clone()));
        }
        frame
    }
}

/// Given by a WebSocket connection to a shareable subscription: where the resolver sends the
/// live part once the catch-up is out.
pub struct LiveHandoff {
    selection: Arc<SharedSelection>,
    to: Mutex<Option<oneshot::Sender<LiveFeed>>>,
}

impl LiveHandoff {
    /// The handoff to put in the request's data, and where the feed arrives.
    pub fn new(selection: Arc<SharedSelection>) -> (Self, oneshot::Receiver<LiveFeed>) {
        let (to, from) = oneshot::channel();
        let handoff = Self {
            selection,
            to: Mutex::new(Some(to)),
        };
        (handoff, from)
    }

    /// Hand the live part over (the connection then drops async-graphql's stream, and the
    /// feed counts as the active subscription in its place).
    pub(super) fn hand(&self, live: Live, metrics: &Arc<Metrics>) {
        let to = self
            .to
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(to) = to {
            let _ = to.send(LiveFeed {
                selection: self.selection.clone(),
                live,
                _active: Active::new(metrics.clone()),
            });
        }
    }
}

/// A `documentUpdates` subscription after its catch-up, on either path: the document's
/// updates, a resync after lagging, and the end when access is lost.
pub(super) struct Live {
    updates: broadcast::Receiver<Arc<DocUpdate>>,
    /// What the subscriber was sent last, whose version vector a resync starts from.
    last: Sent,
    /// Keeps the document loaded while the subscription lives.
    entry: Arc<Entry>,
    documents: Documents,
    /// Ends the subscription when the viewer loses access.
    revocation: Revocation,
    /// The subscription's place in its connection's budget.
    _permit: Option<SubscriptionPermit>,
}

impl Live {
    pub(super) fn new(
        subscription: Subscription,
        documents: Documents,
        revocation: Revocation,
        permit: Option<SubscriptionPermit>,
    ) -> Self {
        Self {
            updates: subscription.live,
            last: Sent::Update(Arc::new(subscription.catch_up)),
            entry: subscription.entry,
            documents,
            revocation,
            _permit: permit,
        }
    }

    /// The first event: what the subscriber lacked. Taken once: from then on the
    /// subscription keeps only its version vector, not the catch-up itself (a whole document
    /// for a new subscriber, which every idle subscriber would otherwise hold).
    pub(super) fn catch_up(&mut self) -> Arc<DocUpdate> {
        let version = Sent::Version(self.last.version_vector().into());
        match std::mem::replace(&mut self.last, version) {
            Sent::Update(catch_up) => catch_up,
            // Taken already: what is left of it is its version, with nothing to import.
            Sent::Version(version) => Arc::new(DocUpdate {
                seq: None,
                update: Arc::from(""),
                author: None,
                client_id: None,
                version_vector: version.into(),
                frames: Frames::default(),
            }),
        }
    }

    /// The next update to send (a resync, without `seq`, after lagging); an error ends the
    /// subscription; `None` when the document's feed closed.
    pub(super) async fn next(&mut self) -> Option<ApiResult<Arc<DocUpdate>>> {
        let received = tokio::select! {
            received = self.updates.recv() => received,
            error = self.revocation.revoked() => return Some(Err(error)),
        };
        let update = match received {
            Ok(update) => update,
            Err(RecvError::Lagged(_)) => {
                let known = known_version(self.last.version_vector());
                // Boxed: a query's future is large, and this one would live in every
                // subscription's state.
                match Box::pin(self.documents.resync(&self.entry, &known)).await {
                    Ok(update) => Arc::new(update),
                    Err(error) => return Some(Err(error)),
                }
            }
            Err(RecvError::Closed) => return None,
        };
        self.last = Sent::Update(update.clone());
        Some(Ok(update))
    }
}

/// The live part of a shared subscription, as the frames its connection sends.
pub struct LiveFeed {
    selection: Arc<SharedSelection>,
    live: Live,
    _active: Active,
}

/// Counts the feed among the node's active `documentUpdates` subscriptions while it lives.
struct Active(Arc<Metrics>);

const FIELD: &str = "documentUpdates";

impl Active {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.subscription_started(FIELD);
        Self(metrics)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.subscription_ended(FIELD);
    }
}

impl LiveFeed {
    /// The next frame (`{"data":…}`, to send as a `next` payload); an error ends the feed;
    /// `None` when the document's feed closed.
    pub async fn next(&mut self) -> Option<Result<Arc<str>, ServerError>> {
        let update = self.live.next().await?;
        Some(
            update
                .map(|update| update.frame(&self.selection))
                .map_err(|error| {
                    async_graphql::Error::from(error)
                        .into_server_error(async_graphql::Pos::default())
                }),
        )
    }

    /// The feed as a stream that ends after its first error.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Arc<str>, ServerError>> {
        futures_util::stream::unfold(Some(self), |feed| async move {
            let mut feed = feed?;
            let item = feed.next().await?;
            let more = item.is_ok().then_some(feed);
            Some((item, more))
        })
    }
}

/// What a subscription sent last.
enum Sent {
    /// An update (the catch-up, until it is taken).
    Update(Arc<DocUpdate>),
    /// Only the version vector of a catch-up already sent: its own allocation of a few bytes,
    /// where a whole update would be kept by every idle subscriber.
    Version(Box<str>),
}

impl Sent {
    fn version_vector(&self) -> &str {
        match self {
            Self::Update(update) => &update.version_vector,
            Self::Version(version) => version,
        }
    }
}

/// The version a subscriber holds once sent an update of version vector `encoded` (base64).
fn known_version(encoded: &str) -> VersionVector {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .ok()
        .and_then(|bytes| VersionVector::decode(&bytes).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(query: &str, operation: Option<&str>) -> Option<SharedSelection> {
        let document = async_graphql::parser::parse_query(query).expect("parses");
        SharedSelection::of_document(&document, operation)
    }

    #[test]
    fn a_document_parsed_lately_is_looked_up_and_not_parsed_again() {
        let parsed = crate::ParsedDocuments::default();
        let text = "subscription { documentUpdates(projectId: 1) { update seq } }";
        let mut request = async_graphql::Request::new(text);
        let first = SharedSelection::of(&mut request, &parsed).expect("shareable");
        assert_eq!(
            first.fields,
            [("update".into(), Field::Update), ("seq".into(), Field::Seq)]
        );
        // What is kept under a text is what is looked at (kept here under another's text, to
        // tell the two apart), and a request found there is left for execution to take it.
        let other = async_graphql::parser::parse_query(
            "subscription { documentUpdates(projectId: 1) { seq } }",
        )
        .expect("parses");
        parsed.keep(text.into(), other);
        let mut again = async_graphql::Request::new(text);
        let looked_up = SharedSelection::of(&mut again, &parsed).expect("shareable");
        assert_eq!(looked_up.fields, [("seq".into(), Field::Seq)]);
        // Nothing is looked up for a text that is not kept, nor parsed past the limits.
        let deep = format!(
            "subscription {}{}",
            "{ a ".repeat(10_000),
            "}".repeat(10_000)
        );
        assert_eq!(
            SharedSelection::of(&mut async_graphql::Request::new(deep), &parsed),
            None
        );
    }

    #[test]
    fn subscribers_selecting_alike_share_one_selection_and_the_set_is_bounded() {
        let selections = Selections::default();
        let query = |fields: &str| {
            selection(
                &format!("subscription {{ documentUpdates(projectId: 1) {{ {fields} }} }}"),
                None,
            )
            .expect("shareable")
        };
        let one = selections.share(query("update seq"));
        let two = selections.share(query("update  seq"));
        assert!(Arc::ptr_eq(&one, &two));
        assert!(!Arc::ptr_eq(&one, &selections.share(query("seq update"))));
        // Every place taken by a selection in use: a new one is not shared, and still works.
        let held: Vec<_> = (0..SHARED_SELECTIONS)
            .map(|i| selections.share(query(&format!("a{i}: seq"))))
            .collect();
        let extra = selections.share(query("b: seq"));
        assert!(!Arc::ptr_eq(&extra, &selections.share(query("b: seq"))));
        assert_eq!(extra.root, "documentUpdates");
        // Places of selections nobody uses any more are taken again.
        drop((held, one, two));
        let again = selections.share(query("b: seq"));
        assert!(Arc::ptr_eq(&again, &selections.share(query("b: seq"))));
    }

    #[test]
    fn plain_scalar_selections_are_shared() {
        let shared = selection(
            "subscription($p: ID!) { feed: documentUpdates(projectId: $p) { seq u: update catchUp versionVector clientId __typename } }",
            None,
        )
        .expect("shareable");
        assert_eq!(shared.root, "feed");
        let keys: Vec<&str> = shared.fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "seq",
                "u",
                "catchUp",
                "versionVector",
                "clientId",
                "__typename"
            ]
        );
        assert!(
            selection(
                "subscription A { documentUpdates(projectId: 1) { seq } } query B { me { id } }",
                Some("A"),
            )
            .is_some()
        );
        // A generated client's named operation, with or without its operationName.
        let named =
            "subscription DocumentUpdates($p: ID!) { documentUpdates(projectId: $p) { update } }";
        assert!(selection(named, Some("DocumentUpdates")).is_some());
        assert!(selection(named, None).is_some());
    }

    #[test]
    fn anything_else_takes_the_ordinary_path() {
        for query in [
            // another operation type, another root field, two root fields
            "query { documentUpdates(projectId: 1) { seq } }",
            "subscription { projectEvents(projectId: 1) { __typename } }",
            "subscription { documentUpdates(projectId: 1) { seq } b: documentUpdates(projectId: 2) { seq } }",
            // what depends on the viewer, or on the selection's evaluation
            "subscription { documentUpdates(projectId: 1) { seq author { id } } }",
            "subscription { documentUpdates(projectId: 1) { seq @include(if: false) update } }",
            "subscription { documentUpdates(projectId: 1) @skip(if: true) { seq } }",
            "subscription @foo { documentUpdates(projectId: 1) { seq } }",
            "subscription { documentUpdates(projectId: 1) { ... on DocumentUpdate { seq } } }",
            "subscription { documentUpdates(projectId: 1) { ...F } } fragment F on DocumentUpdate { seq }",
            // a key twice, an unknown field, a field with arguments
            "subscription { documentUpdates(projectId: 1) { seq seq } }",
            "subscription { documentUpdates(projectId: 1) { seq: update seq } }",
            "subscription { documentUpdates(projectId: 1) { nope } }",
            "subscription { documentUpdates(projectId: 1) { seq(x: 1) } }",
        ] {
            assert_eq!(selection(query, None), None, "{query}");
        }
        let two = "subscription A { documentUpdates(projectId: 1) { seq } } subscription B { documentUpdates(projectId: 1) { seq } }";
        assert_eq!(selection(two, None), None);
        assert_eq!(selection(two, Some("C")), None);
        assert_eq!(
            selection(
                "subscription { documentUpdates(projectId: 1) { seq } }",
                Some("A")
            ),
            None
        );
    }

    #[test]
    fn a_frame_is_rendered_once_per_selection() {
        let update = DocUpdate {
            seq: Some(7),
            update: "AAEC".into(),
            author: None,
            client_id: Some("tab \"1\"".into()),
            version_vector: "VV==".into(),
            frames: Frames::default(),
        };
        let one = Arc::new(
            selection(
                "subscription { documentUpdates(projectId: 1) { update seq catchUp clientId versionVector __typename } }",
                None,
            )
            .expect("shareable"),
        );
        let frame = update.frame(&one);
        let parsed: serde_json::Value = serde_json::from_str(&frame).expect("JSON");
        assert_eq!(
            parsed,
            serde_json::json!({ "data": { "documentUpdates": {
                "update": "AAEC", "seq": 7, "catchUp": false, "clientId": "tab \"1\"",
                "versionVector": "VV==", "__typename": "DocumentUpdate",
            } } })
        );
        // Another subscriber's equal selection gets the same frame, not a new rendering.
        let same = Arc::new(
            selection(
                "subscription { documentUpdates(projectId: 2) { update seq catchUp clientId versionVector __typename } }",
                None,
            )
            .expect("shareable"),
        );
        assert!(Arc::ptr_eq(&frame, &update.frame(&same)));
        // Past the bound, frames are still right but no longer kept.
        for n in 0..FRAMES_PER_UPDATE + 2 {
            let alias = Arc::new(
                selection(
                    &format!("subscription {{ d{n}: documentUpdates(projectId: 1) {{ seq }} }}"),
                    None,
                )
                .expect("shareable"),
            );
            assert_eq!(
                &*update.frame(&alias),
                format!("{{\"data\":{{\"d{n}\":{{\"seq\":7}}}}}}")
            );
        }
        assert_eq!(update.frames.0.lock().unwrap().len(), FRAMES_PER_UPDATE);
    }
}
