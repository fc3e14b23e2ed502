//! GraphQL types and resolvers of code runs.

use crate::context::ServicesExt;
use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{
    Context, Enum, ID, InputObject, Object, Result, SimpleObject, Subscription, Union,
};
use chrono::{DateTime, Utc};
use entity::run;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use super::RunsConfig;
use super::order::{Chunk, InOrder};
use super::service::{self, RunRequest};
use crate::context::ViewerExt;
use crate::error::{ApiError, ApiResult};
use crate::loaders::load_user;
use crate::projects::Language;
use crate::realtime::RunSignal;
use crate::state::Services;
use crate::users::User;
use crate::validation;
use jobs::RunLimits;

/// Where a run is in its life.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "entity::run::RunStatus")]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// A worker is running it.
    Running,
    /// Exited with code 0.
    Succeeded,
    /// Exited with another code, was killed by a signal, or did not compile.
    Failed,
    /// Ran out of wall-clock or CPU time.
    TimedOut,
    /// Ran out of memory.
    MemoryLimit,
    /// Wrote more output than allowed.
    OutputLimit,
    /// Cancelled by a member.
    Cancelled,
    /// The sandbox failed on every attempt; `error` says why.
    InternalError,
}

/// A request to run a project's code, its progress and its result.
pub struct Run(pub run::Model);

/// The limits a run ran with.
#[derive(SimpleObject)]
pub struct RunLimitsInfo {
    /// Wall-clock time allowed, in milliseconds.
    wall_ms: u64,
    /// CPU time allowed, in milliseconds.
    cpu_ms: u64,
    /// Memory allowed, in bytes.
    memory_bytes: u64,
    /// Processes (and threads) allowed at once.
    processes: u32,
    /// Largest file the program may write, in bytes.
    file_bytes: u64,
    /// Output kept per stream, in bytes.
    output_bytes: u64,
}

impl From<RunLimits> for RunLimitsInfo {
    fn from(limits: RunLimits) -> Self {
        Self {
            wall_ms: limits.wall_ms,
            cpu_ms: limits.cpu_ms,
            memory_bytes: limits.memory_bytes,
            processes: limits.processes,
            file_bytes: limits.file_bytes,
            output_bytes: limits.output_bytes,
        }
    }
}

/// A request to run a project's code, its progress and its result.
#[Object]
impl Run {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The project it belongs to.
    async fn project_id(&self) -> ID {
        ID(self.0.project_id.to_string())
    }
    /// Who asked for it.
    async fn requested_by(&self, ctx: &Context<'_>) -> Result<User> {
        load_user(ctx, self.0.requested_by).await
    }
    /// The language it ran as.
    async fn language(&self) -> Language {
        self.0.language.into()
    }
    /// The file that was run (`main.<ext>` for a given source).
    async fn entry(&self) -> &str {
        &self.0.entry
    }
    /// Where it stands: QUEUED, RUNNING, or how it ended.
    async fn status(&self) -> RunStatus {
        self.0.status.into()
    }
    /// Exit code, once it exited.
    async fn exit_code(&self) -> Option<i32> {
        self.0.exit_code
    }
    /// The signal that ended it, if one did.
    async fn signal(&self) -> Option<i32> {
        self.0.signal
    }
    /// Standard output so far (capped at the run's output limit).
    async fn stdout(&self) -> &str {
        &self.0.stdout
    }
    /// Standard error so far (capped at the run's output limit).
    async fn stderr(&self) -> &str {
        &self.0.stderr
    }
    /// Whether output beyond the cap was dropped.
    async fn stdout_truncated(&self) -> bool {
        self.0.stdout_truncated
    }
    /// Whether error output beyond the cap was dropped.
    async fn stderr_truncated(&self) -> bool {
        self.0.stderr_truncated
    }
    /// Wall-clock time it took, in milliseconds, once it ended.
    async fn wall_time_ms(&self) -> Option<i64> {
        self.0.wall_ms
    }
    /// CPU time it used, in milliseconds, once it ended.
    async fn cpu_time_ms(&self) -> Option<i64> {
        self.0.cpu_ms
    }
    /// The most memory it held at once, in bytes, once it ended.
    async fn peak_memory_bytes(&self) -> Option<i64> {
        self.0.peak_memory_bytes
    }
    /// How many times a worker took it up (more than one after an infrastructure failure
    /// or a worker that died).
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// The worker that ran it last.
    async fn worker_id(&self) -> Option<&str> {
        self.0.worker_id.as_deref()
    }
    /// Why it ended INTERNAL_ERROR (or why the last attempt failed).
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// The limits it ran with.
    async fn limits(&self) -> Result<RunLimitsInfo> {
        let limits: RunLimits =
            serde_json::from_value(self.0.limits.clone()).map_err(ApiError::internal)?;
        Ok(limits.into())
    }
    /// When it was asked for.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When a worker started it (the last attempt).
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    /// When it ended.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
}

