//! The tour / booking platform (being written).
