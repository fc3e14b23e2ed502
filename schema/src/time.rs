//! Timestamps as the database keeps them (see `entity::time`).

pub use entity::time::now;
