//! Budgets per client address and per user, as GCRA (the `governor` crate): the operations
//! that guess or create (sign-up, sign-in, token refresh, password change, invite acceptance)
//! get a strict budget per address; writes a user repeats (projects, messages, runs, edits)
//! a budget per user and field. Checked before execution, from the validated document's root
//! fields, so no resolver needs to remember it. A refused operation answers RATE_LIMITED with
//! `extensions.retryAfter` (seconds) and `extensions.limit`, and changes nothing.
//!
//! With `REDIS_URL` the budgets are kept in Redis ([`crate::shared_limits`]), one budget for
//! every node of the deployment; the limiters here decide only while Redis does not answer.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery,
};
use async_graphql::parser::types::{ExecutableDocument, Selection};
use async_graphql::{Response, ServerError, ServerResult, Variables};
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::Viewer;
use crate::error::codes;
use crate::shared_limits::{Cell, SharedLimits};

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
    /// The shared budgets (with Redis); the limiters below when they cannot be reached.
    shared: SharedLimits,
    auth: DefaultKeyedRateLimiter<IpAddr>,
    writes: DefaultKeyedRateLimiter<(Uuid, &'static str)>,
    updates: DefaultKeyedRateLimiter<Uuid>,
    auth_quota: Quota,
    writes_quota: Quota,
    updates_quota: Quota,
}

fn quota(per: Duration, count: u32, burst: u32) -> Quota {
    let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per / count.get())
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
        .allow_burst(burst)
}

/// One budgeted call: which limit, whose budget (its Redis key), and the budget's quota.
struct Charge {
    limit: &'static str,
    key: String,
    quota: Quota,
}

/// The schema extension enforcing the budgets; one per schema (so per node).
pub struct OperationBudgets {
    budgets: Arc<Budgets>,
}

impl OperationBudgets {
    /// The budgets of `settings`, kept in `shared` (Redis) when it is, else on this node.
    pub fn new(settings: &BudgetSettings, shared: SharedLimits) -> Self {
        let minute = Duration::from_secs(60);
        let auth_quota = quota(minute, settings.auth_per_minute, settings.auth_burst);
        let writes_quota = quota(minute, settings.writes_per_minute, settings.writes_burst);
        let updates_quota = quota(
            Duration::from_secs(1),
            settings.updates_per_second,
            settings.updates_burst,
        );
        Self {
            budgets: Arc::new(Budgets {
                shared,
                auth: RateLimiter::keyed(auth_quota),
                writes: RateLimiter::keyed(writes_quota),
                updates: RateLimiter::keyed(updates_quota),
                auth_quota,
                writes_quota,
                updates_quota,
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
    /// The budget `field` spends for this client, if any (anonymous writes spend none:
    /// they are refused as UNAUTHENTICATED anyway).
    fn charge(
        &self,
        field: &'static str,
        ip: Option<IpAddr>,
        user: Option<Uuid>,
    ) -> Option<Charge> {
        if AUTH_FIELDS.contains(&field) {
            let ip = ip?;
            Some(Charge {
                limit: "auth",
                key: format!("auth:{ip}"),
                quota: self.auth_quota,
            })
        } else if UPDATE_FIELDS.contains(&field) {
            let user = user?;
            Some(Charge {
                limit: "updates",
                key: format!("updates:{user}"),
                quota: self.updates_quota,
            })
        } else {
            let user = user?;
            Some(Charge {
                limit: field,
                key: format!("write:{field}:{user}"),
                quota: self.writes_quota,
            })
        }
    }

    /// Spend `field`'s cell: in Redis, or on this node when Redis cannot say.
    async fn check(
        &self,
        field: &'static str,
        ip: Option<IpAddr>,
        user: Option<Uuid>,
    ) -> Result<(), ServerError> {
        let Some(charge) = self.charge(field, ip, user) else {
            return Ok(());
        };
        let cell = match self
            .shared
            .spend(
                &charge.key,
                charge.quota.replenish_interval(),
                charge.quota.burst_size().get(),
            )
            .await
        {
            Some(cell) => cell,
            None => self.check_locally(field, ip, user),
        };
        match cell {
            Cell::Allowed => Ok(()),
            Cell::Refused(wait) => Err(refused(charge.limit, wait)),
        }
    }

    /// The node-local limiters (no Redis, or Redis not answering).
    fn check_locally(&self, field: &'static str, ip: Option<IpAddr>, user: Option<Uuid>) -> Cell {
        // Each limiter's own clock (making a `DefaultClock` calibrates a new one, every time).
        let refused = if AUTH_FIELDS.contains(&field) {
            let Some(ip) = ip else {
                return Cell::Allowed;
            };
            if self.auth.len() > MAX_KEYS {
                self.auth.retain_recent();
            }
            self.auth
                .check_key(&ip)
                .map_err(|not_until| not_until.wait_time_from(self.auth.clock().now()))
        } else if UPDATE_FIELDS.contains(&field) {
            let Some(user) = user else {
                return Cell::Allowed;
            };
            if self.updates.len() > MAX_KEYS {
                self.updates.retain_recent();
            }
            self.updates
                .check_key(&user)
                .map_err(|not_until| not_until.wait_time_from(self.updates.clock().now()))
        } else {
            let Some(user) = user else {
                return Cell::Allowed;
            };
            if self.writes.len() > MAX_KEYS {
                self.writes.retain_recent();
            }
            self.writes
                .check_key(&(user, field))
                .map_err(|not_until| not_until.wait_time_from(self.writes.clock().now()))
        };
        match refused {
            Ok(()) => Cell::Allowed,
            Err(wait) => Cell::Refused(wait),
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
                if let Err(error) = self.budgets.check(field, ip, user).await {
                    return Response::from_errors(vec![error]);
                }
            }
        }
        next.run(ctx, operation_name).await
    }
}
