//! `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`: a registry speaking the
//! Distribution API.
//!
//! Authentication follows the registry's lead: requests go out anonymously
//! (or with what an earlier challenge taught us); a `401` with a `Basic`
//! challenge is answered with the credentials, one with a `Bearer` challenge
//! sends us to its `realm` for a token (with `service` and `scope`, and the
//! credentials as Basic when we have them), which we then present. A token
//! that expires is replaced the same way on the next `401`.

use crate::verify::{BlobStream, ByteStream};
use crate::{Credentials, Error, FetchedManifest, ImageSource, MAX_MANIFEST_BYTES};
use async_trait::async_trait;
use backon::Retryable;
use bytes::Bytes;
use futures::StreamExt;
use oci as media;
use oci::{Digest, ImageRef, Reference};
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How hard to try before giving up on a request or a transfer: the
/// outbound retry policy every crate shares.
pub use egress::RetryPolicy;

/// How one try at a request ended, when it did not end well.
enum Attempt {
    /// Retrying cannot help (a refused address, an untrusted certificate,
    /// refused credentials).
    Fatal(Error),
    /// A 5xx or 429: retried, and handed to the caller on the last try.
    Status(Response),
    /// The connection failed.
    Network(reqwest::Error),
}

impl Attempt {
    fn transient(&self) -> bool {
        !matches!(self, Attempt::Fatal(_))
    }
}

#[derive(Clone)]
enum Auth {
    None,
    Basic,
    Bearer(String),
}

struct Inner {
    client: reqwest::Client,
    /// `https://host[:port]` (or `http://` when insecure).
    base: String,
    image: ImageRef,
    creds: Option<Credentials>,
    insecure: bool,
    auth: Mutex<Auth>,
    retry: RetryPolicy,
    outbound: egress::EgressPolicy,
}

/// A repository on a remote registry.
#[derive(Clone)]
pub struct RemoteSource {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteSource")
            .field("base", &self.inner.base)
            .field("name", &self.inner.image.name)
            .finish_non_exhaustive()
    }
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Settings for a [`RemoteSource`] beyond the spec.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    pub retry: RetryPolicy,
    /// Extra trusted root certificates (a PEM bundle) for a registry whose
    /// certificate a private CA signed.
    pub ca_pem: Option<Vec<u8>>,
    /// Addresses the registry, its token server and its redirects may be
    /// at. The default reaches any address, as the command line's requests
    /// may (the user names them); a server passes its outbound policy.
    pub outbound: egress::EgressPolicy,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            retry: RetryPolicy::default(),
            ca_pem: None,
            outbound: egress::EgressPolicy::allow_all(),
        }
    }
}

/// Environment variable naming a PEM bundle of extra trusted roots.
pub const CA_FILE_ENV: &str = "DRYDOCK_CA_FILE";

/// The extra trusted roots named by `DRYDOCK_CA_FILE`, if set.
pub fn ca_pem_from_env() -> Result<Option<Vec<u8>>, Error> {
    match std::env::var_os(CA_FILE_ENV) {
        Some(path) if !path.is_empty() => {
            Ok(Some(std::fs::read(&path).map_err(|e| {
                Error::io(format!("{CA_FILE_ENV}={}", path.to_string_lossy()), e)
            })?))
        }
        _ => Ok(None),
    }
}

impl RemoteSource {
    /// A source for `image`; nothing is contacted yet. Extra trusted roots
    /// come from the PEM file named by `DRYDOCK_CA_FILE`, if set.
    ///
    /// For the command line: any address may be reached (the user names
    /// it). A server builds its sources with [`RemoteSource::with_options`]
    /// and its outbound policy.
    pub fn new(
        image: ImageRef,
        creds: Option<Credentials>,
        insecure: bool,
    ) -> Result<RemoteSource, Error> {
        Self::with_options(
            image,
            creds,
            insecure,
            RemoteOptions {
                ca_pem: ca_pem_from_env()?,
                ..Default::default()
            },
        )
    }

