//! Building the patch layer: one gzip tar written as a stream to a
//! temporary file, hashed twice on the way (uncompressed: the diff_id;
//! compressed: the blob digest).

use crate::control::{Stanza, parse_stanzas};
use crate::deb::{self, Control};
use crate::plan::Upgrade;
use crate::rootfs::{INFO, Kind, RootFs, STATUS, clean};
use anyhow::{Context, Result};
use md5::Md5;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{self, Read, Write};
use std::path::PathBuf;

/// A package ready to go into the layer.
pub struct Prepared {
    pub upgrade: Upgrade,
    pub deb: PathBuf,
    pub control: Control,
}

/// The written layer.
pub struct Built {
    pub file: tempfile::NamedTempFile,
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
}

struct Hashing<W> {
    inner: W,
    hash: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

struct Md5Reader<R> {
    inner: R,
    hash: Option<Md5>,
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(h) = &mut self.hash {
            md5::Digest::update(h, &buf[..n]);
        }
        Ok(n)
    }
}

/// The name dpkg keeps a package's `info/` files under: `pkg:arch` for
/// `Multi-Arch: same` packages (as the image already has it, else by the
/// package's own field).
fn info_name(root: &RootFs, control: &Control, arch: &str) -> String {
    let pkg = control.stanza.package();
    let qualified = format!("{pkg}:{arch}");
    if root.info.contains_key(&format!("{INFO}{qualified}.list")) {
        return qualified;
    }
    if root.info.contains_key(&format!("{INFO}{pkg}.list")) {
        return pkg.to_string();
    }
    if control.stanza.get("Multi-Arch") == Some("same") {
        qualified
    } else {
        pkg.to_string()
    }
}

fn whiteout(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((d, n)) => format!("{d}/.wh.{n}"),
        None => format!(".wh.{path}"),
    }
}

fn file_header(size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}

