//! Registry errors, mapped to the distribution-spec error codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// The distribution-spec error codes (plus `UNKNOWN` for internal errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    /// Not a spec code: an internal failure (500).
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }

    /// The status a code is usually served with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// An error from the registry: a spec code, the HTTP status to serve it
/// with, and a human-readable message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct RegistryError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub message: String,
}

impl RegistryError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> RegistryError {
        RegistryError {
            code,
            status: code.status(),
            message: message.into(),
        }
    }
    pub fn with_status(mut self, status: StatusCode) -> RegistryError {
        self.status = status;
        self
    }
    pub fn internal(e: impl std::fmt::Display) -> RegistryError {
        tracing::error!("internal error: {e}");
        RegistryError::new(ErrorCode::Unknown, format!("internal error: {e}"))
    }
    /// The data directory's filesystem (or quota) is full: 507 Insufficient
    /// Storage. The spec has no code for it; `UNKNOWN` is the code a
    /// client accepts for anything else, and the message says what
    /// happened. Logged at error level, at most once a minute, so a full
    /// disk under load does not also flood the log.
    pub fn storage_full(e: impl std::fmt::Display) -> RegistryError {
        use std::sync::atomic::{AtomicU64, Ordering};
        static LAST_LOGGED: AtomicU64 = AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = LAST_LOGGED.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 60)
            && LAST_LOGGED
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::error!(
                "the registry's storage is full ({e}); pushes fail until space is freed \
                 (delete images and run `drydock gc`, or grow the filesystem)"
            );
        }
        RegistryError::new(
            ErrorCode::Unknown,
            "the registry's storage is full: no space left to store this; \
             try again after the registry's administrator frees space",
        )
        .with_status(StatusCode::INSUFFICIENT_STORAGE)
    }
    pub fn blob_unknown(d: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(ErrorCode::BlobUnknown, format!("blob {d} is unknown"))
    }
    pub fn manifest_unknown(r: impl std::fmt::Display) -> RegistryError {
        RegistryError::new(
            ErrorCode::ManifestUnknown,
            format!("manifest {r} is unknown"),
        )
    }
    pub fn upload_unknown() -> RegistryError {
        RegistryError::new(ErrorCode::BlobUploadUnknown, "upload session is unknown")
    }

    /// The spec's JSON error body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": null }]
        })
        .to_string()
    }
}

impl From<storage::MetaError> for RegistryError {
    fn from(e: storage::MetaError) -> Self {
        if e.is_storage_full() {
            RegistryError::storage_full(e)
        } else {
            RegistryError::internal(e)
        }
    }
}

impl From<std::io::Error> for RegistryError {
    fn from(e: std::io::Error) -> Self {
        if storage::is_storage_full(&e) {
            RegistryError::storage_full(e)
        } else {
            RegistryError::internal(e)
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let body = self.body();
        (
            self.status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}