    /// Like [`RemoteSource::new`] (any address may be reached) with
    /// `retry` and no extra trusted roots.
    pub fn with_retry(
        image: ImageRef,
        creds: Option<Credentials>,
        insecure: bool,
        retry: RetryPolicy,
    ) -> Result<RemoteSource, Error> {
        Self::with_options(
            image,
            creds,
            insecure,
            RemoteOptions {
                retry,
                ..Default::default()
            },
        )
    }

    pub fn with_options(
        image: ImageRef,
        creds: Option<Credentials>,
        insecure: bool,
        opts: RemoteOptions,
    ) -> Result<RemoteSource, Error> {
        debug_assert!(ACCEPT.contains(media::OCI_INDEX) && ACCEPT.contains(media::DOCKER_MANIFEST));
        if image.host.contains(['/', '?', '#', '@', ' ']) {
            return Err(Error::Spec(format!(
                "invalid registry host {:?}",
                image.host
            )));
        }
        // A literal IP is connected to without a lookup, so the resolver
        // never sees it: judge it here (names are judged as they resolve).
        opts.outbound
            .check_host(&image.host)
            .map_err(|r| Error::Spec(format!("docker://{}: {r}", image.host)))?;
        let mut builder = egress::apply(
            reqwest::Client::builder()
                .user_agent(concat!("drydock/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(30))
                .read_timeout(Duration::from_secs(120))
                .https_only(!insecure),
            &opts.outbound,
        );
        if let Some(pem) = &opts.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Spec(format!("invalid CA bundle: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Spec("the CA bundle holds no certificates".into()));
            }
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| Error::Http(format!("cannot build HTTP client: {e}")))?;
        let retry = opts.retry;
        let scheme = if insecure { "http" } else { "https" };
        Ok(RemoteSource {
            inner: Arc::new(Inner {
                client,
                base: format!("{scheme}://{}", image.host),
                image,
                creds,
                insecure,
                auth: Mutex::new(Auth::None),
                retry,
                outbound: opts.outbound,
            }),
        })
    }

    /// The image this source reads.
    pub fn image(&self) -> &ImageRef {
        &self.inner.image
    }

    /// The HTTP client (TLS roots, timeouts), shared with the push client.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.client
    }

    /// A bearer token from `realm` for `scope`, fetched with this source's
    /// credentials: the push client reuses the read side's token flow.
    pub(crate) async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: String,
    ) -> Result<String, Error> {
        self.inner.fetch_token(realm, service, Some(scope)).await
    }
}

