//! Property tests of everything the cataloger reads from an image: the
//! tar stream and its guard, and each cataloger's file (dpkg, apk and rpm
//! databases, lock files, package manifests, Go build info, jar
//! manifests). Inputs are real-shaped samples damaged at random (bytes
//! flipped, inserted, deleted, cut, repeated) and plain random bytes.
//!
//! Properties: nothing panics; a layer that is a valid tar is cataloged
//! (`Ok`) whatever one of its files holds, since a bad file is skipped and
//! named rather than failing the image; purl segments decode back to what
//! was encoded.
//!
//! CI runs proptest's default number of cases; `PROPTEST_CASES=20000`
//! (see docs/testing.md) is the long run.

use catalog::{Limits, catalog_layer, purl};
use oci::{Digest, LayerCompression};
use proptest::prelude::*;
use std::io::Write;

const DPKG: &str = "Package: libc6\nStatus: install ok installed\nPriority: optional\n\
Installed-Size: 12000\nArchitecture: amd64\nSource: glibc\nVersion: 2.36-9+deb12u4\n\
Description: GNU C Library\n shared libraries\n .\n more\n\n\
Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\n\
Source: zlib (1:1.2.13.dfsg-1)\nVersion: 1:1.2.13.dfsg-1\n\n\
Package: removed\nStatus: deinstall ok config-files\nVersion: 1.0\n";

const APK: &str = "C:Q1abcdefghijklmnopqrstuvwxyz0=\nP:musl\nV:1.2.4-r2\nA:x86_64\nS:383152\n\
I:622592\nT:the musl c library\nU:https://musl.libc.org/\nL:MIT\no:musl\nm:Maintainer <m@example.org>\n\
t:1700000000\nc:abc\n\nC:Q1zz=\nP:busybox\nV:1.36.1-r5\nA:x86_64\no:busybox\n\n";

const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n";

const PY_METADATA: &str = "Metadata-Version: 2.1\nName: requests\nVersion: 2.19.1\n\
Summary: HTTP\nRequires-Dist: idna (<2.8,>=2.5)\n\nlong description\n";

const NPM_PACKAGE: &str =
    r#"{"name":"lodash","version":"4.17.15","license":"MIT","dependencies":{"a":"^1"}}"#;

const NPM_LOCK_V3: &str = r#"{"name":"app","version":"1.0.0","lockfileVersion":3,"packages":{"":{"name":"app","dependencies":{"lodash":"4.17.15"}},"node_modules/lodash":{"version":"4.17.15","resolved":"https://example.invalid/lodash.tgz"},"node_modules/@scope/x":{"version":"1.0.0","dev":true},"node_modules/a/node_modules/b":{"version":"2.0.0"}}}"#;

const NPM_LOCK_V1: &str = r#"{"name":"app","lockfileVersion":1,"dependencies":{"lodash":{"version":"4.17.15"},"express":{"version":"4.16.0","dependencies":{"debug":{"version":"2.6.9"}}}}}"#;

const YARN_LOCK: &str = "# yarn lockfile v1\n\n\nlodash@^4.17.15:\n  version \"4.17.15\"\n  \
resolved \"https://example.invalid/lodash.tgz\"\n\n\"@babel/core@^7.0.0\", \"@babel/core@^7.1.0\":\n  \
version \"7.1.0\"\n  dependencies:\n    debug \"^4.1.0\"\n";

const PNPM_LOCK: &str = "lockfileVersion: '6.0'\n\ndependencies:\n  lodash:\n    specifier: 4.17.15\n    \
version: 4.17.15\n\npackages:\n\n  /lodash@4.17.15:\n    resolution: {integrity: sha512-x}\n    dev: false\n\n  \
/@scope/x@1.0.0(react@18.0.0):\n    resolution: {integrity: sha512-y}\n    dev: true\n";

const CARGO_LOCK: &str = "version = 3\n\n[[package]]\nname = \"regex\"\nversion = \"1.5.4\"\n\
source = \"registry+https://example.invalid/index\"\nchecksum = \"abc\"\ndependencies = [\n \"memchr\",\n]\n\n\
[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n";

