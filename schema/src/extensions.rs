//! Schema extensions.

use std::sync::Arc;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextRequest,
    NextResolve, NextSubscribe, ResolveInfo,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{Request, Response, ServerError, ServerResult, Value};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use crate::error::codes;
use crate::limits;

/// Gives every error an `extensions.code`. Resolver errors already carry theirs (see
/// `error.rs`); what is left are async-graphql's own parse, validation and limit errors,
/// which are all faults in the request, so BAD_USER_INPUT.
pub struct ErrorCodes;

impl ExtensionFactory for ErrorCodes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ErrorCodes)
    }
}

#[async_trait::async_trait]
impl Extension for ErrorCodes {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut response = next.run(ctx).await;
        fill_codes(&mut response.errors);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        next.run(ctx, stream)
            .map(|mut response| {
                fill_codes(&mut response.errors);
                response
            })
            .boxed()
    }
}

pub fn fill_codes(errors: &mut [ServerError]) {
    for error in errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", codes::BAD_USER_INPUT);
        }
    }
}

/// What `__schema { description }` answers (async-graphql's own is a fixed sentence about
/// GraphQL in general).
pub const SCHEMA_DESCRIPTION: &str = "CodeCrafter: real-time collaborative code editing. \
Accounts and sessions, projects and their members, live Loro CRDT documents with presence and \
chat over graphql-ws, named versions, forks, and sandboxed code runs whose output streams to \
everyone in the project.";

/// Bounds the work of every request before it is parsed, validated and executed (see
/// [`limits`]), cuts queries off after `query_timeout`, and answers the schema's description.
pub struct RequestLimits {
    /// Largest variables, in bytes (an `applyUpdate` carries its update there, in base64).
    pub max_variables_bytes: usize,
    /// Whether `__schema` and `__type` are answered; when not, asking is refused in words
    /// (async-graphql alone would answer `null`).
    pub introspection: bool,
    /// Longest a query (a read) may execute. Mutations are not cut off midway: dropping one
    /// between its commit and its broadcast would lose the broadcast; their work is bounded
    /// by the limits on their input instead.
    pub query_timeout: Duration,
    parsed: Arc<ParsedDocuments>,
}

impl RequestLimits {
    /// Keeping what it parses in `parsed`.
    pub fn new(options: &crate::SchemaOptions, parsed: Arc<ParsedDocuments>) -> Self {
        Self {
            max_variables_bytes: options.max_variables_bytes,
            introspection: options.introspection,
            query_timeout: options.query_timeout,
            parsed,
        }
    }
}

impl ExtensionFactory for RequestLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestLimitsExtension {
            max_variables_bytes: self.max_variables_bytes,
            introspection: self.introspection,
            query_timeout: self.query_timeout,
            parsed: self.parsed.clone(),
            only_queries: AtomicBool::new(false),
        })
    }
}

/// Documents parsed lately, by their text. Clients send the same few operations again and
/// again, and parsing was the largest step of a small query before its execution (7 % of the
/// CPU of `project(id)` under load); a clone of the parsed document costs far less. Bounded by
/// an estimate of the documents' memory; only documents within every limit are kept.
/// Shared ([`crate::Services::parsed`]) with the graphql-ws route, which looks at a document
/// before executing it (`documents::live::SharedSelection::of`).
pub struct ParsedDocuments(
    quick_cache::sync::Cache<String, Arc<ExecutableDocument>, DocumentWeight>,
);

/// Longest text whose document is kept.
const MOST_CACHED_QUERY_BYTES: usize = 4 * 1024;
/// Estimated memory of all kept documents (a parsed document takes some tens of times its
/// text: a field of two characters is a node of a hundred bytes).
const CACHED_DOCUMENTS_BYTES: u64 = 8 * 1024 * 1024;
const DOCUMENT_BYTES_PER_TEXT_BYTE: u64 = 64;

#[derive(Clone)]
struct DocumentWeight;

impl quick_cache::Weighter<String, Arc<ExecutableDocument>> for DocumentWeight {
    fn weight(&self, text: &String, _: &Arc<ExecutableDocument>) -> u64 {
        text.len() as u64 * DOCUMENT_BYTES_PER_TEXT_BYTE
    }
}

impl Default for ParsedDocuments {
    fn default() -> Self {
        Self::new()
    }
}

