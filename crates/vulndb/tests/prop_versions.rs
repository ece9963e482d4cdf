//! Property tests of every version scheme: versions come from package
//! databases and advisories, so none may panic on any string, and each
//! scheme's comparison must be a total order on the versions it accepts
//! (reflexive, antisymmetric, transitive), or a sort of findings and
//! "fixed in" ranges would give answers that depend on the input order.
//!
//! CI runs proptest's default number of cases; `PROPTEST_CASES=100000`
//! (see docs/testing.md) is the long run.

use proptest::prelude::*;
use std::cmp::Ordering;
use vulndb::version::{
    Apk, Composer, Dpkg, GoSemver, Maven, NuGet, Pep440, Rpm, RubyGems, Semver, VersionScheme,
};

/// Strings of the characters version syntaxes use, so that the
/// tokenizers' corner cases (empty parts, separators in a row, huge
/// numbers, `~`, `^`, epochs) come up often.
fn chaos() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('0', '9'),
            2 => Just('.'),
            1 => Just('-'),
            1 => Just('~'),
            1 => Just('+'),
            1 => Just('_'),
            1 => Just(':'),
            1 => Just('^'),
            1 => Just('!'),
            1 => Just('v'),
            1 => Just('r'),
            1 => Just('a'),
            1 => Just('b'),
            1 => Just('c'),
            1 => Just('p'),
            1 => Just('A'),
            1 => Just(' '),
            1 => Just('é'),
        ],
        0..14,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Plausible versions of each scheme (the shapes real databases hold),
/// mixed with chaos so invalid neighbours are compared too.
fn versions(scheme: &str) -> BoxedStrategy<String> {
    let shaped: &str = match scheme {
        "dpkg" => r"([0-9]{1,2}:)?[0-9][0-9a-z.+~]{0,8}(-[0-9a-z.+~]{1,5})?",
        "apk" => {
            r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}[a-z]?(_(alpha|beta|pre|rc|p|cvs|svn|git|hg)[0-9]{0,3}){0,2}(-r[0-9]{1,3})?"
        }
        "rpm" => r"([0-9]{1,2}:)?[0-9a-zA-Z.+~^_]{1,10}(-[0-9a-zA-Z.+~^_]{1,6})?",
        "pep440" => {
            r"([0-9]!)?[0-9]{1,3}(\.[0-9]{1,3}){0,3}((a|b|rc|alpha|beta|c|pre|preview)[0-9]{0,2})?(\.post[0-9]{0,2})?(\.dev[0-9]{0,2})?(\+[a-z0-9.]{1,6})?"
        }
        "semver" => {
            r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-[0-9A-Za-z]{1,4}(\.[0-9A-Za-z-]{1,4}){0,2})?(\+[0-9A-Za-z.-]{1,6})?"
        }
        "go" => {
            r"v[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}(-[0-9A-Za-z]{1,4}(\.[0-9A-Za-z-]{1,4}){0,2})?(\+incompatible)?"
        }
        "maven" => {
            r"[0-9]{1,3}(\.[0-9]{1,3}){0,3}([.-](alpha|beta|milestone|rc|cr|snapshot|ga|final|release|sp|a|b|m)[0-9]{0,2})?(-[0-9a-z]{1,4})?"
        }
        "rubygems" => r"[0-9]{1,3}(\.[0-9a-z]{1,3}){0,4}(-[0-9a-z.]{1,4})?",
        "composer" => {
            r"v?[0-9]{1,3}(\.[0-9]{1,3}){0,3}([-.]?(alpha|beta|RC|rc|patch|pl|p|dev|stable|a|b)[.-]?[0-9]{0,2})?"
        }
        "nuget" => {
            r"[0-9]{1,3}(\.[0-9]{1,3}){1,3}(-[0-9A-Za-z]{1,4}(\.[0-9A-Za-z-]{1,4}){0,2})?(\+[0-9A-Za-z.]{1,6})?"
        }
        other => panic!("no generator for {other}"),
    };
    prop_oneof![4 => shaped, 1 => chaos()].boxed()
}