impl Inner {
    fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.image.name)
    }

    fn apply_auth(&self, req: RequestBuilder) -> RequestBuilder {
        let auth = self.auth.lock().expect("auth").clone();
        match (auth, &self.creds) {
            (Auth::Bearer(t), _) => req.bearer_auth(t),
            (Auth::Basic, Some(c)) => req.basic_auth(&c.username, Some(&c.password)),
            _ => req,
        }
    }

    /// Send a request, answering auth challenges and retrying transient
    /// failures. Returns any response that is not 401/429/5xx (on the last
    /// attempt, those too).
    async fn send(&self, method: Method, url: &str, headers: HeaderMap) -> Result<Response, Error> {
        // Shared by the tries: a challenge is answered once.
        let authenticated = AtomicBool::new(false);
        let tries = AtomicU32::new(0);
        let once = || async {
            tries.fetch_add(1, Ordering::Relaxed);
            self.send_once(&method, url, &headers, &authenticated).await
        };
        let result = once
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(Attempt::transient)
            .notify(|e, _| match e {
                Attempt::Network(e) => {
                    tracing::warn!(%url, error = %describe_reqwest(e), "request failed; retrying")
                }
                Attempt::Status(r) => {
                    tracing::warn!(%url, status = %r.status(), "transient error; retrying")
                }
                Attempt::Fatal(_) => {}
            })
            .await;
        match result {
            Ok(resp) | Err(Attempt::Status(resp)) => Ok(resp),
            Err(Attempt::Fatal(e)) => Err(e),
            Err(Attempt::Network(e)) => Err(Error::Http(format!(
                "{method} {url}: {} (after {} attempts)",
                describe_reqwest(&e),
                tries.load(Ordering::Relaxed)
            ))),
        }
    }

    /// One try of [`Inner::send`] (two requests when it meets a challenge).
    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        headers: &HeaderMap,
        authenticated: &AtomicBool,
    ) -> Result<Response, Attempt> {
        loop {
            let req = self
                .apply_auth(self.client.request(method.clone(), url))
                .headers(headers.clone());
            match req.send().await {
                // The policy will refuse again: say so at once.
                Err(e) if egress::refusal(&e).is_some() => {
                    return Err(Attempt::Fatal(Error::Http(format!(
                        "{method} {url}: {}",
                        egress::describe(&e)
                    ))));
                }
                // A TLS handshake that met plain HTTP, or a certificate
                // that is not trusted, fails the same way every time.
                Err(e) if tls_failure_is_permanent(&e) => {
                    return Err(Attempt::Fatal(Error::Http(format!(
                        "{method} {url}: {}",
                        describe_reqwest(&e)
                    ))));
                }
                Err(e) => return Err(Attempt::Network(e)),
                Ok(resp)
                    if resp.status() == StatusCode::UNAUTHORIZED
                        && !authenticated.load(Ordering::Relaxed) =>
                {
                    let challenges: Vec<String> = resp
                        .headers()
                        .get_all(header::WWW_AUTHENTICATE)
                        .iter()
                        .filter_map(|v| v.to_str().ok().map(str::to_string))
                        .collect();
                    self.authenticate(&challenges)
                        .await
                        .map_err(Attempt::Fatal)?;
                    authenticated.store(true, Ordering::Relaxed);
                }
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    return Err(Attempt::Fatal(Error::Auth(if self.creds.is_some() {
                        format!(
                            "{} refused the credentials for {}",
                            self.image.host, self.image.name
                        )
                    } else {
                        format!(
                            "{} requires credentials for {} (use --creds USER:PASSWORD)",
                            self.image.host, self.image.name
                        )
                    })));
                }
                Ok(resp)
                    if resp.status().is_server_error()
                        || resp.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    return Err(Attempt::Status(resp));
                }
                Ok(resp) => return Ok(resp),
            }
        }
    }

    async fn authenticate(&self, challenges: &[String]) -> Result<(), Error> {
        let parsed: Vec<(String, Vec<(String, String)>)> = challenges
            .iter()
            .filter_map(|c| parse_challenge(c))
            .collect();
        if let Some(bearer) = Bearer::find(&parsed) {
            let realm = bearer.realm(&self.image.host)?;
            let token = self
                .fetch_token(&realm, bearer.param("service"), bearer.param("scope"))
                .await?;
            *self.auth.lock().expect("auth") = Auth::Bearer(token);
            return Ok(());
        }
        if parsed.iter().any(|(s, _)| s.eq_ignore_ascii_case("basic")) {
            if self.creds.is_none() {
                return Err(Error::Auth(format!(
                    "{} requires credentials for {} (use --creds USER:PASSWORD)",
                    self.image.host, self.image.name
                )));
            }
            *self.auth.lock().expect("auth") = Auth::Basic;
            return Ok(());
        }
        Err(Error::Auth(format!(
            "{} answered 401 without a challenge we understand ({})",
            self.image.host,
            challenges.join("; ")
        )))
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String, Error> {
        let realm_url = reqwest::Url::parse(realm)
            .map_err(|e| Error::Auth(format!("token realm {realm:?} is not a URL: {e}")))?;
        self.outbound
            .check_url(&realm_url)
            .map_err(|r| Error::Auth(format!("token realm {realm:?}: {r}")))?;
        if realm_url.scheme() != "https" && !(self.insecure && realm_url.scheme() == "http") {
            return Err(Error::Auth(format!(
                "token realm {realm:?} is not HTTPS (use --insecure to allow plain HTTP)"
            )));
        }
        let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.image.name));
        let mut query: Vec<(&str, String)> = vec![("scope", scope)];
        if let Some(s) = service {
            query.push(("service", s));
        }
        let once = || async {
            let mut req = self.client.get(realm_url.clone()).query(&query);
            if let Some(c) = &self.creds {
                req = req.basic_auth(&c.username, Some(&c.password));
            }
            match req.send().await {
                Err(e) if egress::refusal(&e).is_some() => Err(Attempt::Fatal(Error::Auth(
                    format!("token server {realm}: {}", egress::describe(&e)),
                ))),
                Err(e) => Err(Attempt::Network(e)),
                Ok(r) if r.status().is_server_error() => Err(Attempt::Status(r)),
                Ok(r) => Ok(r),
            }
        };
        let resp = match once
            .retry(self.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(Attempt::transient)
            .await
        {
            Ok(r) | Err(Attempt::Status(r)) => r,
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Network(e)) => {
                return Err(Error::Auth(format!(
                    "token server {realm}: {}",
                    describe_reqwest(&e)
                )));
            }
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(Error::Auth(format!(
                "token server {realm} answered {status}{}",
                if self.creds.is_some() {
                    " (credentials rejected?)"
                } else {
                    " (credentials needed? use --creds)"
                }
            )));
        }
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
        }
        let body = read_bounded(resp, 1 << 20, "token response").await?;
        let t: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| Error::Auth(format!("token server {realm}: invalid response: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Auth(format!("token server {realm} returned no token")))
    }

    async fn get_manifest(&self, reference: &Reference) -> Result<FetchedManifest, Error> {
        let url = self.url(&format!("manifests/{reference}"));
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, header::HeaderValue::from_static(ACCEPT));
        let resp = self.send(Method::GET, &url, headers).await?;
        let resp = check_status(resp, &format!("manifest {}:{reference}", self.image.name)).await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let header_digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| Digest::parse(v.trim()).ok());
        let body = read_bounded(resp, MAX_MANIFEST_BYTES, "manifest").await?;
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => header_digest,
        };
        FetchedManifest::verified(
            body,
            content_type.as_deref(),
            expected.as_ref(),
            &format!("manifest {}:{reference}", self.image.name),
        )
    }

    /// Start (or restart at `offset`) a blob download. Returns the response,
    /// how many leading bytes to drop (a server that ignored `Range`), and
    /// the blob's total size when the server said.
    async fn open_blob(
        &self,
        digest: &Digest,
        offset: u64,
    ) -> Result<(Response, u64, Option<u64>), Error> {
        let url = self.url(&format!("blobs/{digest}"));
        let mut headers = HeaderMap::new();
        if offset > 0 {
            headers.insert(
                header::RANGE,
                header::HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
            );
        }
        let resp = self.send(Method::GET, &url, headers).await?;
        match resp.status() {
            StatusCode::OK => {
                let total = resp.content_length();
                Ok((resp, offset, total))
            }
            StatusCode::PARTIAL_CONTENT if offset > 0 => {
                let cr = resp
                    .headers()
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let (start, total) = parse_content_range(cr).ok_or_else(|| {
                    Error::Http(format!("blob {digest}: bad Content-Range {cr:?}"))
                })?;
                if start != offset {
                    return Err(Error::Http(format!(
                        "blob {digest}: asked for bytes from {offset}, got {cr:?}"
                    )));
                }
                Ok((resp, 0, total))
            }
            _ => Err(check_status(resp, &format!("blob {digest}"))
                .await
                .err()
                .unwrap_or_else(|| Error::Http(format!("blob {digest}: unexpected status")))),
        }
    }
}