/// A language runs can use, and whether its toolchain is installed here.
#[derive(SimpleObject)]
pub struct LanguageInfo {
    /// The language.
    language: Language,
    /// The toolchain's version line, when installed.
    version: Option<String>,
    /// False: listed for completeness, `runCode` refuses it.
    available: bool,
}

/// How runs are isolated on this host.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum Isolation {
    /// A cgroup v2 per run bounds memory and processes.
    CgroupV2,
    /// A cgroup per run in the v1 hierarchies bounds memory and processes.
    CgroupV1,
    /// No cgroups available: rlimits only (address space, processes per uid).
    Rlimits,
}

/// Limits a run asks for; absent ones take the configured defaults, and none may exceed the
/// configured maxima.
#[derive(InputObject, Default)]
pub struct RunLimitsInput {
    /// Wall-clock time, in milliseconds.
    wall_ms: Option<i64>,
    /// CPU time, in milliseconds.
    cpu_ms: Option<i64>,
    /// Memory, in MiB.
    memory_mb: Option<i64>,
    /// Processes (and threads) at once.
    processes: Option<i64>,
    /// Output kept per stream, in KiB.
    output_kb: Option<i64>,
}

impl RunLimitsInput {
    /// The run's [`RunLimits`]: what is asked for, in the units asked in, within the
    /// configured maxima; the configured defaults for the rest.
    pub fn resolve(&self, config: &RunsConfig) -> ApiResult<RunLimits> {
        const MIB: u64 = 1024 * 1024;
        let (default, max) = (config.default_limits, config.max_limits);
        Ok(RunLimits {
            wall_ms: asked(
                "limits.wallMs",
                self.wall_ms,
                1,
                default.wall_ms,
                max.wall_ms,
            )?,
            cpu_ms: asked("limits.cpuMs", self.cpu_ms, 1, default.cpu_ms, max.cpu_ms)?,
            memory_bytes: asked(
                "limits.memoryMb",
                self.memory_mb,
                MIB,
                default.memory_bytes,
                max.memory_bytes,
            )?,
            processes: u32::try_from(asked(
                "limits.processes",
                self.processes,
                1,
                u64::from(default.processes),
                u64::from(max.processes),
            )?)
            .unwrap_or(default.processes),
            file_bytes: default.file_bytes.min(max.file_bytes),
            output_bytes: asked(
                "limits.outputKb",
                self.output_kb,
                1024,
                default.output_bytes,
                max.output_bytes,
            )?,
            ..default
        })
    }
}

/// One limit asked for in units of `scale` bytes or milliseconds: between 1 and `max`.
fn asked(
    field: &'static str,
    value: Option<i64>,
    scale: u64,
    default: u64,
    max: u64,
) -> ApiResult<u64> {
    let Some(value) = value else {
        return Ok(default);
    };
    u64::try_from(value)
        .ok()
        .and_then(|v| v.checked_mul(scale))
        .filter(|v| (1..=max).contains(v))
        .ok_or_else(|| {
            ApiError::bad_input(
                field,
                format!("{field} must be between 1 and {}", max / scale),
            )
        })
}

pub type RunConnection = Connection<String, Run, EmptyFields, EmptyFields>;

fn id_arg(field: &'static str, raw: &ID) -> Result<Uuid> {
    Ok(validation::id(field, raw)?)
}

#[derive(Default)]
pub struct RunsQuery;

#[Object]
impl RunsQuery {
    /// Every language, with its toolchain's version and whether runs can use it here.
    async fn languages(&self) -> Vec<LanguageInfo> {
        use sea_orm::Iterable;
        entity::project::Language::iter()
            .map(|language| {
                let sandbox = jobs::sandbox::Language::from(language);
                let info = jobs::sandbox::languages()
                    .iter()
                    .find(|info| info.language == sandbox);
                LanguageInfo {
                    language: language.into(),
                    version: info.and_then(|i| i.version.clone()),
                    available: info.is_some_and(|i| i.available),
                }
            })
            .collect()
    }