fn schemes() -> Vec<(&'static str, &'static dyn VersionScheme)> {
    vec![
        ("dpkg", &Dpkg),
        ("apk", &Apk),
        ("rpm", &Rpm),
        ("pep440", &Pep440),
        ("semver", &Semver),
        ("go", &GoSemver),
        ("maven", &Maven),
        ("rubygems", &RubyGems),
        ("composer", &Composer),
        ("nuget", &NuGet),
    ]
}

/// Check reflexivity, antisymmetry and transitivity over every pair and
/// triple of the valid versions in `vs`.
fn assert_total_order(scheme: &dyn VersionScheme, vs: &[String]) -> Result<(), TestCaseError> {
    let valid: Vec<&String> = vs.iter().filter(|v| scheme.validate(v).is_ok()).collect();
    let cmp = |a: &str, b: &str| -> Result<Ordering, TestCaseError> {
        scheme.compare(a, b).map_err(|e| {
            TestCaseError::fail(format!(
                "{}: {a:?} and {b:?} validate but do not compare: {e}",
                scheme.name()
            ))
        })
    };
    for a in &valid {
        prop_assert_eq!(
            cmp(a, a)?,
            Ordering::Equal,
            "{}: {:?} vs itself",
            scheme.name(),
            a
        );
        for b in &valid {
            let ab = cmp(a, b)?;
            prop_assert_eq!(
                ab,
                cmp(b, a)?.reverse(),
                "{}: {:?} vs {:?} is not antisymmetric",
                scheme.name(),
                a,
                b
            );
            for c in &valid {
                let bc = cmp(b, c)?;
                let ac = cmp(a, c)?;
                if ab != Ordering::Greater && bc != Ordering::Greater {
                    let want = if ab == Ordering::Equal && bc == Ordering::Equal {
                        Ordering::Equal
                    } else {
                        Ordering::Less
                    };
                    prop_assert_eq!(
                        ac,
                        want,
                        "{}: not transitive: {:?} {:?} {:?} {:?} {:?}",
                        scheme.name(),
                        a,
                        ab,
                        b,
                        bc,
                        c
                    );
                }
            }
        }
    }
    Ok(())
}

/// Run `body` on `cases`-many generated version lists for each scheme.
fn for_each_scheme(
    list_len: std::ops::Range<usize>,
    body: impl Fn(&dyn VersionScheme, Vec<String>) -> Result<(), TestCaseError>,
) {
    for (tag, scheme) in schemes() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::default());
        let strategy = proptest::collection::vec(versions(tag), list_len.clone());
        if let Err(e) = runner.run(&strategy, |vs| body(scheme, vs)) {
            panic!("{tag}: {e}");
        }
    }
}

#[test]
fn comparisons_are_total_orders() {
    for_each_scheme(2..7, |scheme, vs| assert_total_order(scheme, &vs));
}

#[test]
fn validate_and_compare_never_panic_on_any_string() {
    for (tag, scheme) in schemes() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::default());
        let any_pair = (
            prop_oneof![".{0,24}", chaos(), versions(tag)],
            prop_oneof![".{0,24}", chaos(), versions(tag)],
        );
        runner
            .run(&any_pair, |(a, b)| {
                let (va, vb) = (scheme.validate(&a), scheme.validate(&b));
                let c = scheme.compare(&a, &b);
                // Comparing succeeds exactly when both sides are valid.
                prop_assert_eq!(
                    c.is_ok(),
                    va.is_ok() && vb.is_ok(),
                    "{}: {:?} vs {:?}",
                    scheme.name(),
                    a,
                    b
                );
                Ok(())
            })
            .unwrap_or_else(|e| panic!("{tag}: {e}"));
    }
}

#[test]
fn shaped_versions_are_mostly_valid() {
    // The generators must reach the comparison code, not just the
    // validator's refusals: most shaped versions are valid.
    for (tag, scheme) in schemes() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let shaped = versions(tag);
        let mut valid = 0;
        for _ in 0..200 {
            let v = shaped.new_tree(&mut runner).unwrap().current();
            valid += usize::from(scheme.validate(&v).is_ok());
        }
        assert!(
            valid >= 100,
            "{tag}: only {valid} of 200 generated versions valid"
        );
    }
}
