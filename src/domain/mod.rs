//! Validated types and the rules of orgd. Knows nothing of tonic or sqlx.

pub mod access;
pub mod audit;
pub mod batch;
pub mod content;
pub mod error;
pub mod labels;
pub mod model;
pub mod page;
pub mod types;

pub use error::{Error, ErrorKind, Result};