/// `bytes START-END/TOTAL` → (START, TOTAL if not `*`).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// An HTTP client error with its whole source chain: the chain carries the
/// useful part (connection refused, TLS error, …).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

pub(crate) async fn check_status(resp: Response, what: &str) -> Result<Response, Error> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = read_bounded(resp, 4096, what).await.unwrap_or_default();
    let detail = String::from_utf8_lossy(&body).trim().to_string();
    Err(match status {
        StatusCode::NOT_FOUND => Error::NotFound(format!("{what} (registry said: {detail})")),
        StatusCode::FORBIDDEN => Error::Auth(format!("{what}: access denied ({detail})")),
        _ => Error::Http(format!("{what}: HTTP {status}: {detail}")),
    })
}

/// Read a whole (small) body, failing past `limit` bytes.
async fn read_bounded(resp: Response, limit: u64, what: &str) -> Result<Bytes, Error> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(Error::Invalid(format!(
            "{what} is larger than {limit} bytes"
        )));
    }
    let mut out = bytes::BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| Error::Http(format!("reading {what}: {}", describe_reqwest(&e))))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Error::Invalid(format!(
                "{what} is larger than {limit} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
}

/// The parameters of a `Bearer` challenge.
pub(crate) struct Bearer<'a>(&'a [(String, String)]);

