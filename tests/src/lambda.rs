//! The real function binaries through a local Lambda Runtime API (being written).
