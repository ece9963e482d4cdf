//! remote (placeholder)
