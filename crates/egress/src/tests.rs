use super::*;

fn strict() -> EgressPolicy {
    EgressPolicy::default()
}

fn class(ip: &str) -> Option<Class> {
    strict()
        .check_ip(ip.parse().unwrap())
        .err()
        .map(|r| r.class)
}

#[test]
fn every_internal_ipv4_range_is_refused_by_default() {
    let cases = [
        ("127.0.0.1", Class::Loopback),
        ("127.255.255.254", Class::Loopback),
        ("0.0.0.0", Class::Unspecified),
        ("0.1.2.3", Class::Unspecified),
        ("169.254.169.254", Class::LinkLocal),
        ("169.254.0.1", Class::LinkLocal),
        ("10.0.0.1", Class::Private),
        ("10.255.255.255", Class::Private),
        ("172.16.0.1", Class::Private),
        ("172.31.255.255", Class::Private),
        ("192.168.1.1", Class::Private),
        ("100.64.0.1", Class::Shared),
        ("100.127.255.255", Class::Shared),
        ("224.0.0.1", Class::Multicast),
        ("239.255.255.250", Class::Multicast),
        ("255.255.255.255", Class::Broadcast),
        ("240.0.0.1", Class::Reserved),
        ("192.0.0.8", Class::Reserved),
        ("192.0.2.1", Class::Documentation),
        ("198.51.100.7", Class::Documentation),
        ("203.0.113.9", Class::Documentation),
        ("198.18.0.1", Class::Benchmarking),
        ("198.19.255.255", Class::Benchmarking),
    ];
    for (ip, want) in cases {
        assert_eq!(class(ip), Some(want), "{ip}");
    }
}

#[test]
fn public_addresses_and_range_edges_pass() {
    for ip in [
        "8.8.8.8",
        "1.1.1.1",
        "172.15.255.255",
        "172.32.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "169.253.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "11.0.0.0",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "64:ff9b::808:808",
        "::ffff:8.8.8.8",
        "2002:808:808::1",
        "3fff:1000::1",
        "3ff0::1",
    ] {
        assert_eq!(class(ip), None, "{ip}");
    }
}

#[test]
fn every_internal_ipv6_range_is_refused_by_default() {
    let cases = [
        ("::1", Class::Loopback),
        ("::", Class::Unspecified),
        ("fe80::1", Class::LinkLocal),
        ("febf:ffff::1", Class::LinkLocal),
        ("fc00::1", Class::Private),
        ("fd00:ec2::254", Class::Private),
        ("fec0::1", Class::Private),
        ("ff02::1", Class::Multicast),
        ("ff0e::101", Class::Multicast),
        ("2001:db8::1", Class::Documentation),
        ("3fff::1", Class::Documentation),
        ("3fff:fff::1", Class::Documentation),
        ("2001:2::1", Class::Benchmarking),
        ("100::1", Class::Reserved),
        ("::1:0:0:0:1", Class::Reserved),
    ];
    for (ip, want) in cases {
        assert_eq!(class(ip), Some(want), "{ip}");
    }
}

#[test]
fn ipv6_forms_of_ipv4_addresses_are_judged_by_the_ipv4_address() {
    let cases = [
        ("::ffff:127.0.0.1", "127.0.0.1", Class::Loopback),
        (
            "::ffff:169.254.169.254",
            "169.254.169.254",
            Class::LinkLocal,
        ),
        ("::ffff:10.0.0.1", "10.0.0.1", Class::Private),
        ("::10.0.0.1", "10.0.0.1", Class::Private),
        ("::127.0.0.1", "127.0.0.1", Class::Loopback),
        ("::ffff:0:192.168.0.1", "192.168.0.1", Class::Private),
        ("64:ff9b::a9fe:a9fe", "169.254.169.254", Class::LinkLocal),
        ("64:ff9b::7f00:1", "127.0.0.1", Class::Loopback),
        ("64:ff9b:1::a00:1", "10.0.0.1", Class::Private),
        ("2002:a00:1::1", "10.0.0.1", Class::Private),
        ("2002:7f00:1::", "127.0.0.1", Class::Loopback),
        ("::ffff:0.0.0.0", "0.0.0.0", Class::Unspecified),
    ];
    for (ip, v4, want) in cases {
        let r = strict().check_ip(ip.parse().unwrap()).unwrap_err();
        assert_eq!(r.class, want, "{ip}");
        assert_eq!(r.embedded, Some(v4.parse().unwrap()), "{ip}");
        assert!(r.to_string().contains(&format!("embeds {v4}")), "{r}");
    }
}

