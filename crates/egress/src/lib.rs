//! Which addresses the server's own outbound requests may reach.
//!
//! Webhook deliveries, import jobs and pull-through mirrors make HTTP
//! requests to URLs that API users and configuration choose. Left alone,
//! that turns the server into a way into everything it can reach: its own
//! loopback services, the cloud metadata endpoint (169.254.169.254,
//! fd00:ec2::254), the private network. An [`EgressPolicy`] says which
//! addresses those requests may reach:
//!
//! - By default it refuses every address that is not globally routable:
//!   loopback, unspecified, link-local, private (RFC 1918, unique local),
//!   shared (CGNAT), multicast, broadcast, documentation, benchmarking and
//!   reserved ranges, and the IPv6 forms that embed an IPv4 address
//!   (IPv4-mapped, IPv4-compatible, NAT64, 6to4), judged by that address.
//! - An allow-list of CIDRs (`outbound.allow`) lets chosen ranges through.
//! - [`EgressPolicy::allow_all`] is for the command line, where the user's
//!   own requests go where the user says.
//!
//! [`apply`] builds a client that enforces the policy at every step a
//! request can take:
//! - names are resolved by [`Guard`], which fails the lookup when any
//!   address a name resolves to is refused (so a name that points, or is
//!   rebound, to an internal address is refused after resolution, on the
//!   address that would be used);
//! - every redirect target is checked by the redirect policy (a literal
//!   IP is never resolved, so it is checked there);
//! - the first request's URL is the caller's to check with
//!   [`EgressPolicy::check_url`], again because a literal IP host is
//!   connected to without a lookup.
//!
//! Requests through an HTTP proxy (`HTTPS_PROXY`, `HTTP_PROXY`) resolve
//! the proxy's name, not the target's: the proxy must do its own filtering.
//!
//! [`RetryPolicy`] is how every outbound request or transfer is retried.

mod retry;

pub use retry::RetryPolicy;

use ipnet::{IpNet, Ipv4Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// The configuration key that widens the policy; named in refusals.
pub const ALLOW_KEY: &str = "outbound.allow";

/// Which addresses outbound requests may reach. The default refuses every
/// internal address (see the crate documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    allow: Vec<IpNet>,
    all: bool,
}

/// The `[outbound]` configuration table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// CIDRs (or single addresses) outbound requests may reach even though
    /// they are internal, e.g. `["127.0.0.0/8", "::1/128"]`.
    pub allow: Vec<String>,
}

impl OutboundConfig {
    /// The policy this table describes.
    pub fn policy(&self) -> Result<EgressPolicy, PolicyError> {
        EgressPolicy::parse_allow(&self.allow)
    }
}

/// An allow-list entry that is not a CIDR.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{ALLOW_KEY}: {entry:?} is not a CIDR or an address (expected e.g. 10.0.0.0/8, 127.0.0.1 or ::1/128)"
)]
pub struct PolicyError {
    pub entry: String,
}

/// Why an address is not reachable by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Loopback,
    Unspecified,
    LinkLocal,
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    Shared,
    Multicast,
    Broadcast,
    Documentation,
    Benchmarking,
    Reserved,
}

impl Class {
    fn describe(self) -> &'static str {
        match self {
            Class::Loopback => "a loopback address",
            Class::Unspecified => "an unspecified address",
            Class::LinkLocal => "a link-local address",
            Class::Private => "a private address",
            Class::Shared => "a shared (carrier-grade NAT) address",
            Class::Multicast => "a multicast address",
            Class::Broadcast => "the broadcast address",
            Class::Documentation => "a documentation address",
            Class::Benchmarking => "a benchmarking address",
            Class::Reserved => "a reserved address",
        }
    }
}

/// An address the policy refuses. Its message names the address, why, and
/// how to allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The address refused.
    pub ip: IpAddr,
    pub class: Class,
    /// The IPv4 address an IPv6 address embeds, when that is what was judged.
    pub embedded: Option<Ipv4Addr>,
    /// The name that resolved to `ip`, when there was one.
    pub host: Option<String>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("refused by the outbound policy: ")?;
        if let Some(h) = &self.host {
            write!(f, "{h} resolves to {}, which is ", self.ip)?;
        } else {
            write!(f, "{} is ", self.ip)?;
        }
        f.write_str(self.class.describe())?;
        if let Some(v4) = self.embedded {
            write!(f, " (it embeds {v4})")?;
        }
        write!(f, " (allow it with {ALLOW_KEY})")
    }
}

impl std::error::Error for Refused {}

