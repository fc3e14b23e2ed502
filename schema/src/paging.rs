//! Keyset paging of lists sorted newest first, with opaque cursors: the sort key (a
//! timestamp, then the id) of the last row seen. Projects page by their last activity, chat
//! messages and runs by their creation time; all go through [`newest_first`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Select,
};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};

/// One page of a newest-first list.
pub struct Page<T> {
    /// The rows, each with the cursor that pages on after it.
    pub rows: Vec<(String, T)>,
    pub has_next_page: bool,
    /// Whether the page started after a cursor.
    pub has_previous_page: bool,
}

/// At most `limit` rows of `query`, newest first by `at_column` then `id_column`, after the
/// cursor `after` ([`decode`]d from what the client sent). `key` reads a row's sort key.
pub async fn newest_first<E: EntityTrait>(
    db: &impl ConnectionTrait,
    mut query: Select<E>,
    at_column: E::Column,
    id_column: E::Column,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: usize,
    key: impl Fn(&E::Model) -> (DateTime<Utc>, Uuid),
) -> ApiResult<Page<E::Model>> {
    if let Some(after) = after {
        query = query.filter(older_than(at_column, id_column, after));
    }
    let rows = query
        .order_by_desc(at_column)
        .order_by_desc(id_column)
        .limit(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
        .all(db)
        .await?;
    let (rows, has_next_page) = page(rows, limit);
    Ok(Page {
        rows: rows
            .into_iter()
            .map(|row| {
                let (at, id) = key(&row);
                (encode(at, id), row)
            })
            .collect(),
        has_next_page,
        has_previous_page: after.is_some(),
    })
}

/// Rows after the cursor `(at, id)` in a newest-first list sorted by `at_column`, then
/// `id_column`, both descending.
fn older_than(
    at_column: impl ColumnTrait,
    id_column: impl ColumnTrait,
    (at, id): (DateTime<Utc>, Uuid),
) -> Condition {
    Condition::any()
        .add(at_column.lt(at))
        .add(Condition::all().add(at_column.eq(at)).add(id_column.lt(id)))
}

/// Cut `rows` (fetched with one row more than `limit`) to the page, and tell whether more
/// follow.
fn page<T>(mut rows: Vec<T>, limit: usize) -> (Vec<T>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

pub fn encode(at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{id}", at.timestamp_micros()))
}

pub fn decode(field: &'static str, cursor: &str) -> ApiResult<(DateTime<Utc>, Uuid)> {
    let invalid = || ApiError::bad_input(field, "the cursor is not one this server handed out");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
    let at = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(invalid)?;
    let id = Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok((at, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() -> ApiResult<()> {
        let at = crate::time::now();
        let id = Uuid::new_v4();
        assert_eq!(decode("after", &encode(at, id))?, (at, id));
        assert!(decode("after", "bm9wZQ").is_err());
        assert!(decode("after", "!!").is_err());
        Ok(())
    }
}
