//! Patch jobs (`/api/v1/patches`), kept so that they outlive the process.
//! The job itself is the patch service's JSON; the backend only keys it
//! by id and state, so a restart can find the jobs an earlier process
//! left running.

use super::{Store, wait};
use anyhow::Result;
use storage::assess::PatchJobRow;

impl Store {
    // ---- patch jobs ----

    /// Insert or replace a job's JSON.
    pub fn save_patch_job(&self, id: &str, repo: &str, state: &str, data: &str) -> Result<()> {
        wait(self.state.save_patch_job(&PatchJobRow {
            id: id.into(),
            repo: repo.into(),
            state: state.into(),
            data: data.into(),
            updated_at: self.now_ms(),
        }))
    }

    /// A job's JSON.
    pub fn patch_job(&self, id: &str) -> Result<Option<String>> {
        wait(self.state.patch_job(id))
    }

    /// The JSON of every job in `state`, oldest first.
    pub fn patch_jobs_in_state(&self, state: &str) -> Result<Vec<String>> {
        wait(self.state.patch_jobs_in_state(state))
    }
}