impl EgressPolicy {
    /// Everything allowed: for requests the user makes from the command
    /// line, never for the server's.
    pub fn allow_all() -> EgressPolicy {
        EgressPolicy {
            allow: Vec::new(),
            all: true,
        }
    }

    /// The default policy widened by `entries`: CIDRs (`127.0.0.0/8`,
    /// `::1/128`) or single addresses.
    pub fn parse_allow(entries: &[String]) -> Result<EgressPolicy, PolicyError> {
        let mut allow = Vec::with_capacity(entries.len());
        for e in entries {
            let t = e.trim();
            let net = t
                .parse::<IpNet>()
                .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| PolicyError { entry: e.clone() })?;
            // `10.1.2.3/8` means the network, not just the address.
            allow.push(net.trunc());
        }
        Ok(EgressPolicy { allow, all: false })
    }

    /// True for [`EgressPolicy::allow_all`].
    pub fn allows_all(&self) -> bool {
        self.all
    }

    /// The allow-list.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    fn listed(&self, ip: IpAddr) -> bool {
        self.allow.iter().any(|n| n.contains(&ip))
    }

    /// May a request go to `ip`?
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refused> {
        if self.all || self.listed(ip) {
            return Ok(());
        }
        let refuse = |class, embedded| {
            Err(Refused {
                ip,
                class,
                embedded,
                host: None,
            })
        };
        match ip {
            IpAddr::V4(v4) => match classify_v4(v4) {
                Some(c) => refuse(c, None),
                None => Ok(()),
            },
            IpAddr::V6(v6) => {
                // An address that carries an IPv4 address reaches it: judge
                // (and allow) it by that address.
                if let Some(v4) = embedded_v4(v6) {
                    if self.listed(IpAddr::V4(v4)) {
                        return Ok(());
                    }
                    return match classify_v4(v4) {
                        Some(c) => refuse(c, Some(v4)),
                        None => Ok(()),
                    };
                }
                match classify_v6(v6) {
                    Some(c) => refuse(c, None),
                    None => Ok(()),
                }
            }
        }
    }

    /// May a request go to `url`? Only a literal IP host is judged here;
    /// a name is judged when it is resolved (see [`Guard`]).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }

    /// [`EgressPolicy::check_url`] for a URL string; a string that is not
    /// a URL passes (whoever sends it will fail on it anyway).
    pub fn check_url_str(&self, url: &str) -> Result<(), Refused> {
        match reqwest::Url::parse(url) {
            Ok(u) => self.check_url(&u),
            Err(_) => Ok(()),
        }
    }

    /// May a request go to registry host `HOST[:PORT]` (a name, an IPv4
    /// address or a bracketed IPv6 address)? Names pass, as in
    /// [`EgressPolicy::check_url`].
    pub fn check_host(&self, host: &str) -> Result<(), Refused> {
        self.check_url_str(&format!("http://{host}/"))
    }

    /// The resolver that enforces this policy on names.
    pub fn resolver(&self) -> Arc<Guard> {
        Arc::new(Guard {
            policy: self.clone(),
        })
    }

    /// A redirect policy that follows up to `max` redirects, each to an
    /// address this policy allows.
    pub fn redirect_policy(&self, max: usize) -> reqwest::redirect::Policy {
        let policy = self.clone();
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= max {
                let e = TooManyRedirects(max);
                return attempt.error(e);
            }
            match policy.check_url(attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(r) => attempt.error(r),
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("more than {0} redirects")]
struct TooManyRedirects(usize);

/// Redirects a client built by [`apply`] follows (reqwest's own default).
pub const MAX_REDIRECTS: usize = 10;

/// Make `builder` enforce `policy`: its resolver refuses names that
/// resolve to refused addresses and its redirects go only to allowed
/// addresses. Callers still check the first URL with
/// [`EgressPolicy::check_url`]. A caller that wants no redirects sets
/// `.redirect(Policy::none())` after this.
pub fn apply(builder: reqwest::ClientBuilder, policy: &EgressPolicy) -> reqwest::ClientBuilder {
    if policy.allows_all() {
        return builder;
    }
    builder
        .dns_resolver(policy.resolver())
        .redirect(policy.redirect_policy(MAX_REDIRECTS))
}

/// The refusal somewhere in an error's source chain: a client built by
/// [`apply`] reports refusals as connect or redirect errors that carry it.
pub fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        // `io::Error::source` skips the error it wraps; look inside.
        if let Some(r) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// A `reqwest` error for people: the refusal when the policy stopped the
/// request, else the error with its source chain.
pub fn describe(err: &reqwest::Error) -> String {
    if let Some(r) = refusal(err) {
        return r.to_string();
    }
    let mut s = err.to_string();
    let mut src = std::error::Error::source(err);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// A resolver (tokio's, the system's) that fails when any address a name
/// resolves to is refused: connecting to the others would leave the choice
/// of address, and so the policy, to whoever controls the name.
#[derive(Debug, Clone)]
pub struct Guard {
    policy: EgressPolicy,
}

impl Guard {
    /// Resolve `host` and check every address.
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, std::io::Error> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} has no addresses"),
            ));
        }
        for a in &addrs {
            self.policy.check_ip(a.ip()).map_err(|mut r| {
                r.host = Some(host.to_string());
                std::io::Error::new(std::io::ErrorKind::PermissionDenied, r)
            })?;
        }
        Ok(addrs)
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = this.lookup(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

const fn v4net(a: [u8; 4], len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a[0], a[1], a[2], a[3]), len)
}

