//! The one query-string decoder of `/api/v1`: axum's `Query` into a serde
//! struct per endpoint (`deny_unknown_fields`, so a misspelt parameter is
//! refused rather than ignored), its rejection turned into the API's 400.
//! Values stay strings where the handler's own check words the error
//! better than serde would (`limit must be a number from 1 to 1000`).

use super::ApiError;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

/// `Params(q)`: the query string decoded into `T`.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}

/// An endpoint without parameters: any parameter is refused.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Strings until checked: the handler words its own errors.
macro_rules! query_struct {
    ($(#[$m:meta])* $name:ident { $($field:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $(pub $field: Option<String>,)*
        }
    };
}

query_struct!(
    /// `GET /images`.
    ImagesQuery { repository, health }
);
query_struct!(
    /// `GET /images/{digest}`.
    ImageQuery { severity, status, fixable, exempt, inventory }
);
query_struct!(
    /// `GET /images/{digest}/findings`.
    FindingsQuery { severity, status, fixable, exempt, q, limit, cursor }
);
query_struct!(
    /// `GET /images/{digest}/packages`.
    PackagesQuery { q, limit, cursor }
);
query_struct!(
    /// A plain page: `GET /images/{digest}/layers`.
    PageQuery { limit, cursor }
);
query_struct!(
    /// `GET /images/{digest}/sbom`.
    SbomQuery { format }
);
query_struct!(
    /// `GET /recommendations`, `GET /audit`.
    LimitQuery { limit }
);
query_struct!(
    /// `GET /usage`.
    UsageQuery { from, to }
);

query_struct!(
    /// `GET /browse/images`.
    BrowseImagesQuery { q, repository, state, untagged, sort, order, cursor, limit }
);
query_struct!(
    /// `GET /browse/repositories`.
    RepositoriesQuery { q, cursor, limit }
);
query_struct!(
    /// `GET /browse/tags`.
    TagsQuery { repository, q, sort, cursor, limit }
);
query_struct!(
    /// `GET /vulnerabilities`.
    VulnerabilitiesQuery { q, severity, fixable, sort, order, cursor, limit }
);

query_struct!(
    /// `GET /audit`.
    AuditParams { identity, action, repository, outcome, since, until, before, limit }
);
query_struct!(
    /// `GET /tokens`.
    OwnerQuery { owner }
);

/// The findings filters an image view and its findings pages share.
pub struct FilterParams<'a> {
    pub severity: Option<&'a str>,
    pub status: Option<&'a str>,
    pub fixable: Option<&'a str>,
    pub exempt: Option<&'a str>,
}

macro_rules! filters {
    ($t:ty) => {
        impl $t {
            pub fn filter(&self) -> FilterParams<'_> {
                FilterParams {
                    severity: self.severity.as_deref(),
                    status: self.status.as_deref(),
                    fixable: self.fixable.as_deref(),
                    exempt: self.exempt.as_deref(),
                }
            }
        }
    };
}
filters!(ImageQuery);
filters!(FindingsQuery);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Q {
        q: Option<String>,
        limit: Option<String>,
    }

    async fn parse(uri: &str) -> Result<Q, ApiError> {
        let (mut parts, _) = Request::get(uri).body(()).unwrap().into_parts();
        Params::<Q>::from_request_parts(&mut parts, &())
            .await
            .map(|p| p.0)
    }

    #[tokio::test]
    async fn decodes_percent_and_plus_and_refuses_unknown_names() {
        let q = parse("/x?q=a%2Fb+c&limit=5").await.unwrap();
        assert_eq!(q.q.as_deref(), Some("a/b c"));
        assert_eq!(q.limit.as_deref(), Some("5"));
        assert_eq!(
            parse("/x").await.unwrap(),
            Q {
                q: None,
                limit: None
            }
        );
        let e = parse("/x?limt=5").await.err().unwrap();
        assert!(e.message.contains("limt"), "{}", e.message);
        // Bytes that are not UTF-8 decode to U+FFFD rather than failing.
        let q = parse("/x?q=%FF").await.unwrap();
        assert_eq!(q.q.as_deref(), Some("\u{FFFD}"));
    }
}
