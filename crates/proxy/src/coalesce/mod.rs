//! Upsert coalescing (being written).

pub mod values;
