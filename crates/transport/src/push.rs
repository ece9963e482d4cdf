//! Writing images to a registry over the Distribution API: the client side
//! of `drydock import` for local sources, which reads the layout or archive
//! where the user is and pushes it, so the server never reads its own files.
//!
//! Blobs go up as a monolithic streamed upload (`POST` a session, then one
//! `PUT …?digest=` whose body is the source's verified stream, so nothing
//! holds a layer in memory and a bad byte aborts the request before the
//! registry can commit); a blob the repository already has (`HEAD`) is not
//! sent. Manifests are `PUT` by digest or tag with their exact bytes.
//!
//! Authentication mirrors the read side ([`crate::remote`]): credentials go
//! out as HTTP Basic; a `401` with a `Bearer` challenge sends us to its
//! realm for a token with the scope `repository:<name>:pull,push`, using
//! the same token code as [`crate::RemoteSource`].

#[cfg(doc)]
use crate::BlobStream;
use crate::remote::{Bearer, RemoteOptions, RemoteSource, check_status, parse_challenge};
use crate::{Credentials, Error, FetchedManifest};
use oci::{Digest, ImageRef, Name, Reference};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode};
use std::sync::Mutex;
use tokio::io::AsyncRead;

#[derive(Clone)]
enum Auth {
    /// Nothing sent yet beyond the defaults (Basic when we have credentials).
    Initial,
    Bearer(String),
}

/// One repository on a registry, written through `/v2/`.
pub struct Pusher {
    /// Client, credentials and token flow, shared with the read side.
    remote: RemoteSource,
    /// `http(s)://host[:port]`.
    base: String,
    name: Name,
    creds: Option<Credentials>,
    auth: Mutex<Auth>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("base", &self.base)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Where a blob upload stands when it fails: a verification failure (the
/// source's bytes are wrong) is not worth retrying; anything else may be.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct PushError {
    pub error: Error,
    /// The bytes did not match the digest (on our side or the registry's).
    pub verification: bool,
}

impl From<Error> for PushError {
    fn from(error: Error) -> PushError {
        PushError {
            error,
            verification: false,
        }
    }
}

impl Pusher {
    /// A pusher for repository `name` on the registry at `server`
    /// (`http://host[:port]` or `https://…`; plain HTTP only when asked for
    /// by the scheme). `ca_pem` adds trusted roots for a private CA.
    pub fn new(
        server: &str,
        name: Name,
        creds: Option<Credentials>,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<Pusher, Error> {
        let url = reqwest::Url::parse(server.trim_end_matches('/'))
            .map_err(|e| Error::Spec(format!("server {server:?} is not a URL: {e}")))?;
        let insecure = match url.scheme() {
            "http" => true,
            "https" => false,
            s => {
                return Err(Error::Spec(format!(
                    "server {server:?}: use an http:// or https:// URL, not {s}:"
                )));
            }
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(Error::Spec(format!(
                "server {server:?}: give the registry's base URL without a path"
            )));
        }
        let host = match (url.host_str(), url.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => return Err(Error::Spec(format!("server {server:?} names no host"))),
        };
        let image = ImageRef {
            host: host.clone(),
            name: name.clone(),
            tag: None,
            digest: None,
        };
        let remote = RemoteSource::with_options(
            image,
            creds.clone(),
            insecure,
            RemoteOptions {
                ca_pem,
                ..Default::default()
            },
        )?;
        Ok(Pusher {
            remote,
            base: format!("{}://{host}", url.scheme()),
            name,
            creds,
            auth: Mutex::new(Auth::Initial),
        })
    }

    /// `http(s)://host/name`, for messages.
    pub fn describe(&self) -> String {
        format!("{}/{}", self.base, self.name)
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.name)
    }

    fn authorise(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let auth = self.auth.lock().expect("auth").clone();
        match (auth, &self.creds) {
            (Auth::Bearer(t), _) => req.bearer_auth(t),
            (Auth::Initial, Some(c)) => req.basic_auth(&c.username, Some(&c.password)),
            (Auth::Initial, None) => req,
        }
    }

    fn needs_credentials(&self) -> Error {
        Error::Auth(format!(
            "{} requires credentials for {} (use --username/--password or DRYDOCK_USERNAME/DRYDOCK_PASSWORD)",
            self.base, self.name
        ))
    }

    /// Send a request whose body can be replayed, answering one `401`.
    async fn send(
        &self,
        method: Method,
        url: &str,
        headers: HeaderMap,
        body: Option<bytes::Bytes>,
    ) -> Result<Response, Error> {
        let mut challenged = false;
        loop {
            let mut req = self
                .authorise(self.remote.http().request(method.clone(), url))
                .headers(headers.clone());
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let resp = req.send().await.map_err(|e| {
                Error::Http(format!(
                    "{method} {url}: {}",
                    crate::remote::describe_reqwest(&e)
                ))
            })?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            if challenged {
                return Err(if self.creds.is_some() {
                    Error::Auth(format!(
                        "{} refused the credentials for pushing to {}",
                        self.base, self.name
                    ))
                } else {
                    self.needs_credentials()
                });
            }
            challenged = true;
            self.answer(&resp).await?;
        }
    }

