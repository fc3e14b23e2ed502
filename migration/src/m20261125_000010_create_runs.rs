use sea_orm_migration::{prelude::*, schema::*};

use super::m20261125_000001_create_users::Users;
use super::m20261125_000003_create_projects::Projects;

/// `runs`: requests to execute code, their progress and their result.
#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(pk_uuid(Runs::Id))
                    .col(uuid(Runs::ProjectId))
                    .col(uuid(Runs::RequestedBy))
                    .col(string_len(Runs::Language, 16))
                    .col(string_len(Runs::Entry, 255))
                    .col(json(Runs::Files))
                    .col(blob(Runs::Stdin))
                    .col(json(Runs::Limits))
                    .col(string_len(Runs::Status, 16))
                    .col(boolean(Runs::CancelRequested).default(false))
                    .col(integer_null(Runs::ExitCode))
                    .col(integer_null(Runs::Signal))
                    .col(text(Runs::Stdout))
                    .col(text(Runs::Stderr))
                    .col(boolean(Runs::StdoutTruncated).default(false))
                    .col(boolean(Runs::StderrTruncated).default(false))
                    .col(big_integer(Runs::OutputSeq).default(0))
                    .col(big_integer_null(Runs::WallMs))
                    .col(big_integer_null(Runs::CpuMs))
                    .col(big_integer_null(Runs::PeakMemoryBytes))
                    .col(integer(Runs::Attempts).default(0))
                    .col(string_len_null(Runs::WorkerId, 64))
                    .col(text_null(Runs::Error))
                    .col(timestamp_with_time_zone_null(Runs::HeartbeatAt))
                    .col(timestamp_with_time_zone(Runs::CreatedAt))
                    .col(timestamp_with_time_zone_null(Runs::StartedAt))
                    .col(timestamp_with_time_zone_null(Runs::FinishedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_runs_project")
                            .from(Runs::Table, Runs::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_runs_requested_by")
                            .from(Runs::Table, Runs::RequestedBy)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("idx_runs_project_time", [Runs::ProjectId, Runs::CreatedAt]),
            (
                "idx_runs_requester_time",
                [Runs::RequestedBy, Runs::CreatedAt],
            ),
            (
                "idx_runs_status_heartbeat",
                [Runs::Status, Runs::HeartbeatAt],
            ),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Runs::Table)
                        .col(columns[0])
                        .col(columns[1])
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Runs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Runs {
    Table,
    Id,
    ProjectId,
    RequestedBy,
    Language,
    Entry,
    Files,
    Stdin,
    Limits,
    Status,
    CancelRequested,
    ExitCode,
    Signal,
    Stdout,
    Stderr,
    StdoutTruncated,
    StderrTruncated,
    OutputSeq,
    WallMs,
    CpuMs,
    PeakMemoryBytes,
    Attempts,
    WorkerId,
    Error,
    HeartbeatAt,
    CreatedAt,
    StartedAt,
    FinishedAt,
}
