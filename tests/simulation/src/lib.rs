//! A deterministic simulation of the whole bundle (being written).
