//! Provider TOML specs (being written).