impl<'a> Bearer<'a> {
    /// The first `Bearer` challenge among parsed ones.
    pub(crate) fn find(parsed: &'a [(String, Vec<(String, String)>)]) -> Option<Bearer<'a>> {
        parsed
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case("bearer"))
            .map(|(_, params)| Bearer(params))
    }

    /// A parameter, by case-insensitive name.
    pub(crate) fn param(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    }

    /// The token endpoint; a challenge from `host` without one is an error.
    pub(crate) fn realm(&self, host: &str) -> Result<String, Error> {
        self.param("realm")
            .ok_or_else(|| Error::Auth(format!("{host}: bearer challenge without realm")))
    }
}

/// Parse one `WWW-Authenticate` challenge: scheme and `key=value` params
/// (values quoted, with `\` escapes, or bare tokens).
pub(crate) fn parse_challenge(h: &str) -> Option<(String, Vec<(String, String)>)> {
    let h = h.trim();
    let (scheme, rest) = match h.split_once(char::is_whitespace) {
        Some((s, r)) => (s, r),
        None => (h, ""),
    };
    if scheme.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.trim().is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.push((key.trim().to_string(), value.trim().to_string()));
    }
    Some((scheme.to_string(), params))
}

/// State of a resumable blob download.
struct Download {
    inner: Arc<Inner>,
    digest: Digest,
    offset: u64,
    total: Option<u64>,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<Bytes>>>,
    skip: u64,
    failures: u32,
    done: bool,
}

impl Download {
    fn into_stream(self) -> ByteStream {
        Box::pin(futures::stream::unfold(self, |mut st| async move {
            loop {
                if st.done {
                    return None;
                }
                if st.body.is_none() {
                    match st.inner.open_blob(&st.digest, st.offset).await {
                        Ok((resp, skip, total)) => {
                            if let (Some(known), Some(t)) = (st.total, total)
                                && known != t
                            {
                                st.done = true;
                                let e = format!("blob {} changed size while resuming", st.digest);
                                return Some((Err(std::io::Error::other(e)), st));
                            }
                            st.total = st.total.or(total);
                            st.skip = skip;
                            st.body = Some(resp.bytes_stream().boxed());
                        }
                        Err(e) => {
                            st.done = true;
                            return Some((Err(std::io::Error::other(e)), st));
                        }
                    }
                }
                let next = st.body.as_mut().expect("body").next().await;
                let cut = match next {
                    Some(Ok(mut chunk)) => {
                        if st.skip > 0 {
                            let n = st.skip.min(chunk.len() as u64);
                            st.skip -= n;
                            chunk = chunk.slice(n as usize..);
                            if chunk.is_empty() {
                                continue;
                            }
                        }
                        st.offset += chunk.len() as u64;
                        st.failures = 0;
                        return Some((Ok(chunk), st));
                    }
                    Some(Err(e)) => describe_reqwest(&e),
                    None => match st.total {
                        Some(t) if st.offset < t => {
                            format!("connection closed after {} of {t} bytes", st.offset)
                        }
                        _ => return None,
                    },
                };
                st.body = None;
                st.failures += 1;
                if st.failures >= st.inner.retry.attempts {
                    st.done = true;
                    let e = format!(
                        "blob {}: transfer failed at byte {} after {} attempts: {cut}",
                        st.digest, st.offset, st.failures
                    );
                    return Some((Err(std::io::Error::other(e)), st));
                }
                tracing::warn!(digest = %st.digest, offset = st.offset, error = %cut, "blob transfer cut; resuming");
                tokio::time::sleep(st.inner.retry.delay(st.failures)).await;
            }
        }))
    }
}

