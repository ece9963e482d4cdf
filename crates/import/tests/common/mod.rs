//! What the import tests share: the registry they import into, on the
//! backend the environment picks (`DRYDOCK_TEST_METADATA`,
//! `DRYDOCK_TEST_BLOBS`; defined once beside the registry's tests).
#![allow(dead_code)] // each test binary uses its own part

#[path = "../../../registry/tests/common/backend.rs"]
pub mod backend;
#[path = "../../../registry/tests/common/s3.rs"]
pub mod s3;

/// A registry on `data` and the environment's backend.
pub fn open_registry(data: &std::path::Path) -> registry::Registry {
    registry::Registry::open(backend::registry_options(data)).unwrap()
}
