//! Which addresses metric requests may reach.
//!
//! A metric's `address`, `endpoints` and the target's pod IPs are tenant
//! input, and the operator runs inside the cluster network: without a check
//! a tenant could point it at cloud metadata, the API server or any
//! internal service. The decision is made on the addresses a request would
//! really connect to — an IP literal in the URL (after the URL parser has
//! normalized forms such as `0x7f.1`), or every address a host name resolves
//! to, inside the HTTP client's resolver so the address checked is the
//! address used — never on the text.
//!
//! The rule, in order:
//! 1. Always refused: cloud metadata addresses, the unspecified addresses
//!    and the Kubernetes API server's own addresses.
//! 2. Otherwise the most specific CIDR among `--egress-allow` (default: every
//!    address) and the denied ranges (link-local, loopback and
//!    `--egress-deny`) that contains the address decides. Between equally
//!    specific ones, an `--egress-deny` wins over an `--egress-allow`, which
//!    wins over a range denied by default (so `--egress-allow 127.0.0.0/8`
//!    opens loopback).
//! 3. An address no CIDR contains is allowed only when the URL's host name
//!    matches an `--egress-allow` host (`name` or `*.suffix`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// Addresses that hold credentials of the machine or the cluster: never contacted.
const ALWAYS_REFUSED: &[(&str, &str)] = &[
    ("169.254.169.254/32", "cloud metadata"),
    ("169.254.170.2/32", "cloud metadata"),
    ("fd00:ec2::254/128", "cloud metadata"),
    ("100.100.100.200/32", "cloud metadata"),
    ("0.0.0.0/32", "the unspecified address"),
    ("::/128", "the unspecified address"),
];

/// Ranges denied unless a more specific `--egress-allow` names part of them.
const DENIED_BY_DEFAULT: &[(&str, &str)] = &[
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("0.0.0.0/8", "this network"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
];

/// One `--egress-allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// An address range (a bare address is a /32 or /128).
    Net(IpNet),
    /// Exactly this host name.
    Host(String),
    /// Host names ending in `.suffix`.
    Suffix(String),
}

impl FromStr for AllowRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(net) = parse_net(text) {
            return Ok(AllowRule::Net(net));
        }
        let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let (rule, host): (fn(String) -> AllowRule, &str) = match name.strip_prefix("*.") {
            Some(rest) => (AllowRule::Suffix, rest),
            None => (AllowRule::Host, name.as_str()),
        };
        let valid = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid {
            return Err(format!(
                "`{text}` is neither a CIDR, an address, a host name nor `*.domain`"
            ));
        }
        Ok(rule(host.to_string()))
    }
}

/// Parses `10.0.0.0/8`, `10.1.2.3` or `fd00::/8`.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("`{text}` is not a CIDR or an IP address"))
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host} ({address}) is {why}; the operator's admin did not allow it (--egress-allow)")]
pub struct Refused {
    pub host: String,
    pub address: IpAddr,
    pub why: String,
}

/// The egress rules of one operator.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    always: Vec<(IpNet, String)>,
    allow: Vec<IpNet>,
    hosts: Vec<AllowRule>,
    /// Denied ranges, with why and whether the admin named them (`--egress-deny`).
    deny: Vec<(IpNet, String, bool)>,
}

impl Default for EgressPolicy {
    /// Every address but the refused ones.
    fn default() -> Self {
        EgressPolicy::new(&[], &[]).expect("the built-in ranges parse")
    }
}

impl EgressPolicy {
    /// Rules from `--egress-allow` (every address when empty) and `--egress-deny`.
    pub fn new(allow: &[AllowRule], deny: &[IpNet]) -> Result<Self, String> {
        let table = |rows: &[(&str, &str)]| -> Vec<(IpNet, String)> {
            rows.iter()
                .map(|(net, why)| (parse_net(net).expect("built-in CIDR"), (*why).to_string()))
                .collect()
        };
        let mut nets: Vec<IpNet> = allow
            .iter()
            .filter_map(|r| match r {
                AllowRule::Net(n) => Some(*n),
                _ => None,
            })
            .collect();
        if allow.is_empty() {
            nets = vec![parse_net("0.0.0.0/0")?, parse_net("::/0")?];
        }
        let mut denied: Vec<_> = table(DENIED_BY_DEFAULT)
            .into_iter()
            .map(|(n, why)| (n, why, false))
            .collect();
        denied.extend(
            deny.iter()
                .map(|n| (*n, "denied by --egress-deny".to_string(), true)),
        );
        Ok(EgressPolicy {
            always: table(ALWAYS_REFUSED),
            allow: nets,
            hosts: allow
                .iter()
                .filter(|r| !matches!(r, AllowRule::Net(_)))
                .cloned()
                .collect(),
            deny: denied,
        })
    }

