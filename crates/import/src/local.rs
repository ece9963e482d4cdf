//! `drydock import` of a local source (`oci:DIR[:TAG]`,
//! `docker-archive:FILE[:…]`): the client reads the layout or archive
//! where it runs and pushes it over the registry API (`/v2/`), so the
//! command works against a remote server and never asks a server to read
//! its own files.
//!
//! The same planning and copying as a server's import job (platform
//! filter, `--all-tags`, blobs the repository has are skipped, children
//! before tags), with a [`transport::push::Pusher`] as the destination;
//! progress is a [`JobStatus`] as for a server job.

use crate::copy::{self, PushSink};
use crate::job::Job;
use crate::{ImportRequest, JobStatus, Plan, RequestError, parse_target};
use std::sync::Arc;
use std::time::Duration;
use transport::{Credentials, SourceSpec};

/// Blobs pushed at once.
const BLOB_CONCURRENCY: usize = 3;

/// A push of a local source in progress.
pub struct LocalPush {
    job: Arc<Job>,
    task: tokio::task::JoinHandle<()>,
}

impl LocalPush {
    /// Check `req` (a local source; `target` in the registry at `server`)
    /// and start pushing. `creds` are for the registry. Paths are read
    /// here, relative ones against the current directory.
    pub fn start(
        req: &ImportRequest,
        server: &str,
        creds: Option<Credentials>,
    ) -> Result<LocalPush, RequestError> {
        let bad = RequestError::Invalid;
        let spec = SourceSpec::parse(req.source.trim()).map_err(|e| bad(e.to_string()))?;
        if matches!(spec, SourceSpec::Registry { .. }) {
            return Err(bad(format!(
                "{} is not a local source (oci:DIR or docker-archive:FILE)",
                req.source.trim()
            )));
        }
        if req.creds.is_some() {
            return Err(bad("--creds only applies to docker:// sources".into()));
        }
        let (repo, tag, platforms) = parse_target(req)?;
        let ca_pem = transport::remote::ca_pem_from_env().map_err(|e| bad(e.to_string()))?;
        let pusher = transport::push::Pusher::new(server, repo.clone(), creds, ca_pem)
            .map_err(|e| bad(e.to_string()))?;
        let plan = Plan {
            spec,
            repo,
            tag,
            platforms,
            all_tags: req.all_tags,
            ca_pem: None,
            outbound: Default::default(),
        };
        let job = Arc::new(Job::new(&plan, req));
        let task = tokio::spawn({
            let job = job.clone();
            async move {
                job.start();
                let sink = PushSink { pusher };
                match copy::run(&sink, BLOB_CONCURRENCY, &plan, &job).await {
                    Ok(()) => job.succeed(),
                    Err(copy::Stopped::Cancelled) => job.mark_cancelled(),
                    Err(copy::Stopped::Failed(e)) => job.fail(e.to_string()),
                }
            }
        });
        Ok(LocalPush { job, task })
    }

    /// Progress so far.
    pub fn status(&self) -> JobStatus {
        self.job.status()
    }

    /// Stop before any tag is written; false once tagging has begun.
    pub fn cancel(&self) -> bool {
        self.job.request_cancel()
    }

    /// Wait for the end, calling `progress` every `every`.
    pub async fn wait(
        &mut self,
        every: Duration,
        mut progress: impl FnMut(&JobStatus),
    ) -> JobStatus {
        loop {
            let s = self.job.status();
            progress(&s);
            if s.state.is_finished() {
                return s;
            }
            if self.task.is_finished() {
                // The task ended without recording an outcome (a panic).
                self.job.fail("the push stopped unexpectedly".into());
                continue;
            }
            tokio::time::sleep(every).await;
        }
    }
}
