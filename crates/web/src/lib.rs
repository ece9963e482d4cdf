//! web (placeholder)
pub mod dashboard;