impl ParsedDocuments {
    /// The document kept for `text`, if any: what parsing it would give, once it passed
    /// every limit.
    pub fn get(&self, text: &str) -> Option<Arc<ExecutableDocument>> {
        self.0.get(text)
    }

    /// Keep `document`, parsed from `text` (within every limit).
    pub(crate) fn keep(&self, text: String, document: ExecutableDocument) {
        self.0.insert(text, Arc::new(document));
    }

    fn new() -> Self {
        let typical = 512 * DOCUMENT_BYTES_PER_TEXT_BYTE;
        Self(quick_cache::sync::Cache::with_weighter(
            usize::try_from(CACHED_DOCUMENTS_BYTES / typical).unwrap_or(1),
            CACHED_DOCUMENTS_BYTES,
            DocumentWeight,
        ))
    }
}

struct RequestLimitsExtension {
    max_variables_bytes: usize,
    introspection: bool,
    query_timeout: Duration,
    parsed: Arc<ParsedDocuments>,
    /// Set once the document is parsed: whether every operation in it is a query.
    only_queries: AtomicBool,
}

#[async_trait::async_trait]
impl Extension for RequestLimitsExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        limits::scan(&request.query)?;
        limits::check_variables(&request.variables, self.max_variables_bytes)?;
        let to_keep = match self.parsed.0.get(request.query.as_str()) {
            Some(document) => {
                request.set_parsed_query(ExecutableDocument::clone(&document));
                None
            }
            None => (request.query.len() <= MOST_CACHED_QUERY_BYTES).then(|| request.query.clone()),
        };
        // Measured here, before async-graphql's own recursion check, which walks every
        // fragment spread without remembering (2^n for a chain of doubling fragments). A
        // document that does not parse is left for async-graphql to report.
        if let Ok(document) = request.parsed_query() {
            let measured = limits::measure(document)?;
            if measured.introspection && !self.introspection {
                return Err(limits::refuse(
                    "introspection",
                    "introspection is turned off on this server".into(),
                ));
            }
            let only_queries = document
                .operations
                .iter()
                .all(|(_, operation)| operation.node.ty == OperationType::Query);
            self.only_queries.store(only_queries, Ordering::Relaxed);
            if let Some(text) = to_keep {
                self.parsed.keep(text, document.clone());
            }
        }
        next.run(ctx, request).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if !self.only_queries.load(Ordering::Relaxed) {
            return null_failed_roots(next.run(ctx, operation_name).await);
        }
        match tokio::time::timeout(self.query_timeout, next.run(ctx, operation_name)).await {
            Ok(response) => null_failed_roots(response),
            Err(_) => Response::from_errors(vec![limits::refuse(
                "timeout",
                format!(
                    "the query took longer than {} ms and was stopped",
                    self.query_timeout.as_millis()
                ),
            )]),
        }
    }

    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.parent_type == "__Schema" && info.name == "description" {
            return Ok(Some(Value::String(SCHEMA_DESCRIPTION.to_owned())));
        }
        next.run(ctx, info).await
    }
}

/// A non-null root field that failed makes `data` null, as the GraphQL spec says; async-graphql
/// leaves the other root fields and just omits the failed one, which typed clients cannot
/// tell from a bug. A failed nullable root field is present as `null`, so a field in error
/// but absent from `data` was non-null.
fn null_failed_roots(mut response: Response) -> Response {
    use async_graphql::PathSegment;
    let Value::Object(data) = &response.data else {
        return response;
    };
    let dropped = response
        .errors
        .iter()
        .any(|error| match error.path.first() {
            Some(PathSegment::Field(key)) => !data.contains_key(key.as_str()),
            _ => false,
        });
    if dropped {
        response.data = Value::Null;
    }
    response
}

/// Stops every request after validation (see [`crate::validator`]).
pub struct ValidateOnly;

impl ExtensionFactory for ValidateOnly {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ValidateOnly)
    }
}