    /// A policy that allows every address: for the command line run by a
    /// user on their own machine (`wasm-autoscaler metrics`), where nobody
    /// else's input is involved.
    pub fn unrestricted() -> Self {
        let any = [
            parse_net("0.0.0.0/0").expect("CIDR"),
            parse_net("::/0").expect("CIDR"),
        ];
        EgressPolicy {
            always: Vec::new(),
            allow: any.to_vec(),
            hosts: Vec::new(),
            deny: Vec::new(),
        }
    }

    /// Adds the API server's addresses to those always refused.
    pub fn refuse_api_server(&mut self, addresses: impl IntoIterator<Item = IpAddr>) {
        for a in addresses {
            let net = IpNet::from(a);
            if !self.always.iter().any(|(n, _)| *n == net) {
                self.always
                    .push((net, "the Kubernetes API server".to_string()));
            }
        }
    }

    /// Whether a connection to `address`, reached through `host`, is allowed.
    pub fn check(&self, host: &str, address: IpAddr) -> Result<(), Refused> {
        // An IPv4 address written as IPv6 (`::ffff:169.254.169.254`) is the IPv4 address.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let refuse = |why: &str| Refused {
            host: host.to_string(),
            address,
            why: why.to_string(),
        };
        if let Some((_, why)) = self.always.iter().find(|(n, _)| n.contains(&address)) {
            return Err(refuse(why));
        }
        let best_allow = self
            .allow
            .iter()
            .filter(|n| n.contains(&address))
            .map(IpNet::prefix_len)
            .max();
        let best_deny = self
            .deny
            .iter()
            .filter(|(n, ..)| n.contains(&address))
            .max_by_key(|(n, _, explicit)| (n.prefix_len(), *explicit));
        match (best_allow, best_deny) {
            (Some(a), Some((d, _, explicit)))
                if a > d.prefix_len() || (a == d.prefix_len() && !explicit) =>
            {
                Ok(())
            }
            (_, Some((_, why, _))) => Err(refuse(why)),
            (Some(_), None) => Ok(()),
            (None, None) if self.host_allowed(host) => Ok(()),
            (None, None) => Err(refuse("not in an allowed range")),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.hosts.iter().any(|r| match r {
            AllowRule::Host(h) => *h == host,
            AllowRule::Suffix(s) => host
                .strip_suffix(s.as_str())
                .is_some_and(|rest| rest.ends_with('.')),
            AllowRule::Net(_) => false,
        })
    }

    /// Checks a URL whose host is an IP literal (host names are checked when resolved).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Refused> {
        let address = match url.host() {
            Some(url::Host::Ipv4(a)) => IpAddr::V4(a),
            Some(url::Host::Ipv6(a)) => IpAddr::V6(a),
            _ => return Ok(()),
        };
        self.check(url.host_str().unwrap_or_default(), address)
    }

    /// An HTTP client that reaches only what these rules allow: host names
    /// go through [`Resolver`]; it follows no redirect (one could lead past
    /// the check of the first address) and uses no proxy (the proxy would
    /// connect for us). IP literals are the caller's to [`check_url`](Self::check_url).
    pub fn http_client(
        self: &Arc<Self>,
        timeout: std::time::Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<reqwest::Client, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(self.resolver());
        if let Some(pem) = ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        builder.build()
    }

    /// A DNS resolver for reqwest that drops refused addresses, failing when none is left.
    pub fn resolver(self: &Arc<Self>) -> Arc<Resolver> {
        Arc::new(Resolver {
            policy: Arc::clone(self),
        })
    }
}

impl fmt::Display for EgressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allow: Vec<String> = self
            .allow
            .iter()
            .map(ToString::to_string)
            .chain(self.hosts.iter().map(|h| match h {
                AllowRule::Host(h) => h.clone(),
                AllowRule::Suffix(s) => format!("*.{s}"),
                AllowRule::Net(n) => n.to_string(),
            }))
            .collect();
        let deny: Vec<String> = self
            .always
            .iter()
            .map(|(n, _)| n.to_string())
            .chain(self.deny.iter().map(|(n, ..)| n.to_string()))
            .collect();
        write!(f, "allow [{}] deny [{}]", allow.join(", "), deny.join(", "))
    }
}

