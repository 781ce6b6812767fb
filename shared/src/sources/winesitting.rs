//! WineSitting (being written).
