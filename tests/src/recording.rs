//! SDK clients that record the operations each function calls (being written).
