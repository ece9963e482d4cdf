//! Property tests of the OCI parsers that read untrusted input: manifests
//! and indexes, digests, repository names, tags and references. None may
//! panic on any input; what the model can write back (digests, names,
//! tags, manifests) round-trips; names and tags accept exactly what the
//! distribution spec's grammar accepts.
//!
//! CI runs proptest's default number of cases; `PROPTEST_CASES=100000`
//! (see docs/testing.md) is the long run.

use oci::{
    Digest, ImageIndex, ImageManifest, ImageRef, Manifest, Name, PlatformFilter, PlatformSpec,
    Reference, Tag,
};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Strings built from the characters the grammars care about, so that
/// near-misses are common (plain `any::<String>()` is almost never valid).
fn grammar_string(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            8 => proptest::char::range('a', 'z'),
            3 => proptest::char::range('0', '9'),
            1 => Just('A'),
            2 => Just('.'),
            2 => Just('_'),
            2 => Just('-'),
            2 => Just('/'),
            1 => Just(':'),
            1 => Just('@'),
            1 => Just(' '),
            1 => Just('é'),
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn hex(len: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::char::range('0', '9'),
            proptest::char::range('a', 'f')
        ],
        len..=len,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn digest_string() -> impl Strategy<Value = String> {
    prop_oneof![
        hex(64).prop_map(|h| format!("sha256:{h}")),
        hex(128).prop_map(|h| format!("sha512:{h}")),
    ]
}

/// A name the distribution spec's grammar accepts.
fn valid_name() -> impl Strategy<Value = String> {
    let component = (
        "[a-z0-9]{1,6}",
        proptest::collection::vec(("(\\.|_|__|-{1,3})", "[a-z0-9]{1,6}"), 0..3),
    )
        .prop_map(|(head, rest)| {
            let mut s = head;
            for (sep, part) in rest {
                s.push_str(&sep);
                s.push_str(&part);
            }
            s
        });
    proptest::collection::vec(component, 1..5).prop_map(|parts| parts.join("/"))
}

/// The spec's name grammar, written independently of the parser.
fn name_grammar() -> regex::Regex {
    regex::Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
        .unwrap()
}

fn tag_grammar() -> regex::Regex {
    regex::Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").unwrap()
}

/// Arbitrary JSON, shallow, with the keys a manifest parser looks at, so
/// that generated documents reach validation rather than stopping at the
/// first missing field.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(2)),
        Just(json!(u64::MAX)),
        digest_string().prop_map(Value::String),
        prop_oneof![
            Just(oci::OCI_MANIFEST),
            Just(oci::OCI_INDEX),
            Just(oci::OCI_CONFIG),
            Just(oci::OCI_LAYER_TAR),
            Just(oci::DOCKER_MANIFEST),
            Just(oci::DOCKER_MANIFEST_LIST),
            Just(oci::DOCKER_SCHEMA1),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(
                (
                    prop_oneof![
                        Just("schemaVersion"),
                        Just("mediaType"),
                        Just("artifactType"),
                        Just("config"),
                        Just("layers"),
                        Just("manifests"),
                        Just("subject"),
                        Just("digest"),
                        Just("size"),
                        Just("annotations"),
                        Just("platform"),
                        Just("architecture"),
                        Just("os"),
                        Just("variant"),
                        Just("urls"),
                        Just("data"),
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn descriptor(media_type: &'static str) -> impl Strategy<Value = Value> {
    (digest_string(), 0u64..1 << 40)
        .prop_map(move |(d, size)| json!({"mediaType": media_type, "digest": d, "size": size}))
}

/// A well-formed image manifest document.
fn image_manifest() -> impl Strategy<Value = Value> {
    (
        descriptor(oci::OCI_CONFIG),
        proptest::collection::vec(descriptor(oci::OCI_LAYER_TAR), 0..5),
        proptest::option::of(proptest::collection::btree_map(
            "[a-z.]{1,10}",
            ".{0,10}",
            0..3,
        )),
    )
        .prop_map(|(config, layers, annotations)| {
            let mut m = json!({
                "schemaVersion": 2,
                "mediaType": oci::OCI_MANIFEST,
                "config": config,
                "layers": layers,
            });
            if let Some(a) = annotations {
                m["annotations"] = json!(a);
            }
            m
        })
}

/// A well-formed index document.
fn image_index() -> impl Strategy<Value = Value> {
    proptest::collection::vec(
        (
            descriptor(oci::OCI_MANIFEST),
            "[a-z0-9]{1,8}",
            "[a-z]{1,6}",
        )
            .prop_map(|(mut d, arch, os)| {
                d["platform"] = json!({"architecture": arch, "os": os});
                d
            }),
        0..5,
    )
    .prop_map(|manifests| {
        json!({"schemaVersion": 2, "mediaType": oci::OCI_INDEX, "manifests": manifests})
    })
}

proptest! {
    #[test]
    fn manifest_parse_never_panics_on_bytes(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        ct in proptest::option::of(".{0,40}"),
    ) {
        let _ = Manifest::parse(&body, ct.as_deref());
    }

    #[test]
    fn manifest_parse_never_panics_on_json(
        doc in json_value(),
        ct in proptest::option::of(prop_oneof![
            Just(oci::OCI_MANIFEST.to_string()),
            Just(oci::OCI_INDEX.to_string()),
            Just(oci::DOCKER_MANIFEST.to_string()),
            Just("application/json".to_string()),
            Just("application/vnd.example+json; charset=utf-8".to_string()),
        ]),
    ) {
        let body = serde_json::to_vec(&doc).unwrap();
        let _ = Manifest::parse(&body, ct.as_deref());
    }

    /// A valid manifest parses, and what the model writes back parses to
    /// the same manifest.
    #[test]
    fn image_manifests_parse_and_round_trip(doc in image_manifest()) {
        let body = serde_json::to_vec(&doc).unwrap();
        let parsed = Manifest::parse(&body, Some(oci::OCI_MANIFEST)).unwrap();
        let Manifest::Image { manifest, .. } = &parsed else {
            panic!("an image manifest parsed as an index");
        };
        prop_assert_eq!(manifest.layers.len(), doc["layers"].as_array().unwrap().len());
        let again: ImageManifest =
            serde_json::from_slice(&serde_json::to_vec(manifest).unwrap()).unwrap();
        prop_assert_eq!(&again, manifest);
        prop_assert_eq!(Manifest::parse(&serde_json::to_vec(manifest).unwrap(), None).unwrap(), parsed);
    }

    #[test]
    fn indexes_parse_and_round_trip(doc in image_index()) {
        let body = serde_json::to_vec(&doc).unwrap();
        let parsed = Manifest::parse(&body, None).unwrap();
        let Manifest::Index { index, .. } = &parsed else {
            panic!("an index parsed as an image manifest");
        };
        let again: ImageIndex =
            serde_json::from_slice(&serde_json::to_vec(index).unwrap()).unwrap();
        prop_assert_eq!(&again, index);
        prop_assert_eq!(Manifest::parse(&serde_json::to_vec(index).unwrap(), None).unwrap(), parsed);
    }

    /// Damaging one byte of a valid manifest never panics the parser.
    #[test]
    fn damaged_manifests_never_panic(
        doc in prop_oneof![image_manifest(), image_index()],
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let mut body = serde_json::to_vec(&doc).unwrap();
        let i = at.index(body.len());
        if cut {
            body.truncate(i);
        } else {
            body[i] = byte;
        }
        let _ = Manifest::parse(&body, None);
    }

    #[test]
    fn digest_parse_never_panics_and_round_trips(s in ".{0,140}") {
        if let Ok(d) = Digest::parse(&s) {
            prop_assert_eq!(d.to_string(), s);
        }
    }

    #[test]
    fn valid_digests_round_trip(s in digest_string()) {
        let d = Digest::parse(&s).unwrap();
        prop_assert_eq!(d.to_string(), s.clone());
        prop_assert_eq!(Digest::parse(&d.to_string()).unwrap(), d.clone());
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }

    #[test]
    fn digest_of_bytes_parses(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let d = Digest::sha256_of(&data);
        prop_assert_eq!(Digest::parse(&d.to_string()).unwrap(), d);
    }

    /// Names are accepted exactly when the spec's grammar matches, and an
    /// accepted name writes back as it was read.
    #[test]
    fn names_follow_the_spec_grammar(s in grammar_string(40)) {
        let want = s.len() <= 255 && name_grammar().is_match(&s);
        match Name::parse(&s) {
            Ok(n) => {
                prop_assert!(want, "accepted {:?}", s);
                prop_assert_eq!(n.to_string(), s);
            }
            Err(e) => {
                prop_assert!(!want, "refused {:?}: {}", s, e);
                // The reason never repeats the whole input twice.
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }

    #[test]
    fn valid_names_round_trip(s in valid_name()) {
        prop_assume!(s.len() <= 255);
        let n = Name::parse(&s).unwrap();
        prop_assert_eq!(n.as_str(), s.as_str());
        prop_assert_eq!(Name::parse(&n.to_string()).unwrap(), n);
    }

    #[test]
    fn tags_follow_the_spec_grammar(s in grammar_string(140)) {
        let want = tag_grammar().is_match(&s);
        match Tag::parse(&s) {
            Ok(t) => {
                prop_assert!(want, "accepted {:?}", s);
                prop_assert_eq!(t.to_string(), s);
            }
            Err(_) => prop_assert!(!want, "refused {:?}", s),
        }
    }

    #[test]
    fn references_never_panic_and_round_trip(s in prop_oneof![grammar_string(80), ".{0,80}", digest_string()]) {
        if let Ok(r) = Reference::parse(&s) {
            prop_assert_eq!(Reference::parse(&r.to_string()).unwrap(), r);
        }
    }

    #[test]
    fn image_refs_never_panic(s in prop_oneof![grammar_string(80), ".{0,80}"]) {
        if let Ok(r) = ImageRef::parse(&s) {
            prop_assert!(!r.host.is_empty());
        }
    }

    #[test]
    fn image_refs_read_back_their_parts(
        host in "[a-z0-9.]{1,12}(:[0-9]{1,5})?",
        name in valid_name(),
        tag in proptest::option::of("[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}"),
        digest in proptest::option::of(digest_string()),
    ) {
        prop_assume!(name.len() <= 255);
        let mut s = format!("{host}/{name}");
        if let Some(t) = &tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &digest {
            s.push('@');
            s.push_str(d);
        }
        let r = ImageRef::parse(&s).unwrap();
        prop_assert_eq!(r.host, host);
        prop_assert_eq!(r.name.as_str(), name.as_str());
        prop_assert_eq!(r.tag.map(|t| t.to_string()), tag);
        prop_assert_eq!(r.digest.map(|d| d.to_string()), digest);
    }

    #[test]
    fn platforms_never_panic(s in prop_oneof![grammar_string(40), ".{0,40}"]) {
        if let Ok(p) = PlatformSpec::parse(&s) {
            prop_assert_eq!(PlatformSpec::parse(&p.to_string()).unwrap().to_string(), p.to_string());
        }
        let _ = PlatformFilter::parse(&[s.as_str(), "linux/amd64"]);
    }
}
