//! HTTP vendor adapters (being written).
