//! CNI client (being written).
