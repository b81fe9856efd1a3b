//! The in-process actor runtime.
pub mod stream;
