//! web (placeholder)
