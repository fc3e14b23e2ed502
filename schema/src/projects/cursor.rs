//! Opaque cursors for lists sorted newest first: the sort key (a timestamp, then the id) of
//! the last row seen. Projects use their last activity, chat messages their creation time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use sea_orm::{ColumnTrait, Condition};

use crate::error::{ApiError, ApiResult};

/// Rows after the cursor `(at, id)` in a newest-first list sorted by `at_column`, then
/// `id_column`, both descending.
pub fn older_than(
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
pub fn page<T>(mut rows: Vec<T>, limit: usize) -> (Vec<T>, bool) {
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
