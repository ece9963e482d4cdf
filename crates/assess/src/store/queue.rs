//! The queue and the images it knows: intake, claiming, status, shape,
//! tag history and pull times.

use super::{ImageRow, Store, wait};
use crate::vex::Pusher;
use anyhow::Result;
use std::collections::{HashMap, HashSet};
use storage::assess::Enqueue;

fn rows(v: Vec<storage::assess::ImageRow>) -> Vec<ImageRow> {
    v.into_iter().map(ImageRow::from).collect()
}

impl Store {
    // ---- queue ----

    /// Enqueue `digest` from `repo`. Deduplicates by digest: a digest that
    /// is queued or in progress stays as it is; a failed one is retried; a
    /// done or unsupported one is not assessed again (its content cannot
    /// have changed). Returns whether a job is now waiting that was not.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue(
        &self,
        repo: &str,
        digest: &str,
        media_type: &str,
        parent: Option<&str>,
        platform: Option<&str>,
        now: i64,
        pushed: bool,
    ) -> Result<bool> {
        wait(self.state.enqueue(Enqueue {
            repo: repo.into(),
            digest: digest.into(),
            media_type: media_type.into(),
            parent: parent.map(str::to_owned),
            platform: platform.map(str::to_owned),
            now,
            pushed,
            pusher: None,
        }))
    }

    /// [`Store::enqueue`] a pushed manifest and record who pushed it, in
    /// the same statement: a job never exists without its pusher, so a
    /// VEX referrer queued before a restart is judged by who pushed it.
    /// A later push of the same digest by someone known replaces the
    /// pusher (and runs a finished artifact's job again); one by nobody
    /// known (`None`) keeps it.
    pub fn enqueue_pushed_by(
        &self,
        repo: &str,
        digest: &str,
        media_type: &str,
        now: i64,
        pusher: Option<&Pusher>,
    ) -> Result<bool> {
        let pusher = pusher.map(encode_pusher).transpose()?;
        wait(self.state.enqueue(Enqueue {
            repo: repo.into(),
            digest: digest.into(),
            media_type: media_type.into(),
            parent: None,
            platform: None,
            now,
            pushed: true,
            pusher,
        }))
    }

    /// Who pushed `digest`, as recorded by [`Store::enqueue_pushed_by`]
    /// (`None`: nobody known, or forgotten). A stored value this build
    /// cannot read counts as unknown: it is then trusted by no one.
    pub fn pusher(&self, digest: &str) -> Result<Option<Pusher>> {
        let stored = wait(self.state.pusher(digest))?;
        Ok(stored.and_then(|s| match decode_pusher(&s) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(digest, error = %e, "unreadable stored pusher");
                None
            }
        }))
    }

    /// Forget who pushed `digest` (its job succeeded).
    pub fn forget_pusher(&self, digest: &str) -> Result<()> {
        wait(self.state.forget_pusher(digest))
    }

    pub fn record_tag(&self, repo: &str, tag: &str, digest: &str, at: i64) -> Result<()> {
        wait(self.state.record_tag(repo, tag, digest, at))
    }

    /// For each (repo, tag) that pointed at `digest`, the digest it pointed
    /// at just before.
    pub fn previous_tag_digests(&self, digest: &str) -> Result<Vec<(String, String, String)>> {
        wait(self.state.previous_tag_digests(digest))
    }

    /// Claim the oldest queued job, marking it `cataloging`.
    pub fn claim(&self, now: i64) -> Result<Option<ImageRow>> {
        Ok(wait(self.state.claim(now))?.map(ImageRow::from))
    }

    /// Fail every queued job already claimed `max_attempts` times: each
    /// claim that never finished means the process stopped while it ran
    /// (a layer that crashes it would crash it again, for ever). Returns
    /// the digests given up, with the reason recorded.
    pub fn give_up_exhausted(&self, max_attempts: u32, now: i64) -> Result<Vec<(String, String)>> {
        wait(self.state.give_up_exhausted(max_attempts, now))
    }

    pub fn set_status(&self, digest: &str, st: &str, error: Option<&str>, now: i64) -> Result<()> {
        wait(self.state.set_status(digest, st, error, now))
    }

    pub fn set_shape(
        &self,
        digest: &str,
        kind: &str,
        layers: &[String],
        children: &[String],
    ) -> Result<()> {
        wait(self.state.set_shape(digest, kind, layers, children))
    }

    /// Record an image's platform unless one is known (an index entry's
    /// platform, given at enqueue, wins over the image's own config).
    pub fn set_platform_if_unknown(&self, digest: &str, platform: &str) -> Result<()> {
        wait(self.state.set_platform_if_unknown(digest, platform))
    }

    /// After a crash: jobs that were in progress go back to the queue
    /// (those claimed too often are then given up by the worker, see
    /// [`Store::give_up_exhausted`]).
    pub fn requeue_interrupted(&self) -> Result<usize> {
        wait(self.state.requeue_interrupted())
    }

    /// This node stops: the jobs it holds go back to the queue for the
    /// other nodes (see [`storage::assess::AssessState::release_claims`]).
    pub fn release_claims(&self) -> Result<usize> {
        wait(self.state.release_claims())
    }

    pub fn known_digests(&self) -> Result<HashSet<String>> {
        wait(self.state.known_digests())
    }

    pub fn image(&self, digest: &str) -> Result<Option<ImageRow>> {
        Ok(wait(self.state.image(digest))?.map(ImageRow::from))
    }

    pub fn children(&self, index: &str) -> Result<Vec<ImageRow>> {
        Ok(rows(wait(self.state.children(index))?))
    }

    pub fn all_images(&self) -> Result<Vec<ImageRow>> {
        Ok(rows(wait(self.state.all_images())?))
    }

    pub fn images_in_repo(&self, repo: &str) -> Result<Vec<ImageRow>> {
        Ok(rows(wait(self.state.images_in_repo(repo))?))
    }

    pub fn repos_of(&self, digest: &str) -> Result<Vec<String>> {
        wait(self.state.repos_of(digest))
    }

    /// Jobs not finished, oldest first, and counts per status.
    #[allow(clippy::type_complexity)]
    pub fn queue(&self) -> Result<(Vec<ImageRow>, Vec<(String, i64)>)> {
        let q = wait(self.state.queue())?;
        Ok((rows(q.pending), q.counts))
    }

    /// A manifest was deleted from `repo`; forget it when no repository
    /// holds it any more (usage is kept).
    pub fn forget(&self, repo: &str, digest: &str) -> Result<()> {
        wait(self.state.forget(repo, digest))
    }

    /// Record pulls (assessor time). Pulling an index counts for its children.
    pub fn record_pulls(&self, pulls: &[(String, i64)]) -> Result<()> {
        wait(self.state.record_pulls(pulls))
    }

    /// Every image's last pull time (assessor time), for the dashboard
    /// to lay over a judging that pulls do not redo.
    pub fn pulled_times(&self) -> Result<HashMap<String, i64>> {
        wait(self.state.pulled_times())
    }

    /// Drop every cached layer inventory (benchmarks measure cold catalogs).
    pub fn clear_layer_cache(&self) -> Result<()> {
        wait(self.state.clear_layer_cache())
    }
}

