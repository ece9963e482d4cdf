//! A small client for `/api/v1/imports`, used by `drydock import`.

use crate::{ImportRequest, JobStatus};
use std::time::Duration;

/// Talks to a drydock server.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// Sent as HTTP Basic on every call.
    creds: Option<transport::Credentials>,
}

/// Errors from the server or the connection.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the drydock server at {0}: {1}")]
    Connect(String, String),
    #[error("the server refused the import: {0}")]
    Refused(String),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl Client {
    /// `server` is the base URL, e.g. `http://127.0.0.1:5000`.
    pub fn new(server: &str) -> Result<Client, ClientError> {
        let base = server.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Protocol(format!(
                "--server must be an http:// or https:// URL, not {server:?}"
            )));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Client {
            http,
            base,
            creds: None,
        })
    }

    /// Authenticate every call with these credentials (HTTP Basic).
    pub fn with_credentials(mut self, creds: Option<transport::Credentials>) -> Client {
        self.creds = creds;
        self
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.creds {
            Some(c) => r.basic_auth(&c.username, Some(&c.password)),
            None => r,
        }
    }

    /// Send a request of the imports API and decode the job it answers.
    async fn job(&self, r: reqwest::RequestBuilder) -> Result<JobStatus, ClientError> {
        let resp = r.send().await.map_err(|e| {
            ClientError::Connect(self.base.clone(), transport::remote::describe_reqwest(&e))
        })?;
        decode(resp).await
    }

    /// Start an import; returns the job as the server accepted it.
    pub async fn submit(&self, req: &ImportRequest) -> Result<JobStatus, ClientError> {
        let url = format!("{}/api/v1/imports", self.base);
        self.job(self.request(reqwest::Method::POST, &url).json(req))
            .await
    }

    /// A job's status.
    pub async fn status(&self, id: uuid::Uuid) -> Result<JobStatus, ClientError> {
        let url = format!("{}/api/v1/imports/{id}", self.base);
        self.job(self.request(reqwest::Method::GET, &url)).await
    }

    /// Ask the server to cancel a job.
    pub async fn cancel(&self, id: uuid::Uuid) -> Result<JobStatus, ClientError> {
        let url = format!("{}/api/v1/imports/{id}", self.base);
        self.job(self.request(reqwest::Method::DELETE, &url)).await
    }

    /// Poll until the job finishes, calling `progress` with each status.
    pub async fn wait(
        &self,
        id: uuid::Uuid,
        every: Duration,
        mut progress: impl FnMut(&JobStatus),
    ) -> Result<JobStatus, ClientError> {
        loop {
            let s = self.status(id).await?;
            progress(&s);
            if s.state.is_finished() {
                return Ok(s);
            }
            tokio::time::sleep(every).await;
        }
    }
}

async fn decode(resp: reqwest::Response) -> Result<JobStatus, ClientError> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Protocol(transport::remote::describe_reqwest(&e)))?;
    if status.is_success() {
        return serde_json::from_slice(&body).map_err(|e| {
            ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&body)))
        });
    }
    let msg = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
        .unwrap_or_else(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
    if status.is_client_error() {
        Err(ClientError::Refused(msg))
    } else {
        Err(ClientError::Protocol(msg))
    }
}
