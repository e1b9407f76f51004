//! Classification of statements for the coalescer (being written).
