//! The queue and the images it knows: intake, claiming, status, shape,
//! tag history and pull times.

use super::{IMAGE_COLS, ImageRow, Store, image_row, status};
use crate::vex::Pusher;
use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use std::collections::HashSet;

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
        self.enqueue_row(
            repo, digest, media_type, parent, platform, now, pushed, None,
        )
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
        self.enqueue_row(repo, digest, media_type, None, None, now, true, pusher)
    }

    /// Who pushed `digest`, as recorded by [`Store::enqueue_pushed_by`]
    /// (`None`: nobody known, or forgotten). A stored value this build
    /// cannot read counts as unknown: it is then trusted by no one.
    pub fn pusher(&self, digest: &str) -> Result<Option<Pusher>> {
        let stored: Option<String> = self
            .c()
            .query_row(
                "SELECT pusher FROM images WHERE digest = ?1",
                [digest],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
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
        // No verdict reads the pusher once the job is done.
        self.c_quiet().execute(
            "UPDATE images SET pusher = NULL WHERE digest = ?1 AND pusher IS NOT NULL",
            [digest],
        )?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn enqueue_row(
        &self,
        repo: &str,
        digest: &str,
        media_type: &str,
        parent: Option<&str>,
        platform: Option<&str>,
        now: i64,
        pushed: bool,
        pusher: Option<String>,
    ) -> Result<bool> {
        let c = self.c();
        let pushed_at = pushed.then_some(now);
        // A failed job is retried. So is a finished artifact pushed again
        // by someone known: a VEX referrer is judged by its pushers, and
        // this one may be trusted where the first was not (a cheap job:
        // one manifest, one small blob).
        let again = "images.status = 'failed' OR (excluded.pusher IS NOT NULL \
                     AND images.kind = 'artifact' AND images.status = 'unsupported')";
        let changed = c.execute(
            &format!(
                "INSERT INTO images(digest, repo, media_type, parent, platform, status, queued_at, last_pushed_at, pusher)
             VALUES (?1, ?2, ?3, ?4, ?5, 'queued', ?6, ?7, ?8)
             ON CONFLICT(digest) DO UPDATE SET
               last_pushed_at = COALESCE(excluded.last_pushed_at, images.last_pushed_at),
               pusher = COALESCE(excluded.pusher, images.pusher),
               parent = COALESCE(images.parent, excluded.parent),
               platform = COALESCE(images.platform, excluded.platform),
               status = CASE WHEN {again} THEN 'queued' ELSE images.status END,
               attempts = CASE WHEN {again} THEN 0 ELSE images.attempts END,
               error = CASE WHEN {again} THEN NULL ELSE images.error END,
               queued_at = CASE WHEN {again} THEN excluded.queued_at ELSE images.queued_at END"
            ),
            params![digest, repo, media_type, parent, platform, now, pushed_at, pusher],
        )?;
        let _ = changed;
        c.execute(
            "INSERT OR IGNORE INTO image_repos(repo, digest) VALUES (?1, ?2)",
            params![repo, digest],
        )?;
        let st: String = c.query_row(
            "SELECT status FROM images WHERE digest = ?1",
            [digest],
            |r| r.get(0),
        )?;
        Ok(st == status::QUEUED)
    }

    pub fn record_tag(&self, repo: &str, tag: &str, digest: &str, at: i64) -> Result<()> {
        // History for diffs; the dashboard reads tags from the registry.
        let c = self.c_quiet();
        let last: Option<String> = c
            .query_row(
                "SELECT digest FROM tag_history WHERE repo = ?1 AND tag = ?2 ORDER BY id DESC LIMIT 1",
                params![repo, tag],
                |r| r.get(0),
            )
            .optional()?;
        if last.as_deref() != Some(digest) {
            c.execute(
                "INSERT INTO tag_history(repo, tag, digest, at) VALUES (?1, ?2, ?3, ?4)",
                params![repo, tag, digest, at],
            )?;
        }
        Ok(())
    }

    /// For each (repo, tag) that pointed at `digest`, the digest it pointed
    /// at just before.
    pub fn previous_tag_digests(&self, digest: &str) -> Result<Vec<(String, String, String)>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT h.repo, h.tag, (SELECT p.digest FROM tag_history p
                 WHERE p.repo = h.repo AND p.tag = h.tag AND p.id < h.id AND p.digest != h.digest
                 ORDER BY p.id DESC LIMIT 1)
             FROM tag_history h WHERE h.digest = ?1 AND h.id = (SELECT MAX(id) FROM tag_history x WHERE x.repo = h.repo AND x.tag = h.tag AND x.digest = h.digest)",
        )?;
        let rows = st
            .query_map([digest], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                ))
            })?
            .filter_map(|r| r.ok())
            .filter_map(|(a, b, p)| p.map(|p| (a, b, p)))
            .collect();
        Ok(rows)
    }

    /// Claim the oldest queued job, marking it `cataloging`.
    pub fn claim(&self, now: i64) -> Result<Option<ImageRow>> {
        let c = self.c();
        let sql = format!(
            "UPDATE images SET status = 'cataloging', started_at = ?1, attempts = attempts + 1
             WHERE digest = (SELECT digest FROM images WHERE status = 'queued' ORDER BY queued_at, rowid LIMIT 1)
             RETURNING {IMAGE_COLS}"
        );
        Ok(c.query_row(&sql, [now], image_row).optional()?)
    }

    /// Fail every queued job already claimed `max_attempts` times: each
    /// claim that never finished means the process stopped while it ran
    /// (a layer that crashes it would crash it again, for ever). Returns
    /// the digests given up, with the reason recorded.
    pub fn give_up_exhausted(&self, max_attempts: u32, now: i64) -> Result<Vec<(String, String)>> {
        let c = self.c();
        let mut st = c.prepare(
            "UPDATE images SET status = 'failed', finished_at = ?2,
               error = 'gave up after ' || attempts || ' attempts: '
                       || COALESCE(error, 'the process stopped while assessing')
             WHERE status = 'queued' AND attempts >= ?1
             RETURNING digest, error",
        )?;
        let v = st
            .query_map(params![max_attempts.max(1), now], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn set_status(&self, digest: &str, st: &str, error: Option<&str>, now: i64) -> Result<()> {
        let finished =
            matches!(st, status::DONE | status::FAILED | status::UNSUPPORTED).then_some(now);
        self.c().execute(
            "UPDATE images SET status = ?2, error = ?3, finished_at = COALESCE(?4, finished_at) WHERE digest = ?1",
            params![digest, st, error, finished],
        )?;
        Ok(())
    }

    pub fn set_shape(
        &self,
        digest: &str,
        kind: &str,
        layers: &[String],
        children: &[String],
    ) -> Result<()> {
        self.c().execute(
            "UPDATE images SET kind = ?2, layers = ?3, children = ?4 WHERE digest = ?1",
            params![
                digest,
                kind,
                serde_json::to_string(layers)?,
                serde_json::to_string(children)?
            ],
        )?;
        Ok(())
    }

    /// Record an image's platform unless one is known (an index entry's
    /// platform, given at enqueue, wins over the image's own config).
    pub fn set_platform_if_unknown(&self, digest: &str, platform: &str) -> Result<()> {
        self.c().execute(
            "UPDATE images SET platform = ?2 WHERE digest = ?1 AND platform IS NULL",
            params![digest, platform],
        )?;
        Ok(())
    }

    /// After a crash: jobs that were in progress go back to the queue
    /// (those claimed too often are then given up by the worker, see
    /// [`Store::give_up_exhausted`]).
    pub fn requeue_interrupted(&self) -> Result<usize> {
        Ok(self.c().execute(
            "UPDATE images SET status = 'queued' WHERE status IN ('cataloging', 'matching')",
            [],
        )?)
    }

    pub fn known_digests(&self) -> Result<HashSet<String>> {
        let c = self.c();
        let mut st = c.prepare("SELECT digest FROM images")?;
        let v = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn image(&self, digest: &str) -> Result<Option<ImageRow>> {
        let c = self.c();
        Ok(c.query_row(
            &format!("SELECT {IMAGE_COLS} FROM images WHERE digest = ?1"),
            [digest],
            image_row,
        )
        .optional()?)
    }

    /// Images matching a WHERE clause fragment (internal use only).
    fn images_where(&self, clause: &str, p: &[&dyn rusqlite::ToSql]) -> Result<Vec<ImageRow>> {
        let c = self.c();
        let mut st = c.prepare(&format!("SELECT {IMAGE_COLS} FROM images {clause}"))?;
        let v = st
            .query_map(p, image_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    pub fn children(&self, index: &str) -> Result<Vec<ImageRow>> {
        self.images_where("WHERE parent = ?1 ORDER BY platform", &[&index])
    }

    pub fn all_images(&self) -> Result<Vec<ImageRow>> {
        self.images_where("ORDER BY queued_at DESC", &[])
    }

    pub fn images_in_repo(&self, repo: &str) -> Result<Vec<ImageRow>> {
        self.images_where(
            "WHERE digest IN (SELECT digest FROM image_repos WHERE repo = ?1) ORDER BY queued_at DESC",
            &[&repo],
        )
    }

    pub fn repos_of(&self, digest: &str) -> Result<Vec<String>> {
        let c = self.c();
        let mut st = c.prepare("SELECT repo FROM image_repos WHERE digest = ?1 ORDER BY repo")?;
        let v = st
            .query_map([digest], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(v)
    }

    /// Jobs not finished, oldest first, and counts per status.
    #[allow(clippy::type_complexity)]
    pub fn queue(&self) -> Result<(Vec<ImageRow>, Vec<(String, i64)>)> {
        let pending = self.images_where(
            "WHERE status IN ('queued', 'cataloging', 'matching') ORDER BY queued_at LIMIT 1000",
            &[],
        )?;
        let c = self.c();
        let mut st =
            c.prepare("SELECT status, COUNT(*) FROM images GROUP BY status ORDER BY status")?;
        let counts = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok((pending, counts))
    }

    /// A manifest was deleted from `repo`; forget it when no repository
    /// holds it any more (usage is kept).
    pub fn forget(&self, repo: &str, digest: &str) -> Result<()> {
        let mut c = self.c();
        let tx = c.transaction()?;
        tx.execute(
            "DELETE FROM image_repos WHERE repo = ?1 AND digest = ?2",
            params![repo, digest],
        )?;
        let left: i64 = tx.query_row(
            "SELECT COUNT(*) FROM image_repos WHERE digest = ?1",
            [digest],
            |r| r.get(0),
        )?;
        if left == 0 {
            for t in ["images", "results", "inventories"] {
                tx.execute(&format!("DELETE FROM {t} WHERE digest = ?1"), [digest])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Record pulls (assessor time). Pulling an index counts for its children.
    pub fn record_pulls(&self, pulls: &[(String, i64)]) -> Result<()> {
        // Quiet: a busy registry records pulls all the time, and the
        // dashboard lays pull times over its judging (`pulled_times`).
        let mut c = self.c_quiet();
        let tx = c.transaction()?;
        for (digest, at) in pulls {
            tx.execute(
                "UPDATE images SET last_pulled_at = MAX(COALESCE(last_pulled_at, 0), ?2) WHERE digest = ?1 OR parent = ?1",
                params![digest, at],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Every image's last pull time (assessor time), for the dashboard
    /// to lay over a judging that pulls do not redo.
    pub fn pulled_times(&self) -> Result<std::collections::HashMap<String, i64>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT digest, last_pulled_at FROM images WHERE last_pulled_at IS NOT NULL",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Drop every cached layer inventory (benchmarks measure cold catalogs).
    pub fn clear_layer_cache(&self) -> Result<()> {
        self.c().execute("DELETE FROM layer_cache", [])?;
        Ok(())
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

/// Databases from before the pusher was stored with its job: the column
/// is added in place (existing rows: pusher unknown).
pub(super) fn migrate(conn: &rusqlite::Connection) -> Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info('images') WHERE name = 'pusher'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE images ADD COLUMN pusher TEXT;")?;
    }
    Ok(())
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