const COMPOSER_LOCK: &str = r#"{"packages":[{"name":"monolog/monolog","version":"v1.25.0","type":"library"}],"packages-dev":[{"name":"phpunit/phpunit","version":"9.5.0"}]}"#;

const COMPOSER_INSTALLED: &str = r#"{"packages":[{"name":"symfony/http-kernel","version":"v5.4.0","version_normalized":"5.4.0.0"}],"dev":false}"#;

const GEMSPEC: &str = "# -*- encoding: utf-8 -*-\nGem::Specification.new do |s|\n  s.name = \"rack\".freeze\n  \
s.version = \"2.0.1\"\n  s.licenses = [\"MIT\".freeze]\nend\n";

const DEPS_JSON: &str = r#"{"runtimeTarget":{"name":".NETCoreApp,Version=v6.0"},"libraries":{"app/1.0.0":{"type":"project"},"Newtonsoft.Json/12.0.1":{"type":"package","sha512":"x"}}}"#;

const JAR_MANIFEST: &str = "Manifest-Version: 1.0\r\nImplementation-Title: commons-text\r\n\
Implementation-Version: 1.9\r\nBundle-SymbolicName: org.apache.commons.text\r\nBundle-Version: 1.9.0\r\n\
 continued-line\r\n\r\n";

const POM_PROPERTIES: &str =
    "#Generated\ngroupId=org.apache.logging.log4j\nartifactId=log4j-core\nversion=2.14.1\n";

/// A watched path, its sample content and its file mode.
struct Seed {
    path: &'static str,
    bytes: Vec<u8>,
    mode: u32,
}

fn seeds() -> Vec<Seed> {
    let text = |path: &'static str, s: &str| Seed {
        path,
        bytes: s.as_bytes().to_vec(),
        mode: 0o644,
    };
    vec![
        text("var/lib/dpkg/status", DPKG),
        text("var/lib/dpkg/status.d/libc6", DPKG),
        text("lib/apk/db/installed", APK),
        text("etc/os-release", OS_RELEASE),
        text("etc/debian_version", "12.4\n"),
        text("etc/alpine-release", "3.19.0\n"),
        text(
            "etc/redhat-release",
            "Rocky Linux release 9.3 (Blue Onyx)\n",
        ),
        text(
            "usr/lib/python3/site-packages/requests-2.19.1.dist-info/METADATA",
            PY_METADATA,
        ),
        text(
            "usr/lib/python3/dist-packages/six-1.16.0.egg-info",
            PY_METADATA,
        ),
        text("app/node_modules/lodash/package.json", NPM_PACKAGE),
        text("app/node_modules/@scope/x/package.json", NPM_PACKAGE),
        text("app/package-lock.json", NPM_LOCK_V3),
        text("srv/package-lock.json", NPM_LOCK_V1),
        text("app/yarn.lock", YARN_LOCK),
        text("app/pnpm-lock.yaml", PNPM_LOCK),
        text("app/Cargo.lock", CARGO_LOCK),
        text("app/composer.lock", COMPOSER_LOCK),
        text("app/vendor/composer/installed.json", COMPOSER_INSTALLED),
        text(
            "usr/lib/ruby/gems/3.1.0/specifications/rack-2.0.1.gemspec",
            GEMSPEC,
        ),
        text("app/app.deps.json", DEPS_JSON),
        Seed {
            path: "var/lib/rpm/Packages",
            bytes: include_bytes!("fixtures/rpm-bdb-Packages").to_vec(),
            mode: 0o644,
        },
        Seed {
            path: "usr/lib/sysimage/rpm/Packages.db",
            bytes: include_bytes!("fixtures/rpm-ndb-Packages.db").to_vec(),
            mode: 0o644,
        },
        Seed {
            path: "var/lib/rpm/rpmdb.sqlite",
            bytes: b"SQLite format 3\0".to_vec(),
            mode: 0o644,
        },
        Seed {
            path: "usr/local/bin/goapp",
            bytes: go_binary(),
            mode: 0o755,
        },
        Seed {
            path: "opt/app/lib/app.jar",
            bytes: jar(true),
            mode: 0o644,
        },
    ]
}