/// IPv4 ranges refused by default, most specific first.
const V4_RANGES: &[(Ipv4Net, Class)] = &[
    (v4net([255, 255, 255, 255], 32), Class::Broadcast),
    (v4net([0, 0, 0, 0], 8), Class::Unspecified),
    (v4net([10, 0, 0, 0], 8), Class::Private),
    (v4net([100, 64, 0, 0], 10), Class::Shared),
    (v4net([127, 0, 0, 0], 8), Class::Loopback),
    (v4net([169, 254, 0, 0], 16), Class::LinkLocal),
    (v4net([172, 16, 0, 0], 12), Class::Private),
    (v4net([192, 0, 0, 0], 24), Class::Reserved),
    (v4net([192, 0, 2, 0], 24), Class::Documentation),
    (v4net([192, 88, 99, 0], 24), Class::Reserved),
    (v4net([192, 168, 0, 0], 16), Class::Private),
    (v4net([198, 18, 0, 0], 15), Class::Benchmarking),
    (v4net([198, 51, 100, 0], 24), Class::Documentation),
    (v4net([203, 0, 113, 0], 24), Class::Documentation),
    (v4net([224, 0, 0, 0], 4), Class::Multicast),
    (v4net([240, 0, 0, 0], 4), Class::Reserved),
];

/// Why `ip` is refused by default; `None` for a public address.
pub fn classify_v4(ip: Ipv4Addr) -> Option<Class> {
    V4_RANGES
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, c)| *c)
}

/// Why `ip` is refused by default, for an address that embeds no IPv4
/// address; `None` for a public address.
pub fn classify_v6(ip: Ipv6Addr) -> Option<Class> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some(Class::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Class::Loopback);
    }
    Some(match s[0] {
        // fe80::/10
        x if x & 0xffc0 == 0xfe80 => Class::LinkLocal,
        // fec0::/10, the deprecated site-local range, and fc00::/7
        // (unique local, home of fd00:ec2::254)
        x if x & 0xffc0 == 0xfec0 || x & 0xfe00 == 0xfc00 => Class::Private,
        x if x & 0xff00 == 0xff00 => Class::Multicast,
        // 2001:db8::/32 and 3fff::/20
        0x2001 if s[1] == 0x0db8 => Class::Documentation,
        0x3fff if s[1] & 0xf000 == 0 => Class::Documentation,
        // 2001:2::/48
        0x2001 if s[1] == 0x0002 && s[2] == 0 => Class::Benchmarking,
        // 100::/64, discard-only
        0x0100 if s[1..4] == [0, 0, 0] => Class::Reserved,
        // ::/8 apart from the forms handled as embedded IPv4
        x if x & 0xff00 == 0 => Class::Reserved,
        _ => return None,
    })
}

/// The IPv4 address an IPv6 address carries and reaches: IPv4-mapped
/// (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated
/// (`::ffff:0:a.b.c.d`), NAT64
/// (`64:ff9b::/96`, `64:ff9b:1::/48`) and 6to4 (`2002:aabb:ccdd::/48`).
pub fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low =
        |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible; `::` and `::1` are IPv6's own.
    if s[0..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(low(s[6], s[7]));
    }
    // IPv4-translated (`::ffff:0:a.b.c.d`, SIIT).
    if s[0..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(low(s[6], s[7]));
    }
    if s[0..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[0..3] == [0x64, 0xff9b, 1] {
        return Some(low(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return Some(low(s[1], s[2]));
    }
    None
}

#[cfg(test)]
mod tests;
