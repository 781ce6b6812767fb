//! A local Lambda Runtime API (being moved here from lambda-bench).
