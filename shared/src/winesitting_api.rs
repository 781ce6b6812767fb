//! WineSitting's REST API (being written).