/// Go's varint-prefixed string.
fn varstr(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    let mut n = s.len();
    while n >= 0x80 {
        v.push((n as u8) | 0x80);
        n >>= 7;
    }
    v.push(n as u8);
    v.extend_from_slice(s.as_bytes());
    v
}

/// An ELF-looking executable holding inline (Go 1.18+) build info.
fn go_binary() -> Vec<u8> {
    let modinfo = "0123456789abcdefpath\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
dep\tgithub.com/pkg/errors\tv0.9.1\th1:x\ndep\tgolang.org/x/net\tv0.1.0\th1:y\n\
=>\tgolang.org/x/net\tv0.2.0\th1:z\nbuild\tGOOS=linux\n\n123456789abcdef";
    let mut file = b"\x7fELF\x02\x01\x01".to_vec();
    file.resize(600, 0);
    file.extend_from_slice(b"\xff Go buildinf:");
    file.extend_from_slice(&[8, 2]);
    file.resize(600 + 32, 0);
    file.extend(varstr("go1.21.3"));
    file.extend(varstr(modinfo));
    file.resize(file.len() + 1200, 0);
    file
}

/// A jar with a manifest, Maven's pom.properties and, if `nested`, a jar
/// inside it.
fn jar(nested: bool) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        z.start_file("META-INF/MANIFEST.MF", opts).unwrap();
        z.write_all(JAR_MANIFEST.as_bytes()).unwrap();
        z.start_file(
            "META-INF/maven/org.apache.logging.log4j/log4j-core/pom.properties",
            opts,
        )
        .unwrap();
        z.write_all(POM_PROPERTIES.as_bytes()).unwrap();
        if nested {
            z.start_file("BOOT-INF/lib/commons-text-1.9.jar", opts)
                .unwrap();
            z.write_all(&jar(false)).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// An uncompressed layer: one directory and the given regular files.
fn tar_layer(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_size(0);
    b.append_data(&mut dir, "etc/", &[][..]).unwrap();
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn catalog(layer: &[u8], compression: LayerCompression) -> Result<catalog::LayerInventory, String> {
    catalog_layer(
        layer,
        compression,
        &Digest::sha256_of(layer),
        &Limits::default(),
    )
    .map_err(|e| e.to_string())
}

/// One way to damage a file.
#[derive(Debug, Clone)]
enum Damage {
    Set(proptest::sample::Index, u8),
    Insert(proptest::sample::Index, Vec<u8>),
    Delete(proptest::sample::Index, usize),
    Repeat(proptest::sample::Index, usize, usize),
    Truncate(proptest::sample::Index),
}

/// Byte strings that parsers treat specially.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..8),
        Just(b"\n".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b": ".to_vec()),
        Just(b"\"".to_vec()),
        Just(b"{".to_vec()),
        Just(b"[".to_vec()),
        Just(b"}]".to_vec()),
        Just(b"\0".to_vec()),
        Just(b" ".to_vec()),
        Just(b"\t".to_vec()),
        Just(b"=".to_vec()),
        Just(b"@".to_vec()),
        Just(b"/".to_vec()),
        Just(b"(".to_vec()),
        Just(b"99999999999999999999999".to_vec()),
        Just(b"\xff\xff\xff\xff".to_vec()),
        Just(b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01".to_vec()),
        Just("é".as_bytes().to_vec()),
    ]
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (any::<proptest::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Damage::Set(i, b)),
        4 => (any::<proptest::sample::Index>(), token()).prop_map(|(i, t)| Damage::Insert(i, t)),
        2 => (any::<proptest::sample::Index>(), 1usize..64).prop_map(|(i, n)| Damage::Delete(i, n)),
        1 => (any::<proptest::sample::Index>(), 1usize..64, 1usize..4)
            .prop_map(|(i, n, k)| Damage::Repeat(i, n, k)),
        1 => any::<proptest::sample::Index>().prop_map(Damage::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, damages: &[Damage]) -> Vec<u8> {
    for d in damages {
        let len = data.len();
        match d {
            Damage::Set(i, b) if len > 0 => {
                let i = i.index(len);
                data[i] = *b;
            }
            Damage::Insert(i, t) => {
                let i = i.index(len + 1);
                data.splice(i..i, t.iter().copied());
            }
            Damage::Delete(i, n) if len > 0 => {
                let i = i.index(len);
                let end = (i + n).min(len);
                data.drain(i..end);
            }
            Damage::Repeat(i, n, k) if len > 0 => {
                let i = i.index(len);
                let end = (i + n).min(len);
                let chunk = data[i..end].repeat(*k);
                data.splice(end..end, chunk);
            }
            Damage::Truncate(i) => {
                let i = i.index(len + 1);
                data.truncate(i);
            }
            _ => {}
        }
    }
    data
}

fn seed_index() -> impl Strategy<Value = usize> {
    0..seeds().len()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

proptest! {
    /// A damaged package database, lock file, manifest or binary is
    /// skipped or read in part: the layer is still cataloged.
    #[test]
    fn damaged_files_never_fail_the_layer(
        which in seed_index(),
        damages in proptest::collection::vec(damage(), 1..8),
    ) {
        let seed = &seeds()[which];
        let data = apply(seed.bytes.clone(), &damages);
        let layer = tar_layer(&[(seed.path, &data, seed.mode), ("etc/os-release", OS_RELEASE.as_bytes(), 0o644)]);
        let r = catalog(&layer, LayerCompression::None);
        prop_assert!(r.is_ok(), "{}: {:?}", seed.path, r.err());
    }

    /// Random bytes at every watched path.
    #[test]
    fn random_files_never_fail_the_layer(
        which in seed_index(),
        data in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let seed = &seeds()[which];
        let mut data = data;
        if seed.mode & 0o111 != 0 {
            // Reach the binary scanner: an executable header and 1 KiB.
            data.splice(0..0, b"\x7fELF".iter().copied());
            data.resize(data.len().max(1100), 0);
        }
        let layer = tar_layer(&[(seed.path, &data, seed.mode)]);
        let r = catalog(&layer, LayerCompression::None);
        prop_assert!(r.is_ok(), "{}: {:?}", seed.path, r.err());
    }

    /// The tar guard and reader: a damaged tar stream (headers included)
    /// is an error or a partial read, never a panic.
    #[test]
    fn damaged_tar_streams_never_panic(
        picks in proptest::collection::vec(seed_index(), 1..4),
        damages in proptest::collection::vec(damage(), 1..6),
        compress in any::<bool>(),
    ) {
        let all = seeds();
        let files: Vec<(&str, &[u8], u32)> = picks
            .iter()
            .map(|&i| (all[i].path, &all[i].bytes[..], all[i].mode))
            .collect();
        let layer = apply(tar_layer(&files), &damages);
        if compress {
            let _ = catalog(&gzip(&layer), LayerCompression::Gzip);
        } else {
            let _ = catalog(&layer, LayerCompression::None);
        }
    }

    #[test]
    fn random_layers_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        compression in prop_oneof![
            Just(LayerCompression::None),
            Just(LayerCompression::Gzip),
            Just(LayerCompression::Zstd),
        ],
    ) {
        let _ = catalog(&data, compression);
    }

    /// Tar headers with random numeric fields (size, mode, checksum,
    /// PAX/GNU long names) behind a valid-looking start.
    #[test]
    fn random_headers_never_panic(
        name in proptest::collection::vec(any::<u8>(), 0..120),
        kind in any::<u8>(),
        size_field in proptest::collection::vec(prop_oneof![Just(b'0'), Just(b'7'), Just(b' '), Just(0u8), any::<u8>()], 12),
        body in proptest::collection::vec(any::<u8>(), 0..1536),
    ) {
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(&size_field);
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        // A correct checksum, so the reader gets past it to the fields.
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut layer = h.to_vec();
        layer.extend_from_slice(&body);
        layer.resize(layer.len().div_ceil(512) * 512 + 1024, 0);
        let _ = catalog(&layer, LayerCompression::None);
    }

    /// Percent-encoding a purl segment is reversible and leaves only
    /// unreserved characters and escapes.
    #[test]
    fn purl_segments_round_trip(s in ".{0,40}") {
        let e = purl::encode(&s);
        prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:%".contains(&b)), "{}", e);
        prop_assert_eq!(percent_decode(&e), s);
    }

    /// A built purl reads back as its type, namespace, name, version and
    /// qualifiers.
    #[test]
    fn purls_round_trip(
        ty in "[a-z]{1,8}",
        namespace in proptest::option::of(proptest::collection::vec(".{1,8}", 1..3)),
        name in ".{1,16}",
        version in ".{0,12}",
        qualifiers in proptest::collection::btree_map("[a-z]{1,6}", ".{1,8}", 0..3),
    ) {
        let ns = namespace.as_ref().map(|parts| parts.join("/"));
        let q: Vec<(&str, &str)> = qualifiers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let built = purl::build(&ty, ns.as_deref(), &name, &version, &q);
        let (got_ty, got_ns, got_name, got_version, got_q) = parse_purl(&built);
        prop_assert_eq!(got_ty, ty);
        let want_ns: Vec<String> = namespace
            .unwrap_or_default()
            .iter()
            .flat_map(|p| p.split('/'))
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        prop_assert_eq!(got_ns, want_ns);
        prop_assert_eq!(got_name, name);
        prop_assert_eq!(got_version, version);
        prop_assert_eq!(got_q, qualifiers.into_iter().collect::<Vec<_>>());
    }

    /// The per-ecosystem purl helpers take any name and version.
    #[test]
    fn purl_helpers_never_panic(a in ".{0,24}", b in ".{0,24}", c in ".{0,12}") {
        for p in [
            purl::pypi(&a, &b),
            purl::npm(&a, &b),
            purl::cargo(&a, &b),
            purl::golang(&a, &b),
            purl::maven(&a, &b, &c),
            purl::gem(&a, &b),
            purl::composer(&a, &b),
            purl::nuget(&a, &b),
        ] {
            prop_assert!(p.starts_with("pkg:"), "{}", p);
        }
        let _ = purl::pypi_name(&a);
    }
}

/// `%XX` back to bytes (the inverse of [`purl::encode`]).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

type PurlParts = (String, Vec<String>, String, String, Vec<(String, String)>);

/// Split `pkg:TYPE/NS.../NAME@VERSION?K=V&...` as the purl spec reads it.
fn parse_purl(p: &str) -> PurlParts {
    let rest = p.strip_prefix("pkg:").unwrap();
    let (rest, qualifiers) = match rest.split_once('?') {
        Some((r, q)) => (
            r,
            q.split('&')
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_string(), percent_decode(v))
                })
                .collect(),
        ),
        None => (rest, Vec::new()),
    };
    let (rest, version) = match rest.rsplit_once('@') {
        Some((r, v)) => (r, percent_decode(v)),
        None => (rest, String::new()),
    };
    let mut parts: Vec<&str> = rest.split('/').collect();
    let ty = parts.remove(0).to_string();
    let name = percent_decode(parts.pop().unwrap());
    (
        ty,
        parts.into_iter().map(percent_decode).collect(),
        name,
        version,
        qualifiers,
    )
}

// Inputs the properties above found panicking, kept as plain tests.

/// Catalog one file at `path` holding `data`; the layer must be read.
fn catalog_one(path: &str, data: &[u8]) -> catalog::LayerInventory {
    let layer = tar_layer(&[(path, data, 0o644)]);
    catalog(&layer, LayerCompression::None).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn yarn_lock_key_starting_with_a_multibyte_character() {
    // Panicked: the name was sliced from byte 1, inside the character.
    let inv = catalog_one(
        "app/yarn.lock",
        "\u{fffd}lodash@^4.17.15:\n  version \"4.17.15\"\n\nok@^1.0.0:\n  version \"1.0.0\"\n"
            .as_bytes(),
    );
    let names: Vec<&str> = inv.packages().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"ok"), "{names:?}");
}

#[test]
fn yarn_lock_empty_key() {
    // Panicked: an empty key was sliced from byte 1.
    catalog_one(
        "app/yarn.lock",
        b":\n  version \"1.0.0\"\n\"\":\n  version \"1\"\n",
    );
}