#[async_trait::async_trait]
impl Extension for ValidateOnly {
    async fn execute(
        &self,
        _ctx: &ExtensionContext<'_>,
        _operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> Response {
        Response::new(Value::Null)
    }
}

/// Counts and times every operation (see [`crate::metrics`]): queries and mutations when
/// they execute, subscriptions over their lifetime, requests refused before execution as
/// operation `invalid`. The operation label is its root field (`multiple` when it has
/// several), taken only from a document that validated, so a client cannot invent labels.
///
/// It also traces them: a span around the execution of every query and mutation (HTTP or
/// WebSocket), named after the operation's type and root field (`mutation runCode`), so
/// everything a resolver does (database queries, enqueueing a run, Redis publishes) is inside
/// it. It starts once the document parsed and validated: a span's name is fixed when it
/// starts, and what went wrong before is the request's. Subscriptions get none: one would
/// last as long as the subscription.
pub struct ObserveOperations {
    /// The node's own counts (of subscriptions being served).
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl ExtensionFactory for ObserveOperations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObservedOperation {
            state: Arc::new(std::sync::Mutex::new(OperationState::new())),
            metrics: self.metrics.clone(),
        })
    }
}

struct OperationState {
    started: std::time::Instant,
    /// The operation the request names, if any.
    requested: Option<String>,
    /// Root field label and type, from the parsed document.
    parsed: Option<(String, &'static str)>,
    validated: bool,
    recorded: bool,
}

impl OperationState {
    fn new() -> Self {
        Self {
            started: std::time::Instant::now(),
            requested: None,
            parsed: None,
            validated: false,
            recorded: false,
        }
    }

    /// The labels to record under: the parsed ones once the document validated.
    fn labels(&self) -> (String, &'static str) {
        match (&self.parsed, self.validated) {
            (Some((operation, kind)), true) => (operation.clone(), kind),
            (Some((_, kind)), false) => ("invalid".to_owned(), kind),
            (None, _) => ("invalid".to_owned(), "unknown"),
        }
    }

    fn record(&mut self, outcome: &str) {
        if self.recorded {
            return;
        }
        self.recorded = true;
        let (operation, kind) = self.labels();
        crate::metrics::graphql_operation(&operation, kind, outcome, self.started.elapsed());
    }
}

struct ObservedOperation {
    state: Arc<std::sync::Mutex<OperationState>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl ObservedOperation {
    fn state(&self) -> std::sync::MutexGuard<'_, OperationState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `ok`, or the code of the first error (BAD_USER_INPUT for async-graphql's own, as
/// [`fill_codes`] gives them).
fn outcome(response: &Response) -> String {
    match response.errors.first() {
        None => "ok".to_owned(),
        Some(error) => match error.extensions.as_ref().and_then(|e| e.get("code")) {
            Some(Value::String(code)) => code.clone(),
            _ => codes::BAD_USER_INPUT.to_owned(),
        },
    }
}

fn kind_name(kind: OperationType) -> &'static str {
    match kind {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}

/// The label of the operation `requested` names in `document` (or its only one).
fn operation_label(
    document: &async_graphql::parser::types::ExecutableDocument,
    requested: Option<&str>,
) -> Option<(String, &'static str)> {
    use async_graphql::parser::types::Selection;
    let (_, operation) = document
        .operations
        .iter()
        .find(|(name, _)| requested.is_none() || name.map(|n| n.as_str()) == requested)?;
    let mut fields = operation
        .node
        .selection_set
        .node
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => field.node.name.node.as_str(),
            _ => "fragment",
        });
    let first = fields.next().unwrap_or("none");
    let label = if fields.all(|other| other == first) {
        first.to_owned()
    } else {
        "multiple".to_owned()
    };
    Some((label, kind_name(operation.node.ty)))
}

#[async_trait::async_trait]
impl Extension for ObservedOperation {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let response = next.run(ctx).await;
        self.state().record(&outcome(&response));
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let stream = next.run(ctx, stream);
        Box::pin(MeteredStream {
            inner: stream,
            state: self.state.clone(),
            metrics: self.metrics.clone(),
            active: None,
            outcome: None,
        })
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        {
            let mut state = self.state();
            state.started = std::time::Instant::now();
            state.requested = request.operation_name.clone();
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &async_graphql::Variables,
        next: async_graphql::extensions::NextParseQuery<'_>,
    ) -> ServerResult<async_graphql::parser::types::ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let mut state = self.state();
        state.parsed = operation_label(&document, state.requested.as_deref());
        drop(state);
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: async_graphql::extensions::NextValidation<'_>,
    ) -> Result<async_graphql::ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await;
        if result.is_ok() {
            self.state().validated = true;
        }
        result
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        use tracing::Instrument as _;
        let (field, kind) = {
            let mut state = self.state();
            state.started = std::time::Instant::now();
            state.labels()
        };
        let span = tracing::info_span!("graphql", otel.name = %format_args!("{kind} {field}"));
        realtime::trace::set_attribute(&span, "graphql.operation.type", kind);
        realtime::trace::set_attribute(&span, "graphql.operation.name", field);
        let response = next.run(ctx, operation_name).instrument(span.clone()).await;
        let outcome = outcome(&response);
        if outcome == codes::INTERNAL {
            realtime::trace::set_error(&span, outcome.clone());
        }
        self.state().record(&outcome);
        realtime::trace::set_attribute(&span, "graphql.outcome", outcome);
        response
    }
}