    /// How runs are isolated on this host (cgroups when the worker may create them).
    async fn sandbox_isolation(&self) -> Isolation {
        match jobs::sandbox::isolation() {
            jobs::sandbox::Isolation::CgroupV2 => Isolation::CgroupV2,
            jobs::sandbox::Isolation::CgroupV1 => Isolation::CgroupV1,
            jobs::sandbox::Isolation::Rlimits => Isolation::Rlimits,
        }
    }

    /// Each protection runs get on this host (namespaces, seccomp, cgroup limits…).
    async fn sandbox_protections(&self) -> Vec<&'static str> {
        jobs::sandbox::protections()
    }

    /// A run, for whoever can read its project.
    async fn run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] id: ID,
    ) -> Result<Run> {
        let services = ctx.services()?;
        let run = service::get(&services.reads, ctx.viewer(), id_arg("id", &id)?).await?;
        Ok(Run(run))
    }

    /// A project's runs, newest first.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(default = 20, desc = "Page size, 1 to 100.")] first: i32,
        #[graphql(desc = "The `endCursor` of the previous page.")] after: Option<String>,
    ) -> Result<RunConnection> {
        let services = ctx.services()?;
        let project = id_arg("projectId", &project_id)?;
        let page = service::list(
            &services.reads,
            ctx.viewer(),
            project,
            first,
            after.as_deref(),
        )
        .await?;
        let mut connection = Connection::new(page.has_previous_page, page.has_next_page);
        connection.edges.extend(
            page.runs
                .into_iter()
                .map(|(cursor, run)| Edge::new(cursor, Run(run))),
        );
        Ok(connection)
    }
}

#[derive(Default)]
pub struct RunsMutation;

#[Object]
impl RunsMutation {
    /// Run code: a file of the project (`entry`, run with the project's files as they are
    /// now) or a given `source`. EDITOR or OWNER (viewers may not run code, not even in
    /// public projects). Answers at once with the QUEUED run; follow it with `runEvents`.
    /// Source and stdin hold at most 64 KiB; too many runs in a minute get RATE_LIMITED.
    #[allow(clippy::too_many_arguments)] // one per GraphQL argument
    async fn run_code(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The project's id.")] project_id: ID,
        #[graphql(desc = "The project's default language when absent.")] language: Option<Language>,
        #[graphql(desc = "The path of the project file to run (give this or `source`).")]
        entry: Option<String>,
        #[graphql(desc = "Code to run instead of a project file (give this or `entry`).")]
        source: Option<String>,
        #[graphql(desc = "What the program reads on its standard input.")] stdin: Option<String>,
        #[graphql(
            desc = "Tighter or looser limits than the defaults, within the server's maximum."
        )]
        limits: Option<RunLimitsInput>,
    ) -> Result<Run> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        let project = id_arg("projectId", &project_id)?;
        let limits = limits.unwrap_or_default().resolve(&services.runs.config)?;
        let run = service::start(
            &services.db,
            &services.documents,
            &services.runs,
            viewer,
            project,
            RunRequest {
                language: language.map(Into::into),
                entry,
                source,
                stdin,
                limits,
            },
        )
        .await?;
        Ok(Run(run))
    }

    /// Cancel a run: a queued one at once, a running one as soon as its worker kills it.
    /// EDITOR or OWNER. A run that has ended stays as it is.
    async fn cancel_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] id: ID,
    ) -> Result<Run> {
        let viewer = ctx.viewer().require()?;
        let services = ctx.services()?;
        Ok(Run(service::cancel(
            &services.db,
            &services.bus,
            viewer,
            id_arg("id", &id)?,
        )
        .await?))
    }
}

/// Output of a run.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A run changed status (RUNNING, or QUEUED again before a retry).
#[derive(SimpleObject)]
pub struct RunStatusChanged {
    /// The new status.
    status: RunStatus,
}

/// Output, numbered in the order it was produced (one sequence for both streams).
#[derive(SimpleObject)]
pub struct RunOutput {
    /// Which stream it was written to.
    stream: OutputStream,
    /// Its place in the run's output: one increasing sequence across both streams.
    seq: i64,
    /// The bytes as UTF-8 (invalid sequences replaced).
    data: String,
}

impl RunOutput {
    fn event(stderr: bool, seq: i64, data: String) -> RunEvent {
        let stream = if stderr {
            OutputStream::Stderr
        } else {
            OutputStream::Stdout
        };
        RunEvent::RunOutput(Self { stream, seq, data })
    }

