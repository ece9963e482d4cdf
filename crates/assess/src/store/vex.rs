//! VEX documents (as received, with where they came from) and the SBOM
//! attached to each image (so an unchanged re-assessment attaches none).

use super::Store;
use anyhow::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
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

/// The SBOM artifact attached to an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomRow {
    pub subject: String,
    pub repo: String,
    pub digest: String,
    pub catalog_version: u32,
}

impl Store {
    /// Insert or replace a document; returns the one it replaced, if any.
    pub fn put_vex(&self, row: &VexRow) -> Result<Option<VexRow>> {
        let mut c = self.c();
        let tx = c.transaction()?;
        let old = tx
            .query_row(
                "SELECT key, doc_id, subject, source, data, created_at, recorded_by, not_applied FROM vex WHERE key = ?1",
                [&row.key],
                vex_row,
            )
            .optional()?;
        tx.execute(
            "INSERT OR REPLACE INTO vex(key, doc_id, subject, source, data, created_at, recorded_by, not_applied) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![row.key, row.doc_id, row.subject, row.source, row.data.to_string(), row.created_at, row.recorded_by, row.not_applied],
        )?;
        tx.commit()?;
        Ok(old)
    }

    /// The stored document with `key`, if any.
    pub fn vex_document(&self, key: &str) -> Result<Option<VexRow>> {
        Ok(self
            .c()
            .query_row(
                "SELECT key, doc_id, subject, source, data, created_at, recorded_by, not_applied FROM vex WHERE key = ?1",
                [key],
                vex_row,
            )
            .optional()?)
    }

    pub fn vex_documents(&self) -> Result<Vec<VexRow>> {
        let c = self.c();
        let mut st = c.prepare(
            "SELECT key, doc_id, subject, source, data, created_at, recorded_by, not_applied FROM vex ORDER BY created_at, key",
        )?;
        let rows = st
            .query_map([], vex_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn delete_vex(&self, key: &str) -> Result<Option<VexRow>> {
        let mut c = self.c();
        let tx = c.transaction()?;
        let old = tx
            .query_row(
                "SELECT key, doc_id, subject, source, data, created_at, recorded_by, not_applied FROM vex WHERE key = ?1",
                [key],
                vex_row,
            )
            .optional()?;
        tx.execute("DELETE FROM vex WHERE key = ?1", [key])?;
        tx.commit()?;
        Ok(old)
    }

    pub fn sbom(&self, subject: &str) -> Result<Option<SbomRow>> {
        Ok(self
            .c()
            .query_row(
                "SELECT subject, repo, digest, catalog_version FROM sboms WHERE subject = ?1",
                [subject],
                |r| {
                    Ok(SbomRow {
                        subject: r.get(0)?,
                        repo: r.get(1)?,
                        digest: r.get(2)?,
                        catalog_version: r.get(3)?,
                    })
                },
            )
            .optional()?)
    }

    /// Digests of every SBOM artifact drydock attached.
    pub fn attached_sboms(&self) -> Result<std::collections::HashSet<String>> {
        let c = self.c();
        let mut st = c.prepare("SELECT digest FROM sboms")?;
        let rows = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(rows)
    }

    pub fn put_sbom(&self, row: &SbomRow, at: i64) -> Result<()> {
        self.c().execute(
            "INSERT OR REPLACE INTO sboms(subject, repo, digest, catalog_version, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![row.subject, row.repo, row.digest, row.catalog_version, at],
        )?;
        Ok(())
    }
}

fn vex_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VexRow> {
    let data: String = r.get(4)?;
    Ok(VexRow {
        key: r.get(0)?,
        doc_id: r.get(1)?,
        subject: r.get(2)?,
        source: r.get(3)?,
        data: serde_json::from_str(&data).unwrap_or(serde_json::Value::Null),
        created_at: r.get(5)?,
        recorded_by: r.get(6)?,
        not_applied: r.get(7)?,
    })
}

/// Databases from before drydock recorded who gave it a document.
pub(super) fn migrate(conn: &rusqlite::Connection) -> Result<()> {
    let has = conn
        .prepare("SELECT 1 FROM pragma_table_info('vex') WHERE name = 'recorded_by'")?
        .exists([])?;
    if !has {
        conn.execute_batch(
            "ALTER TABLE vex ADD COLUMN recorded_by TEXT; ALTER TABLE vex ADD COLUMN not_applied TEXT;",
        )?;
    }
    Ok(())
}
