//! oci (placeholder)
