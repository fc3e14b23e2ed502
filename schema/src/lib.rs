//! The GraphQL schema of CodeCrafter and the services behind it.
//!
//! Each domain lives in its own folder with its types, resolvers and service; resolvers are
//! thin and the services hold the rules.

pub mod auth;
pub mod budgets;
pub mod chat;
pub mod context;
pub mod documents;
pub mod error;
pub mod events;
mod extensions;
pub mod limits;
pub mod loaders;
pub mod metrics;
pub mod paging;
pub mod presence;
pub mod projects;
pub mod runs;
pub mod scalars;
pub mod shared_limits;
pub mod state;
mod time;
pub mod users;
pub mod validation;
pub mod versions;

use async_graphql::dataloader::DataLoader;
use async_graphql::{MergedObject, MergedSubscription, Schema};

/// What moves between nodes (the `realtime` crate), where the domains have always found it.
pub use realtime;

pub use context::{AuthUser, Viewer};
pub use extensions::ParsedDocuments;
pub use extensions::fill_codes;
pub use state::Services;

/// Every query.
#[derive(MergedObject, Default)]
pub struct Query(
    users::UsersQuery,
    projects::ProjectsQuery,
    documents::DocumentsQuery,
    versions::VersionsQuery,
    chat::ChatQuery,
    runs::RunsQuery,
);

/// Every mutation.
#[derive(MergedObject, Default)]
pub struct Mutation(
    auth::AuthMutation,
    users::UsersMutation,
    projects::ProjectsMutation,
    documents::DocumentsMutation,
    versions::VersionsMutation,
    chat::ChatMutation,
    presence::PresenceMutation,
    runs::RunsMutation,
);

/// Every subscription.
#[derive(MergedSubscription, Default)]
pub struct Subscription(
    documents::DocumentsSubscription,
    events::EventsSubscription,
    presence::PresenceSubscription,
    runs::RunsSubscription,
);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

pub use extensions::SCHEMA_DESCRIPTION;

/// Depth and complexity are bounded by [`limits`] (fragments expanded, introspection by its
/// own rule), before validation; async-graphql's own rules would refuse the standard
/// introspection query and do not expand fragments.
fn builder() -> async_graphql::SchemaBuilder<Query, Mutation, Subscription> {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .extension(extensions::ErrorCodes)
    // Types async-graphql makes, described in this schema's words instead of the library's.
    .override_output_type_description::<projects::ProjectConnection>(
        "A page of projects, newest activity first (Relay cursor connection).",
    )
    .override_output_type_description::<chat::MessageConnection>(
        "A page of a project's chat, newest first (Relay cursor connection).",
    )
    .override_output_type_description::<runs::RunConnection>(
        "A page of a project's code runs, newest first (Relay cursor connection).",
    )
    .override_output_type_description::<chrono::DateTime<chrono::Utc>>(
        "A moment in time, as an RFC 3339 string in UTC (`2026-12-01T10:17:00Z`).",
    )
}

/// How the schema is served.
#[derive(Clone, Debug)]
pub struct SchemaOptions {
    /// Whether `__schema` and `__type` are answered.
    pub introspection: bool,
    /// Largest variables of one request, in bytes.
    pub max_variables_bytes: usize,
    /// Longest a query may execute.
    pub query_timeout: std::time::Duration,
    /// Budgets per address and per user (see [`budgets`]), counted where the services'
    /// [`Services::limits`] say; `None` checks none.
    pub budgets: Option<budgets::BudgetSettings>,
}

/// The schema, serving `services`.
pub fn build(services: Services, options: &SchemaOptions) -> AppSchema {
    let limits = services.limits.clone();
    let builder = builder()
        .extension(extensions::ObserveOperations {
            metrics: services.metrics.clone(),
        })
        .extension(extensions::RequestLimits::new(
            options,
            services.parsed.clone(),
        ))
        .data(services);
    let builder = match &options.budgets {
        Some(settings) => builder.extension(budgets::OperationBudgets::new(settings, limits)),
        None => builder,
    };
    if options.introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The schema with nothing behind it: a request is limited, parsed and validated exactly as
/// [`build`]'s would be, and never executed (the answer's `data` is `null`). For fuzzing the
/// request path without a database.
pub fn validator(options: &SchemaOptions) -> AppSchema {
    builder()
        .extension(extensions::RequestLimits::new(
            options,
            std::sync::Arc::default(),
        ))
        .extension(extensions::ValidateOnly)
        .finish()
}

/// The SDL that `schema/schema.graphql` must equal.
pub fn sdl() -> String {
    let options = async_graphql::SDLExportOptions::new().include_specified_by();
    builder().finish().sdl_with_options(options)
}

/// What one WebSocket connection's operations share: who is connected, and their budget of
/// subscriptions. (Each operation gets a batching loader of its own, see [`user_loader`]: it
/// caches nothing from one operation to the next, and one per connection would be part of
/// what every idle connection costs.)
pub fn connection_data(viewer: Viewer) -> async_graphql::Data {
    let mut data = async_graphql::Data::default();
    data.insert(viewer);
    data.insert(context::SubscriptionBudget::default());
    data
}

/// A loader that batches the user rows one operation asks for.
pub fn user_loader(services: &Services) -> DataLoader<loaders::UserLoader> {
    DataLoader::new(
        loaders::UserLoader(services.reads.clone(), services.users.clone()),
        tokio::spawn,
    )
}

/// Attach what one request needs: who is asking, and per-request batching caches.
pub fn prepare(
    request: async_graphql::Request,
    services: &Services,
    viewer: Viewer,
) -> async_graphql::Request {
    request.data(viewer).data(user_loader(services))
}