/// A subscription's stream: active while it lives, recorded when it ends.
struct MeteredStream<'s> {
    inner: BoxStream<'s, Response>,
    state: Arc<std::sync::Mutex<OperationState>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// The field counted in the active subscriptions.
    active: Option<String>,
    /// The first error's code.
    outcome: Option<String>,
}

impl futures_util::Stream for MeteredStream<'_> {
    type Item = Response;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Response>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let std::task::Poll::Ready(Some(response)) = &polled
            && self.outcome.is_none()
            && !response.errors.is_empty()
        {
            self.outcome = Some(outcome(response));
        }
        // Checked on every poll until it validated: a subscription may wait long for its
        // first event.
        if self.active.is_none() {
            let state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (field, kind) = state.labels();
            let ended = state.recorded;
            drop(state);
            if kind == "subscription" && field != "invalid" && !ended {
                self.metrics.subscription_started(&field);
                self.active = Some(field);
            }
        }
        polled
    }
}

impl Drop for MeteredStream<'_> {
    fn drop(&mut self) {
        if let Some(field) = &self.active {
            self.metrics.subscription_ended(field);
        }
        let outcome = self.outcome.take().unwrap_or_else(|| "ok".to_owned());
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(&outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(introspection: bool) -> crate::AppSchema {
        crate::validator(&crate::SchemaOptions {
            introspection,
            max_variables_bytes: 64 * 1024,
            query_timeout: Duration::from_secs(5),
            budgets: None,
        })
    }

    async fn errors(
        schema: &crate::AppSchema,
        query: &str,
        operation: Option<&str>,
    ) -> Vec<String> {
        let mut request = Request::new(query);
        if let Some(operation) = operation {
            request = request.operation_name(operation);
        }
        let response = schema.execute(request).await;
        response.errors.into_iter().map(|e| e.message).collect()
    }

    /// A document parsed before is checked like a new one: every request is validated for
    /// its own operation, and what was refused is refused again.
    #[tokio::test]
    async fn a_document_sent_again_is_checked_like_the_first_time() {
        let schema = validator(false);
        let two = "query A { me { id } } query B { me { username } }";
        let unknown = "{ me { id shoeSize } }";
        let introspection = "{ __schema { queryType { name } } }";
        for _ in 0..3 {
            assert_eq!(errors(&schema, two, Some("A")).await, Vec::<String>::new());
            assert_eq!(errors(&schema, two, Some("B")).await, Vec::<String>::new());
            let unnamed = errors(&schema, two, None).await;
            assert_eq!(unnamed.len(), 1, "{unnamed:?}");
            let missing = errors(&schema, two, Some("C")).await;
            assert!(
                missing[0].contains("Unknown operation named \"C\""),
                "{missing:?}"
            );
            let invalid = errors(&schema, unknown, None).await;
            assert!(invalid[0].contains("shoeSize"), "{invalid:?}");
            let refused = errors(&schema, introspection, None).await;
            assert!(
                refused[0].contains("introspection is turned off"),
                "{refused:?}"
            );
        }
        // The same texts on a server that answers introspection.
        let open = validator(true);
        assert_eq!(
            errors(&open, introspection, None).await,
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_kept_documents_stay_within_their_bound() {
        let parsed = ParsedDocuments::new();
        let document = async_graphql::parser::parse_query("{ me { id } }").expect("parses");
        // Filling it far beyond its bound leaves it within the bound.
        for n in 0..20_000 {
            parsed.keep(format!("{{ me {{ id }} }} # {n:0>400}"), document.clone());
        }
        assert!(parsed.0.weight() <= CACHED_DOCUMENTS_BYTES);
        assert!(parsed.0.len() < 20_000);
    }
}
