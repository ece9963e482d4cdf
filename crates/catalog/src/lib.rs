//! catalog (placeholder)