/// Resolves host names for metric requests, keeping only allowed addresses.
pub struct Resolver {
    policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.check(&host, a.ip()) {
                    Ok(()) => true,
                    Err(r) => {
                        refused.get_or_insert(r);
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(r)) => Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>),
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

/// The egress refusal somewhere in an error's chain of causes, if any.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn metadata_link_local_loopback_and_the_api_server_are_refused_by_default() {
        let mut policy = EgressPolicy::default();
        policy.refuse_api_server([ip("10.96.0.1")]);
        for (addr, why) in [
            ("169.254.169.254", "cloud metadata"),
            ("::ffff:169.254.169.254", "cloud metadata"),
            ("fd00:ec2::254", "cloud metadata"),
            ("169.254.10.1", "link-local"),
            ("fe80::1", "link-local"),
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("0.0.0.0", "unspecified"),
            ("10.96.0.1", "API server"),
        ] {
            let err = policy.check("h", ip(addr)).unwrap_err();
            assert!(err.why.contains(why), "{addr}: {err}");
        }
        for addr in ["10.1.2.3", "192.168.0.1", "2001:db8::1", "8.8.8.8"] {
            assert_eq!(policy.check("h", ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn the_most_specific_range_decides_and_deny_wins_ties() {
        let allow =
            ["10.0.0.0/8", "127.0.0.1", "169.254.20.10"].map(|r| r.parse::<AllowRule>().unwrap());
        let deny = [
            parse_net("10.9.0.0/16").unwrap(),
            parse_net("10.0.0.0/8").unwrap(),
        ];
        let policy = EgressPolicy::new(&allow, &deny).unwrap();
        assert_eq!(
            policy.check("h", ip("10.1.2.3")).map_err(|e| e.why),
            Err("denied by --egress-deny".into()),
            "tie: deny"
        );
        let policy = EgressPolicy::new(&allow, &deny[..1]).unwrap();
        assert_eq!(policy.check("h", ip("10.1.2.3")), Ok(()));
        assert!(policy.check("h", ip("10.9.1.1")).is_err());
        assert_eq!(
            policy.check("h", ip("127.0.0.1")),
            Ok(()),
            "a /32 opens loopback"
        );
        assert!(policy.check("h", ip("127.0.0.2")).is_err());
        let loopback = EgressPolicy::new(&["127.0.0.0/8".parse().unwrap()], &[]).unwrap();
        assert_eq!(
            loopback.check("h", ip("127.0.0.9")),
            Ok(()),
            "naming the default-denied range opens it"
        );
        assert_eq!(
            policy.check("h", ip("169.254.20.10")),
            Ok(()),
            "node-local DNS"
        );
        assert!(
            policy.check("h", ip("8.8.8.8")).is_err(),
            "outside the allowed ranges"
        );
        // Metadata stays refused even when named.
        let named = EgressPolicy::new(&["169.254.169.254".parse().unwrap()], &[]).unwrap();
        assert!(named.check("h", ip("169.254.169.254")).is_err());
    }

    #[test]
    fn host_rules_allow_names_not_in_any_range() {
        let allow = ["prometheus.monitoring.svc", "*.metrics.example"]
            .map(|r| r.parse::<AllowRule>().unwrap());
        let policy = EgressPolicy::new(&allow, &[]).unwrap();
        assert_eq!(
            policy.check("prometheus.monitoring.svc", ip("10.0.0.9")),
            Ok(())
        );
        assert_eq!(
            policy.check("Prometheus.Monitoring.Svc.", ip("10.0.0.9")),
            Ok(())
        );
        assert_eq!(policy.check("a.metrics.example", ip("10.0.0.9")), Ok(()));
        assert!(policy.check("evilmetrics.example", ip("10.0.0.9")).is_err());
        assert!(policy.check("other.svc", ip("10.0.0.9")).is_err());
        // A name does not open a denied range or a refused address.
        assert!(policy
            .check("prometheus.monitoring.svc", ip("127.0.0.1"))
            .is_err());
        assert!(policy
            .check("prometheus.monitoring.svc", ip("169.254.169.254"))
            .is_err());
        assert!("not a host!".parse::<AllowRule>().is_err());
    }

    #[test]
    fn ip_literals_are_judged_after_the_url_parser_normalized_them() {
        let policy = EgressPolicy::default();
        for url in [
            "http://0x7f.1:9090/",
            "http://2852039166/",
            "http://0251.0376.0251.0376/",
            "http://[::ffff:a9fe:a9fe]/",
        ] {
            let url = reqwest::Url::parse(url).unwrap();
            assert!(policy.check_url(&url).is_err(), "{url}");
        }
        let named = reqwest::Url::parse("http://prometheus:9090/").unwrap();
        assert_eq!(
            policy.check_url(&named),
            Ok(()),
            "names wait for the resolver"
        );
    }
}