    /// Chunk `seq` as its followers receive it (the bytes as UTF-8).
    fn of((seq, (stderr, data)): (i64, Chunk)) -> RunEvent {
        Self::event(stderr, seq, String::from_utf8_lossy(&data).into_owned())
    }
}

/// The run ended; `run` holds the result.
#[derive(SimpleObject)]
pub struct RunFinished {
    /// The run with its result.
    run: Run,
}

/// What a run's followers receive.
#[derive(Union)]
#[allow(clippy::enum_variant_names)] // the variants are the GraphQL type names
pub enum RunEvent {
    RunStatusChanged(RunStatusChanged),
    RunOutput(RunOutput),
    RunFinished(Box<RunFinished>),
}

#[derive(Default)]
pub struct RunsSubscription;

#[Subscription]
impl RunsSubscription {
    /// A run, live: first its status and the output it has produced so far, then status
    /// changes and output chunks in order (by `seq`), then `RunFinished` with the result.
    async fn run_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] run_id: ID,
    ) -> Result<impl Stream<Item = Result<RunEvent>> + use<>> {
        let services = ctx.services()?.clone();
        let id = id_arg("runId", &run_id)?;
        // Listen first, then read what is stored: nothing falls between.
        let mut signals = services.bus.subscribe_run(id);
        let run = service::get(&services.db, ctx.viewer(), id).await?;
        let stream = async_stream::stream! {
            yield Ok(RunEvent::RunStatusChanged(RunStatusChanged { status: run.status.into() }));
            for (stderr, text) in [(false, &run.stdout), (true, &run.stderr)] {
                if !text.is_empty() {
                    yield Ok(RunOutput::event(stderr, run.output_seq, text.clone()));
                }
            }
            if run.status.is_final() {
                yield Ok(RunEvent::RunFinished(Box::new(RunFinished { run: Run(run) })));
                return;
            }
            // The row holds the output of the last heartbeat: what was published since went by
            // before this follower listened, and nothing would show the gap until more output
            // came. The worker publishes it again (those that have it skip it by its number).
            services.bus.publish_run(id, RunSignal::Replay { after: run.output_seq });
            let mut order = InOrder::after(run.output_seq);
            loop {
                let deadline = order.deadline();
                let heard = tokio::select! {
                    heard = signals.recv() => Some(heard),
                    () = tokio::time::sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)), if deadline.is_some() => None,
                };
                let Some(heard) = heard else {
                    // The replay did not come: go on without what is missing.
                    for held in order.give_up() {
                        yield Ok(RunOutput::of(held));
                    }
                    continue;
                };
                match heard {
                    Ok(signal) => match signal.as_ref() {
                        RunSignal::Status { status } => {
                            yield Ok(RunEvent::RunStatusChanged(RunStatusChanged { status: (*status).into() }));
                        }
                        RunSignal::Output { stderr, seq, data } => {
                            let step = order.take(*seq, (*stderr, data.clone()));
                            if let Some(after) = step.replay_after {
                                services.bus.publish_run(id, RunSignal::Replay { after });
                            }
                            for ready in step.ready {
                                yield Ok(RunOutput::of(ready));
                            }
                        }
                        RunSignal::Finished { .. } => {
                            for held in order.give_up() {
                                yield Ok(RunOutput::of(held));
                            }
                            match finished(&services, id).await {
                                Ok(run) => yield Ok(RunEvent::RunFinished(Box::new(RunFinished { run }))),
                                Err(error) => yield Err(error.into()),
                            }
                            return;
                        }
                        RunSignal::Cancel | RunSignal::Replay { .. } => {}
                    },
                    Err(RecvError::Lagged(_)) => {
                        // Fell behind: the next chunk shows the gap (and is replayed); an end
                        // missed is in the row.
                        match finished(&services, id).await {
                            Ok(Run(run)) if run.status.is_final() => {
                                yield Ok(RunEvent::RunFinished(Box::new(RunFinished { run: Run(run) })));
                                return;
                            }
                            Ok(_) => {}
                            Err(error) => {
                                yield Err(error.into());
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        };
        Ok(crate::context::budgeted(ctx, stream)?)
    }
}

async fn finished(services: &Services, id: Uuid) -> Result<Run, ApiError> {
    use sea_orm::EntityTrait;
    entity::prelude::Run::find_by_id(id)
        .one(&services.db)
        .await?
        .map(Run)
        .ok_or(ApiError::NotFound("run"))
}
