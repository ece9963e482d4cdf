-- Vulnerability database builds published for every node: the build
-- directory packed as a tar stream, stored as a blob under `digest`.
-- Versions sort by their build time (`<UTC stamp>Z-<hash>`), bytewise.
CREATE TABLE vulndb_releases (
    version TEXT COLLATE "C" PRIMARY KEY,
    digest TEXT NOT NULL,
    size BIGINT NOT NULL,
    built_at TEXT NOT NULL,
    published_at BIGINT NOT NULL
);