/// A pusher as stored in `images.pusher` (JSON): the kind, the name, and
/// for a user the groups access control knew at the push, which is what
/// `assess.vex.trusted` judged before the pusher was stored.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum StoredPusher {
    Unrestricted,
    Anonymous,
    User { name: String, groups: Vec<String> },
    Robot { name: String },
}

fn encode_pusher(p: &Pusher) -> Result<String> {
    let s = match p {
        Pusher::Unrestricted => StoredPusher::Unrestricted,
        Pusher::Anonymous => StoredPusher::Anonymous,
        Pusher::User { name, groups } => StoredPusher::User {
            name: name.clone(),
            groups: groups.clone(),
        },
        Pusher::Robot { name } => StoredPusher::Robot { name: name.clone() },
    };
    Ok(serde_json::to_string(&s)?)
}

fn decode_pusher(s: &str) -> Result<Pusher> {
    Ok(match serde_json::from_str(s)? {
        StoredPusher::Unrestricted => Pusher::Unrestricted,
        StoredPusher::Anonymous => Pusher::Anonymous,
        StoredPusher::User { name, groups } => Pusher::User { name, groups },
        StoredPusher::Robot { name } => Pusher::Robot { name },
    })
}

#[cfg(test)]
mod pusher_tests {
    use super::*;

    #[test]
    fn every_kind_of_pusher_reads_back_as_stored() {
        for p in [
            Pusher::Unrestricted,
            Pusher::Anonymous,
            Pusher::User {
                name: "alice".into(),
                groups: vec!["security".into(), "dev".into()],
            },
            Pusher::Robot {
                name: "release-1".into(),
            },
        ] {
            assert_eq!(decode_pusher(&encode_pusher(&p).unwrap()).unwrap(), p);
        }
        assert!(decode_pusher(r#"{"kind":"wizard","name":"x"}"#).is_err());
    }
}
