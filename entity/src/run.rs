//! `runs`: requests to execute code, their progress and their result.

use sea_orm::entity::prelude::*;

use crate::project::Language;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub project_id: Uuid,
    pub requested_by: Uuid,
    pub language: Language,
    /// The file that is run, relative to the project's root.
    pub entry: String,
    /// The files as they were when the run was requested: `{ path: text }`.
    pub files: Json,
    #[sea_orm(column_type = "Blob")]
    pub stdin: Vec<u8>,
    /// The limits asked for (within the configured maxima), as JSON.
    pub limits: Json,
    pub status: RunStatus,
    /// Somebody asked to cancel it while it was running; its worker stops it.
    pub cancel_requested: bool,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    /// The sequence number of the last output chunk folded into `stdout`/`stderr`.
    pub output_seq: i64,
    pub wall_ms: Option<i64>,
    pub cpu_ms: Option<i64>,
    pub peak_memory_bytes: Option<i64>,
    /// How many times a worker took it up.
    pub attempts: i32,
    pub worker_id: Option<String>,
    /// Why it ended INTERNAL_ERROR.
    pub error: Option<String>,
    /// Written every second by the worker running it; a stale one means the worker died.
    pub heartbeat_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

/// Where a run is in its life. Serialized (on the bus between nodes) by the name it is
/// stored under.
#[derive(
    Copy,
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunStatus {
    #[sea_orm(string_value = "QUEUED")]
    Queued,
    #[sea_orm(string_value = "RUNNING")]
    Running,
    #[sea_orm(string_value = "SUCCEEDED")]
    Succeeded,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "TIMED_OUT")]
    TimedOut,
    #[sea_orm(string_value = "MEMORY_LIMIT")]
    MemoryLimit,
    #[sea_orm(string_value = "OUTPUT_LIMIT")]
    OutputLimit,
    #[sea_orm(string_value = "CANCELLED")]
    Cancelled,
    #[sea_orm(string_value = "INTERNAL_ERROR")]
    InternalError,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::project::Entity",
        from = "Column::ProjectId",
        to = "super::project::Column::Id",
        on_delete = "Cascade"
    )]
    Project,
}

impl ActiveModelBehavior for ActiveModel {}
