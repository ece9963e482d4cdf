-- Vulnerability database builds published for every node: the build
-- directory packed as a tar stream, stored as a blob under `digest`.
-- Versions sort by their build time (`<UTC stamp>Z-<hash>`).
CREATE TABLE vulndb_releases (
    version TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    built_at TEXT NOT NULL,
    published_at INTEGER NOT NULL
) WITHOUT ROWID;
