//! Parameter values (being written).
