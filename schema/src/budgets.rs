//! Budgets per client address and per user, as GCRA (the `governor` crate): the operations
//! that guess or create (sign-up, sign-in, token refresh, password change, invite acceptance)
//! get a strict budget per address; writes a user repeats (projects, messages, runs, edits)
//! a budget per user and field. Checked before execution, from the validated document's root
//! fields, so no resolver needs to remember it. A refused operation answers RATE_LIMITED with
//! `extensions.retryAfter` (seconds) and `extensions.limit`, and changes nothing.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{ExecutableDocument, Selection};
use async_graphql::{Response, ServerError, ServerResult, Variables};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::Viewer;
use crate::error::codes;

/// The client's address (the socket's, or the forwarded one behind a trusted proxy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Root fields that guess credentials or create accounts: budgeted per address.
pub const AUTH_FIELDS: &[&str] = &[
    "signUp",
    "signIn",
    "refreshToken",
    "changePassword",
    "acceptInvite",
];
/// Root fields a user repeats to write: budgeted per user and field.
pub const WRITE_FIELDS: &[&str] = &["createProject", "sendMessage", "runCode"];
/// Edits: budgeted per user, with a budget for bursts of typing.
pub const UPDATE_FIELDS: &[&str] = &["applyUpdate"];

/// How large each budget is: a sustained rate and the burst allowed above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BudgetSettings {
    pub auth_per_minute: u32,
    pub auth_burst: u32,
    pub writes_per_minute: u32,
    pub writes_burst: u32,
    pub updates_per_second: u32,
    pub updates_burst: u32,
}

/// Limiters hold one cell per key; beyond this many, keys whose budget is full are dropped.
const MAX_KEYS: usize = 100_000;

struct Budgets {
    auth: DefaultKeyedRateLimiter<IpAddr>,
    writes: DefaultKeyedRateLimiter<(Uuid, &'static str)>,
    updates: DefaultKeyedRateLimiter<Uuid>,
}

fn quota(per: Duration, count: u32, burst: u32) -> Quota {
    let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per / count.get())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// The schema extension enforcing the budgets; one per schema (so per node).
pub struct OperationBudgets {
    budgets: Arc<Budgets>,
}

impl OperationBudgets {
    pub fn new(settings: &BudgetSettings) -> Self {
        let minute = Duration::from_secs(60);
        Self {
            budgets: Arc::new(Budgets {
                auth: RateLimiter::keyed(quota(
                    minute,
                    settings.auth_per_minute,
                    settings.auth_burst,
                )),
                writes: RateLimiter::keyed(quota(
                    minute,
                    settings.writes_per_minute,
                    settings.writes_burst,
                )),
                updates: RateLimiter::keyed(quota(
                    Duration::from_secs(1),
                    settings.updates_per_second,
                    settings.updates_burst,
                )),
            }),
        }
    }
}

impl ExtensionFactory for OperationBudgets {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(BudgetExtension {
            budgets: self.budgets.clone(),
            fields: Mutex::default(),
        })
    }
}

struct BudgetExtension {
    budgets: Arc<Budgets>,
    /// The budgeted root fields of each operation of the document, by operation name.
    fields: Mutex<Vec<(Option<String>, &'static str)>>,
}

/// The `'static` name of a budgeted root field.
fn budgeted(name: &str) -> Option<&'static str> {
    AUTH_FIELDS
        .iter()
        .chain(WRITE_FIELDS)
        .chain(UPDATE_FIELDS)
        .find(|field| **field == name)
        .copied()
}

fn root_fields(document: &ExecutableDocument) -> Vec<(Option<String>, &'static str)> {
    document
        .operations
        .iter()
        .flat_map(|(name, op)| {
            op.node
                .selection_set
                .node
                .items
                .iter()
                .filter_map(move |item| match &item.node {
                    Selection::Field(field) => budgeted(field.node.name.node.as_str())
                        .map(|field| (name.map(|n| n.to_string()), field)),
                    _ => None,
                })
        })
        .collect()
}

/// RATE_LIMITED, naming the limit and when to try again.
pub fn refused(limit: &'static str, wait: Duration) -> ServerError {
    crate::metrics::rate_limited(limit);
    let retry_after = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut error = ServerError::new(
        format!("too many requests ({limit}), retry in {retry_after} s"),
        None,
    );
    let extensions = error.extensions.get_or_insert_with(Default::default);
    extensions.set("code", codes::RATE_LIMITED);
    extensions.set("retryAfter", retry_after);
    extensions.set("limit", limit);
    error
}

impl Budgets {
    fn check(
        &self,
        field: &'static str,
        ip: Option<IpAddr>,
        user: Option<Uuid>,
    ) -> Result<(), ServerError> {
        let now = DefaultClock::default().now();
        let wait = if AUTH_FIELDS.contains(&field) {
            let Some(ip) = ip else { return Ok(()) };
            if self.auth.len() > MAX_KEYS {
                self.auth.retain_recent();
            }
            self.auth
                .check_key(&ip)
                .err()
                .map(|n| ("auth", n.wait_time_from(now)))
        } else if UPDATE_FIELDS.contains(&field) {
            let Some(user) = user else { return Ok(()) };
            if self.updates.len() > MAX_KEYS {
                self.updates.retain_recent();
            }
            self.updates
                .check_key(&user)
                .err()
                .map(|n| ("updates", n.wait_time_from(now)))
        } else {
            let Some(user) = user else { return Ok(()) };
            if self.writes.len() > MAX_KEYS {
                self.writes.retain_recent();
            }
            self.writes
                .check_key(&(user, field))
                .err()
                .map(|n| (field, n.wait_time_from(now)))
        };
        match wait {
            None => Ok(()),
            Some((limit, wait)) => Err(refused(limit, wait)),
        }
    }
}

#[async_trait::async_trait]
impl Extension for BudgetExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        *self.fields.lock().unwrap_or_else(PoisonError::into_inner) = root_fields(&document);
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let fields =
            std::mem::take(&mut *self.fields.lock().unwrap_or_else(PoisonError::into_inner));
        let fields: Vec<&'static str> = fields
            .into_iter()
            .filter(|(name, _)| operation_name.is_none() || name.as_deref() == operation_name)
            .map(|(_, field)| field)
            .collect();
        if !fields.is_empty() {
            let ip = ctx.data_opt::<ClientIp>().map(|ip| ip.0);
            let user = match ctx.data_opt::<Viewer>() {
                Some(Viewer::User(user)) => Some(user.id),
                _ => None,
            };
            for field in fields {
                if let Err(error) = self.budgets.check(field, ip, user) {
                    return Response::from_errors(vec![error]);
                }
            }
        }
        next.run(ctx, operation_name).await
    }
}
