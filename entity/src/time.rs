//! Timestamps as the database keeps them: UTC, microsecond precision (PostgreSQL's), so a
//! value read back compares equal to the one written and cursors round-trip exactly.

use chrono::{DateTime, SubsecRound, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
