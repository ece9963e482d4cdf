//! assess (placeholder)