    /// Learn from a `401`: fetch a bearer token, or give up when the
    /// registry wants Basic credentials we do not have (or already sent).
    async fn answer(&self, resp: &Response) -> Result<(), Error> {
        let challenges: Vec<(String, Vec<(String, String)>)> = resp
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .collect();
        if let Some(bearer) = Bearer::find(&challenges) {
            let realm = bearer.realm(&self.base)?;
            let scope = format!("repository:{}:pull,push", self.name);
            let token = self
                .remote
                .token(&realm, bearer.param("service"), scope)
                .await
                .map_err(|e| match e {
                    // The read side's hint names its own flag.
                    Error::Auth(m) => Error::Auth(m.replace("--creds", "--username/--password")),
                    e => e,
                })?;
            *self.auth.lock().expect("auth") = Auth::Bearer(token);
            return Ok(());
        }
        if self.creds.is_none() {
            return Err(self.needs_credentials());
        }
        // Basic credentials were sent already and refused.
        Err(Error::Auth(format!(
            "{} refused the credentials for pushing to {}",
            self.base, self.name
        )))
    }

    /// Whether the repository already holds blob `digest`.
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool, Error> {
        let url = self.url(&format!("blobs/{digest}"));
        let resp = self
            .send(Method::HEAD, &url, HeaderMap::new(), None)
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(Error::Http(format!("HEAD blob {digest}: HTTP {s}"))),
        }
    }

    /// Upload blob `digest` of `size` bytes from `body` (a [`BlobStream`],
    /// perhaps wrapped: its read fails at the end on a mismatch, which
    /// aborts the request before the registry commits). Returns once the
    /// registry has committed it.
    pub async fn push_blob(
        &self,
        digest: &Digest,
        size: u64,
        body: impl AsyncRead + Send + 'static,
    ) -> Result<(), PushError> {
        let start = self
            .send(
                Method::POST,
                &self.url("blobs/uploads/"),
                HeaderMap::new(),
                Some(bytes::Bytes::new()),
            )
            .await?;
        if start.status() != StatusCode::ACCEPTED {
            let e = check_status(start, &format!("starting the upload of {digest}")).await;
            return Err(e
                .err()
                .unwrap_or_else(|| Error::Http(format!("starting the upload of {digest}: not 202")))
                .into());
        }
        let location = start
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::Http(format!("upload of {digest}: no Location")))?;
        let mut url = reqwest::Url::parse(&self.base)
            .and_then(|b| b.join(location))
            .map_err(|e| Error::Http(format!("upload of {digest}: bad Location: {e}")))?;
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());

        // The stream fails at its end on a digest or size mismatch; the
        // request then aborts, and the registry verifies again on commit.
        let failed = std::sync::Arc::new(Mutex::new(None::<String>));
        let seen = failed.clone();
        let chunks = tokio_util::io::ReaderStream::with_capacity(body, 256 << 10);
        let stream = futures::StreamExt::inspect(chunks, move |r| {
            if let Err(e) = r {
                *seen.lock().expect("error slot") = Some(e.to_string());
            }
        });
        let resp = self
            .authorise(self.remote.http().put(url))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await;
        if let Some(e) = failed.lock().expect("error slot").take() {
            return Err(PushError {
                error: Error::Invalid(format!("blob {digest}: {e}")),
                verification: true,
            });
        }
        let resp = resp.map_err(|e| {
            Error::Http(format!(
                "uploading {digest}: {}",
                crate::remote::describe_reqwest(&e)
            ))
        })?;
        match resp.status() {
            StatusCode::CREATED | StatusCode::NO_CONTENT | StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => {
                // A token that expired mid-upload: start over next time.
                *self.auth.lock().expect("auth") = Auth::Initial;
                return Err(Error::Auth(format!(
                    "{} asked for credentials again while {digest} was uploading",
                    self.base
                ))
                .into());
            }
            StatusCode::BAD_REQUEST => {
                let e = check_status(resp, &format!("uploading {digest}")).await;
                let error = e.err().unwrap_or_else(|| Error::Http("bad request".into()));
                let verification = {
                    let m = error.to_string();
                    m.contains("DIGEST_INVALID") || m.contains("SIZE_INVALID")
                };
                return Err(PushError {
                    error,
                    verification,
                });
            }
            _ => {
                let e = check_status(resp, &format!("uploading {digest}")).await;
                return Err(e
                    .err()
                    .unwrap_or_else(|| {
                        Error::Http(format!("uploading {digest}: unexpected status"))
                    })
                    .into());
            }
        }
        if let Some(stored) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            && stored.trim() != digest.to_string()
        {
            return Err(PushError {
                error: Error::Invalid(format!("the registry stored {digest} as {}", stored.trim())),
                verification: true,
            });
        }
        Ok(())
    }

    /// Store manifest `m` under `reference` (its digest, or a tag).
    /// Returns the digest the registry reports.
    pub async fn put_manifest(
        &self,
        reference: &Reference,
        m: &FetchedManifest,
    ) -> Result<Digest, Error> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(&m.media_type)
                .map_err(|_| Error::Invalid(format!("manifest {}: bad media type", m.digest)))?,
        );
        let resp = self
            .send(Method::PUT, &url, headers, Some(m.bytes.clone()))
            .await?;
        let what = format!("manifest {} as {}:{reference}", m.digest, self.name);
        let resp = check_status(resp, &what).await?;
        match resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            Some(d) => Digest::parse(d.trim())
                .map_err(|e| Error::Invalid(format!("{what}: bad Docker-Content-Digest: {e}"))),
            None => Ok(m.digest.clone()),
        }
    }
}
