//! VEX documents (as received, with where they came from) and the SBOM
//! attached to each image (so an unchanged re-assessment attaches none).

use super::{Store, wait};
use anyhow::Result;
use serde::Serialize;
pub use storage::assess::SbomRow;
use utoipa::ToSchema;

/// A stored VEX document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VexRow {
    /// `api:<document id>` or `referrer:<artifact digest>`.
    pub key: String,
    /// The document's own id.
    pub doc_id: String,
    /// The image a referrer document is attached to.
    pub subject: Option<String>,
    /// Who sent it: the API caller, or `referrer in <repository>`.
    pub source: String,
    /// The identity that pushed the referrer or called the API, as access
    /// control knew it (see [`crate::vex::VexNote::recorded_by`]).
    pub recorded_by: Option<String>,
    /// Why the document is stored but not applied (its pusher is not in
    /// `assess.vex.trusted`); absent when it is applied.
    pub not_applied: Option<String>,
    /// The document as received (JSON).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created_at: i64,
}

impl From<storage::assess::VexRow> for VexRow {
    fn from(r: storage::assess::VexRow) -> Self {
        VexRow {
            key: r.key,
            doc_id: r.doc_id,
            subject: r.subject,
            source: r.source,
            recorded_by: r.recorded_by,
            not_applied: r.not_applied,
            data: r.data,
            created_at: r.created_at,
        }
    }
}

impl From<&VexRow> for storage::assess::VexRow {
    fn from(r: &VexRow) -> Self {
        storage::assess::VexRow {
            key: r.key.clone(),
            doc_id: r.doc_id.clone(),
            subject: r.subject.clone(),
            source: r.source.clone(),
            recorded_by: r.recorded_by.clone(),
            not_applied: r.not_applied.clone(),
            data: r.data.clone(),
            created_at: r.created_at,
        }
    }
}

impl Store {
    /// Insert or replace a document; returns the one it replaced, if any.
    pub fn put_vex(&self, row: &VexRow) -> Result<Option<VexRow>> {
        Ok(wait(self.state.put_vex(&row.into()))?.map(VexRow::from))
    }

    /// The stored document with `key`, if any.
    pub fn vex_document(&self, key: &str) -> Result<Option<VexRow>> {
        Ok(wait(self.state.vex_document(key))?.map(VexRow::from))
    }

    pub fn vex_documents(&self) -> Result<Vec<VexRow>> {
        Ok(wait(self.state.vex_documents())?
            .into_iter()
            .map(VexRow::from)
            .collect())
    }

    pub fn delete_vex(&self, key: &str) -> Result<Option<VexRow>> {
        Ok(wait(self.state.delete_vex(key))?.map(VexRow::from))
    }

    pub fn sbom(&self, subject: &str) -> Result<Option<SbomRow>> {
        wait(self.state.sbom(subject))
    }

    /// Digests of every SBOM artifact drydock attached.
    pub fn attached_sboms(&self) -> Result<std::collections::HashSet<String>> {
        wait(self.state.attached_sboms())
    }

    pub fn put_sbom(&self, row: &SbomRow, at: i64) -> Result<()> {
        wait(self.state.put_sbom(row, at))
    }
}
