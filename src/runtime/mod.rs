//! The in-process actor runtime.
pub mod config;
pub mod stream;

pub use config::NetworkConfig;
