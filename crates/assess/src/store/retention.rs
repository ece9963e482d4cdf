//! Pruning of the tables that would otherwise grow for ever: the webhook
//! delivery log (whole payloads), notification dedup, tag history and
//! the layer cache. What goes is the backend's [`PruneBefore`].

use super::{Store, wait};
use anyhow::Result;
pub use storage::assess::{PruneBefore, Pruned};

impl Store {
    /// Delete what [`PruneBefore`] lets go, in one transaction.
    pub fn prune(&self, before: &PruneBefore) -> Result<Pruned> {
        wait(self.state.prune(before))
    }
}
