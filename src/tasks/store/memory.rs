//! In-process store (being written).