#[async_trait]
impl ImageSource for RemoteSource {
    fn describe(&self) -> String {
        let i = &self.inner.image;
        match i.reference() {
            Reference::Digest(d) => format!("docker://{}/{}@{d}", i.host, i.name),
            Reference::Tag(t) => format!("docker://{}/{}:{t}", i.host, i.name),
        }
    }

    async fn root(&self) -> Result<FetchedManifest, Error> {
        self.inner.get_manifest(&self.inner.image.reference()).await
    }

    async fn manifest(&self, digest: &Digest) -> Result<FetchedManifest, Error> {
        self.inner
            .get_manifest(&Reference::Digest(digest.clone()))
            .await
    }

    async fn blob(&self, digest: &Digest) -> Result<BlobStream, Error> {
        let (resp, skip, total) = self.inner.open_blob(digest, 0).await?;
        let dl = Download {
            inner: self.inner.clone(),
            digest: digest.clone(),
            offset: 0,
            total,
            body: Some(resp.bytes_stream().boxed()),
            skip,
            failures: 0,
            done: false,
        };
        Ok(BlobStream::verified(
            dl.into_stream(),
            digest.clone(),
            total,
        ))
    }

    async fn blob_from(&self, digest: &Digest, offset: u64) -> Result<BlobStream, Error> {
        let (resp, skip, total) = self.inner.open_blob(digest, offset).await?;
        let dl = Download {
            inner: self.inner.clone(),
            digest: digest.clone(),
            offset,
            total,
            body: Some(resp.bytes_stream().boxed()),
            skip,
            failures: 0,
            done: false,
        };
        Ok(BlobStream::unverified(
            dl.into_stream(),
            total.map(|t| t.saturating_sub(offset)),
        ))
    }

    async fn tags(&self) -> Result<Vec<String>, Error> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut url = self.inner.url("tags/list?n=1000");
        let mut tags = Vec::new();
        for _ in 0..10_000 {
            let resp = self.inner.send(Method::GET, &url, HeaderMap::new()).await?;
            let resp = check_status(resp, &format!("tags of {}", self.inner.image.name)).await?;
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let body = read_bounded(resp, 16 << 20, "tag list").await?;
            let list: TagList = serde_json::from_slice(&body)
                .map_err(|e| Error::Invalid(format!("tag list: {e}")))?;
            tags.extend(list.tags.unwrap_or_default());
            match next {
                Some(n) if n.starts_with("http://") || n.starts_with("https://") => url = n,
                Some(n) => url = format!("{}{}", self.inner.base, n),
                None => return Ok(tags),
            }
        }
        Err(Error::Invalid("tag list pagination does not end".into()))
    }

    async fn tagged(&self, tag: &str) -> Result<FetchedManifest, Error> {
        let tag = oci::Tag::parse(tag).map_err(|e| Error::Spec(e.to_string()))?;
        self.inner.get_manifest(&Reference::Tag(tag)).await
    }
}

/// The target of `Link: <URL>; rel="next"`.
fn next_link(v: &str) -> Option<String> {
    v.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            url.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

/// Whether a request failed in a TLS handshake in a way a retry cannot
/// change: the server speaks plain HTTP, or its certificate is not trusted.
fn tls_failure_is_permanent(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("invalidcontenttype")
            || text.contains("corrupt message")
            || text.contains("invalid peer certificate")
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(s, "Bearer");
        assert_eq!(
            p,
            vec![
                (
                    "realm".to_string(),
                    "https://auth.example/token".to_string()
                ),
                ("service".to_string(), "reg".to_string()),
                ("scope".to_string(), "repository:a/b:pull,push".to_string()),
            ]
        );
        let (s, p) = parse_challenge(r#"Basic realm="x \"y\"""#).unwrap();
        assert_eq!((s.as_str(), p[0].1.as_str()), ("Basic", "x \"y\""));
        assert_eq!(parse_challenge("Basic").unwrap().1, vec![]);
    }

    #[test]
    fn parses_ranges_and_links() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(
            next_link(r#"</v2/a/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/a/tags/list?n=2&last=b")
        );
        let p = RetryPolicy::default();
        assert!(p.delay(1) < p.delay(2) && p.delay(30) == p.max_delay);
    }
}