/// Write the layer for `packages` on top of `root`.
pub fn build(
    root: &RootFs,
    packages: &[Prepared],
    arch: &str,
    tmp_dir: &std::path::Path,
    mtime: u64,
) -> Result<Built> {
    let file = tempfile::NamedTempFile::new_in(tmp_dir)?;
    let outer = Hashing {
        inner: io::BufWriter::new(file.reopen()?),
        hash: Sha256::new(),
        len: 0,
    };
    let gz = flate2::write::GzEncoder::new(outer, flate2::Compression::fast());
    let inner = Hashing {
        inner: gz,
        hash: Sha256::new(),
        len: 0,
    };
    let mut tar = tar::Builder::new(inner);
    tar.mode(tar::HeaderMode::Complete);

    // Files every package not being upgraded lists: never whited out.
    let upgraded: HashSet<String> = packages
        .iter()
        .map(|p| info_name(root, &p.control, arch))
        .collect();
    let mut kept_by_others: HashSet<String> = HashSet::new();
    for (k, v) in &root.info {
        let Some(stem) = k.strip_prefix(INFO).and_then(|n| n.strip_suffix(".list")) else {
            continue;
        };
        if upgraded.contains(stem) {
            continue;
        }
        for line in String::from_utf8_lossy(v).lines() {
            kept_by_others.insert(root.canonical(line));
        }
    }

    let mut written: HashSet<String> = HashSet::new();
    let mut whiteouts: BTreeSet<String> = BTreeSet::new();
    let mut new_status: BTreeMap<(String, String), Stanza> = BTreeMap::new();
    for p in packages {
        let name = info_name(root, &p.control, arch);
        let conffiles: HashSet<String> = p.control.conffiles().into_iter().collect();
        let mut conf_md5: BTreeMap<String, String> = BTreeMap::new();
        let mut list = Vec::new();
        let mut new_files: HashSet<String> = HashSet::new();
        deb::with_data(&p.deb, |data| {
            for e in data.entries()? {
                let e = e?;
                let raw = clean(&e.path()?.to_string_lossy());
                list.push(if raw.is_empty() {
                    "/.".to_string()
                } else {
                    format!("/{raw}")
                });
                if raw.is_empty() {
                    continue;
                }
                let canon = root.canonical(&raw);
                new_files.insert(canon.clone());
                let mut h = e.header().clone();
                let et = h.entry_type();
                if et.is_dir() {
                    // An existing directory (or a symlink standing for
                    // one, as in a merged /usr) stays as it is.
                    if root.kinds.contains_key(&canon) || !written.insert(canon.clone()) {
                        continue;
                    }
                    tar.append_data(&mut h, &canon, io::empty())?;
                } else if et.is_symlink() || et.is_hard_link() {
                    let target = e
                        .link_name()?
                        .map(|t| t.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let target = if et.is_hard_link() {
                        root.canonical(&target)
                    } else {
                        target
                    };
                    h.set_size(0);
                    written.insert(canon.clone());
                    tar.append_link(&mut h, &canon, &target)?;
                } else {
                    let size = e.size();
                    h.set_size(size);
                    let listed = format!("/{raw}");
                    let is_conf = conffiles.contains(&listed);
                    let mut r = Md5Reader {
                        inner: e,
                        hash: is_conf.then(Md5::new),
                    };
                    written.insert(canon.clone());
                    tar.append_data(&mut h, &canon, &mut r)?;
                    if let Some(m) = r.hash {
                        conf_md5.insert(listed, hex::encode(md5::Digest::finalize(m)));
                    }
                }
            }
            Ok(())
        })
        .with_context(|| format!("reading {} {}", p.upgrade.package, p.upgrade.to))?;

        // Files of the old version that the new one no longer has.
        if let Some(old) = root.info.get(&format!("{INFO}{name}.list")) {
            for line in String::from_utf8_lossy(old).lines() {
                let canon = root.canonical(line);
                if canon.is_empty() || new_files.contains(&canon) || kept_by_others.contains(&canon)
                {
                    continue;
                }
                if matches!(root.kinds.get(&canon), Some(Kind::File | Kind::Symlink)) {
                    whiteouts.insert(canon);
                }
            }
        }
        // The dpkg database: info files replaced, stale ones whited out.
        let mut info_files: BTreeMap<String, Vec<u8>> = p
            .control
            .files
            .iter()
            .map(|(k, v)| (format!("{INFO}{name}.{k}"), v.clone()))
            .collect();
        let mut list_text = list.join("\n");
        list_text.push('\n');
        info_files.insert(format!("{INFO}{name}.list"), list_text.into_bytes());
        let prefix = format!("{INFO}{name}.");
        for old in root.info.keys() {
            if old.starts_with(&prefix) && !info_files.contains_key(old) {
                whiteouts.insert(old.clone());
            }
        }
        for (path, body) in info_files {
            let mode = if body.starts_with(b"#!") {
                0o755
            } else {
                0o644
            };
            let mut h = file_header(body.len() as u64, mode, mtime);
            tar.append_data(&mut h, &path, body.as_slice())?;
            written.insert(path);
        }
        let mut st = p.control.stanza.clone();
        st.insert_after("Package", "Status", "install ok installed");
        st.remove("Conffiles");
        if !conf_md5.is_empty() {
            let mut v = String::new();
            for (path, md5) in &conf_md5 {
                v.push_str(&format!("\n {path} {md5}"));
            }
            let at = st
                .fields
                .iter()
                .position(|(k, _)| k.eq_ignore_ascii_case("Description"))
                .unwrap_or(st.fields.len());
            st.fields.insert(at, ("Conffiles".into(), v));
        }
        let a = st.get("Architecture").unwrap_or_default().to_string();
        new_status.insert((st.package().to_string(), a), st);
    }
    for w in &whiteouts {
        if written.contains(w) {
            continue;
        }
        let mut h = file_header(0, 0o644, mtime);
        tar.append_data(&mut h, whiteout(w), io::empty())?;
    }

    // The status file with the upgraded stanzas replaced (new ones added).
    let mut stanzas = root.installed()?;
    for s in stanzas.iter_mut() {
        let key = (
            s.package().to_string(),
            s.get("Architecture").unwrap_or_default().to_string(),
        );
        if let Some(n) = new_status.remove(&key) {
            *s = n;
        }
    }
    stanzas.extend(new_status.into_values());
    let mut status = String::new();
    for s in &stanzas {
        status.push_str(&s.render());
        status.push('\n');
    }
    debug_assert!(parse_stanzas(&status).len() == stanzas.len());
    let mut h = file_header(status.len() as u64, 0o644, mtime);
    tar.append_data(&mut h, STATUS, status.as_bytes())?;

    let inner = tar.into_inner()?;
    let diff_id = format!("sha256:{}", hex::encode(inner.hash.finalize()));
    let mut outer = inner.inner.finish()?;
    outer.flush()?;
    let digest = format!("sha256:{}", hex::encode(outer.hash.finalize()));
    let size = outer.len;
    drop(outer.inner);
    Ok(Built {
        file,
        digest,
        diff_id,
        size,
    })
}
