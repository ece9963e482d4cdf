//! vulndb (placeholder)