#[test]
fn allow_list_overrides_for_the_listed_ranges_only() {
    let p = EgressPolicy::parse_allow(&["127.0.0.0/8".into(), "::1/128".into()]).unwrap();
    for ip in [
        "127.0.0.1",
        "127.0.0.2",
        "::1",
        "::ffff:127.0.0.1",
        "8.8.8.8",
    ] {
        assert!(p.check_ip(ip.parse().unwrap()).is_ok(), "{ip}");
    }
    for ip in [
        "10.0.0.1",
        "169.254.169.254",
        "::2",
        "fd00:ec2::254",
        "::ffff:10.0.0.1",
    ] {
        assert!(p.check_ip(ip.parse().unwrap()).is_err(), "{ip}");
    }
    // A single address, and a CIDR written with host bits, mean what they say.
    let p = EgressPolicy::parse_allow(&["127.0.0.1".into(), " 10.1.2.3/8 ".into()]).unwrap();
    assert!(p.check_ip("127.0.0.1".parse().unwrap()).is_ok());
    assert!(p.check_ip("127.0.0.2".parse().unwrap()).is_err());
    assert!(p.check_ip("10.200.0.1".parse().unwrap()).is_ok());
    assert!(
        EgressPolicy::allow_all()
            .check_ip("169.254.169.254".parse().unwrap())
            .is_ok()
    );
}

#[test]
fn bad_allow_entries_are_reported_precisely() {
    for bad in ["10.0.0.0/33", "localhost", "", "10.0.0/8", "::1/129"] {
        let e = EgressPolicy::parse_allow(&["127.0.0.0/8".into(), bad.into()]).unwrap_err();
        assert_eq!(e.entry, bad);
        let msg = e.to_string();
        assert!(msg.starts_with("outbound.allow: "), "{msg}");
        assert!(msg.contains(&format!("{bad:?}")), "{msg}");
    }
    let c: OutboundConfig = serde_json::from_str(r#"{"allow": ["127.0.0.0/8"]}"#).unwrap();
    assert!(
        c.policy()
            .unwrap()
            .check_ip("127.0.0.9".parse().unwrap())
            .is_ok()
    );
    assert!(serde_json::from_str::<OutboundConfig>(r#"{"alow": []}"#).is_err());
    let bad: OutboundConfig = serde_json::from_str(r#"{"allow": ["nope"]}"#).unwrap();
    assert!(bad.policy().is_err());
}

#[test]
fn refusal_messages_name_the_address_the_reason_and_the_fix() {
    let r = strict().check_ip("10.0.0.1".parse().unwrap()).unwrap_err();
    assert_eq!(
        r.to_string(),
        "refused by the outbound policy: 10.0.0.1 is a private address (allow it with outbound.allow)"
    );
    let url = reqwest::Url::parse("http://169.254.169.254/latest/meta-data/").unwrap();
    assert!(
        strict()
            .check_url(&url)
            .unwrap_err()
            .to_string()
            .contains("169.254.169.254 is a link-local address")
    );
    assert!(strict().check_url_str("http://[fd00:ec2::254]/").is_err());
    assert!(
        strict().check_url_str("http://0x7f.1/").is_err(),
        "normalised to 127.0.0.1"
    );
    assert!(
        strict().check_url_str("http://2130706433/").is_err(),
        "normalised to 127.0.0.1"
    );
    assert!(strict().check_url_str("https://example.org/hook").is_ok());
    assert!(strict().check_host("127.0.0.1:5000").is_err());
    assert!(strict().check_host("[::1]:5000").is_err());
    assert!(strict().check_host("registry.example:5000").is_ok());
}

#[tokio::test]
async fn names_are_judged_by_every_address_they_resolve_to() {
    let e = strict().resolver().lookup("localhost").await.unwrap_err();
    let r = refusal(&e).expect("a refusal");
    assert_eq!(r.host.as_deref(), Some("localhost"));
    assert_eq!(r.class, Class::Loopback);
    assert!(
        e.to_string()
            .starts_with("refused by the outbound policy: localhost resolves to "),
        "{e}"
    );
    let loopback = EgressPolicy::parse_allow(&["127.0.0.0/8".into(), "::1/128".into()]).unwrap();
    let addrs = loopback.resolver().lookup("localhost").await.unwrap();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    // Half allowed is refused: the address used is not ours to choose.
    let v4_only = EgressPolicy::parse_allow(&["127.0.0.0/8".into()]).unwrap();
    let localhost_has_v6 = addrs.iter().any(|a| a.is_ipv6());
    assert_eq!(
        v4_only.resolver().lookup("localhost").await.is_err(),
        localhost_has_v6
    );
}
