//! The log store: a document in the database is a snapshot plus the log of updates
//! appended since. (Checkpoints are version rows: `versions/store.rs`.)

use entity::document;
use entity::document_update;
use entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::time::now;

/// What a document is built from.
pub struct Stored {
    pub snapshot: Option<Vec<u8>>,
    pub snapshot_seq: i64,
    pub updates: Vec<document_update::Model>,
}

/// Make sure `project` has its `documents` row (documents are created lazily).
pub async fn ensure(db: &impl ConnectionTrait, project: Uuid) -> ApiResult<()> {
    document::Entity::insert(document::ActiveModel {
        project_id: Set(project),
        head_seq: Set(0),
        snapshot: Set(None),
        snapshot_seq: Set(0),
        updated_at: Set(now()),
    })
    .on_conflict_do_nothing_on([document::Column::ProjectId])
    .exec(db)
    .await?;
    Ok(())
}

/// Everything stored for `project`.
pub async fn load(db: &DatabaseConnection, project: Uuid) -> ApiResult<Stored> {
    ensure(db, project).await?;
    let txn = db.begin().await?;
    let doc = Document::find_by_id(project)
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound("project"))?;
    let updates = since(&txn, project, doc.snapshot_seq).await?;
    txn.commit().await?;
    Ok(Stored {
        snapshot: doc.snapshot,
        snapshot_seq: doc.snapshot_seq,
        updates,
    })
}

/// The logged updates after `seq`, in order. The first one is not `seq + 1` when a
/// compaction folded them into the snapshot meanwhile.
pub async fn since(
    db: &impl ConnectionTrait,
    project: Uuid,
    seq: i64,
) -> ApiResult<Vec<document_update::Model>> {
    Ok(DocumentUpdate::find()
        .filter(document_update::Column::ProjectId.eq(project))
        .filter(document_update::Column::Seq.gt(seq))
        .order_by_asc(document_update::Column::Seq)
        .all(db)
        .await?)
}

/// The head (last sequence number) of each of `projects` that has a document.
pub async fn heads(db: &DatabaseConnection, projects: &[Uuid]) -> ApiResult<Vec<(Uuid, i64)>> {
    let mut heads = Vec::with_capacity(projects.len());
    // Well under every backend's limit of bound parameters per statement.
    for chunk in projects.chunks(1000) {
        let rows: Vec<(Uuid, i64)> = Document::find()
            .select_only()
            .column(document::Column::ProjectId)
            .column(document::Column::HeadSeq)
            .filter(document::Column::ProjectId.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        heads.extend(rows);
    }
    Ok(heads)
}

/// One update on its way into the log.
pub struct NewUpdate {
    pub data: Vec<u8>,
    pub author: Option<Uuid>,
    pub client_id: Option<String>,
}

/// Append `updates` to the log, in order and durably, in one transaction (a group commit:
/// the edits that arrived while the previous commit was in flight); returns the sequence
/// number of the first, the others following it. The counter row is locked by the UPDATE,
/// so appends from several nodes get consecutive numbers.
pub async fn append(
    db: &DatabaseConnection,
    project: Uuid,
    updates: Vec<NewUpdate>,
) -> ApiResult<i64> {
    let count = i64::try_from(updates.len()).map_err(ApiError::internal)?;
    if count == 0 {
        return Err(ApiError::internal(anyhow::anyhow!("nothing to append")));
    }
    let at = now();
    let txn = db.begin().await?;
    let bump = Query::update()
        .table(document::Entity)
        .value(
            document::Column::HeadSeq,
            Expr::col(document::Column::HeadSeq).add(count),
        )
        .value(document::Column::UpdatedAt, at)
        .and_where(document::Column::ProjectId.eq(project))
        .returning_col(document::Column::HeadSeq)
        .to_owned();
    let last: i64 = txn
        .query_one(&bump)
        .await?
        .ok_or(ApiError::NotFound("project"))?
        .try_get("", "head_seq")?;
    let first = last - count + 1;
    DocumentUpdate::insert_many(updates.into_iter().zip(first..).map(|(update, seq)| {
        document_update::ActiveModel {
            project_id: Set(project),
            seq: Set(seq),
            data: Set(update.data),
            author_id: Set(update.author),
            client_id: Set(update.client_id),
            created_at: Set(at),
        }
    }))
    .exec(&txn)
    .await?;
    txn.commit().await?;
    Ok(first)
}

/// Replace the snapshot with one holding every update up to `upto`, and drop those
/// updates from the log, in one transaction. A newer snapshot (another node's) wins.
pub async fn compact(
    db: &DatabaseConnection,
    project: Uuid,
    snapshot: Vec<u8>,
    upto: i64,
) -> ApiResult<()> {
    let txn = db.begin().await?;
    let replaced = Document::update_many()
        .col_expr(document::Column::Snapshot, Expr::value(snapshot))
        .col_expr(document::Column::SnapshotSeq, Expr::value(upto))
        .col_expr(document::Column::UpdatedAt, Expr::value(now()))
        .filter(document::Column::ProjectId.eq(project))
        .filter(document::Column::SnapshotSeq.lt(upto))
        .exec(&txn)
        .await?;
    if replaced.rows_affected == 1 {
        DocumentUpdate::delete_many()
            .filter(document_update::Column::ProjectId.eq(project))
            .filter(document_update::Column::Seq.lte(upto))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}

/// Edits are activity: move the project up the lists sorted by it.
pub async fn mark_activity(db: &DatabaseConnection, project: Uuid) -> ApiResult<()> {
    Project::update_many()
        .col_expr(entity::project::Column::LastActivityAt, Expr::value(now()))
        .filter(entity::project::Column::Id.eq(project))
        .exec(db)
        .await?;
    Ok(())
}

/// Give a new project (a fork) its document: `snapshot`, with an empty log.
pub async fn seed(db: &impl ConnectionTrait, project: Uuid, snapshot: Vec<u8>) -> ApiResult<()> {
    document::ActiveModel {
        project_id: Set(project),
        head_seq: Set(0),
        snapshot: Set(Some(snapshot)),
        snapshot_seq: Set(0),
        updated_at: Set(now()),
    }
    .insert(db)
    .await?;
    Ok(())
}
