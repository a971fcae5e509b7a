//! Addresses and pod identities: the one place that decides whether two address forms name the
//! same data pod (DESIGN section 2, rule 7).
//!
//! Sentinels announce a master by whatever form it was registered or announced with: a pod IP, a
//! hostname (with or without the trailing dot, in any case), an IPv6 literal with or without
//! brackets, or a node IP and NodePort in front of one pod. Comparing those as raw strings makes one
//! master look like two and turns agreement into a false split. [`Addr`] normalises the forms that
//! are equal by definition; [`PodAliases`] maps the forms that are equal only by deployment (an IP
//! and a hostname of the same pod, a node port) to a [`PodId`]. Nothing here resolves names: this
//! module is pure, and DNS answers change.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Why an announced address could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// The host part is empty (or only a dot).
    #[error("empty host")]
    EmptyHost,
    /// The host is neither an IP literal nor a plausible DNS name.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// The port is missing, not a number, or zero.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// A `host:port` string had no port.
    #[error("missing port in {0:?}")]
    MissingPort(String),
}

/// The host half of an address, normalised so that equal hosts compare equal.
///
/// Ordering puts IP literals before names; it exists only to make every list built from hosts
/// deterministic, not to rank them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// An IP literal. IPv4-mapped IPv6 (`::ffff:10.0.0.1`) is stored as the IPv4 address, since
    /// both reach the same socket.
    Ip(IpAddr),
    /// A DNS name: ASCII lowercase, without the trailing root dot.
    Name(HostName),
}

/// A validated, normalised DNS name. Only [`Host::parse`] makes one, so a `Host` can never hold
/// an unnormalised name that compares unequal to its normal form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// The name, lowercase, without the trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Host {
    /// Parses a host as a sentinel or a configuration file may spell it: `10.0.0.1`, `::1`,
    /// `[::1]`, `Valkey-0.Headless.NS.svc.cluster.local.`.
    pub fn parse(raw: &str) -> Result<Self, AddrError> {
        let trimmed = raw.trim();
        let unbracketed = match trimmed.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| AddrError::InvalidHost(raw.to_owned()))?,
            None => trimmed,
        };
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip.to_canonical()));
        }
        if unbracketed.len() != trimmed.len() {
            // Brackets are only for IPv6 literals.
            return Err(AddrError::InvalidHost(raw.to_owned()));
        }
        let name = unbracketed.strip_suffix('.').unwrap_or(unbracketed);
        if name.is_empty() {
            return Err(AddrError::EmptyHost);
        }
        if !is_plausible_dns_name(name) {
            return Err(AddrError::InvalidHost(raw.to_owned()));
        }
        Ok(Host::Name(HostName(name.to_ascii_lowercase())))
    }
}

/// Labels of letters, digits, `-` and `_`, none empty, and a last label that is not all digits:
/// `010.0.0.1` must not silently become a host *name* distinct from the IP `10.0.0.1`.
fn is_plausible_dns_name(name: &str) -> bool {
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let last_label_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && name.len() <= 253 && !last_label_numeric
}

/// Shows the host the way a sentinel sends it in `GET-MASTER-ADDR-BY-NAME`: IPv6 without brackets.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// A normalised `host:port` as announced by a sentinel or configured by an operator.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Addr {
    host: Host,
    port: u16,
}

impl Addr {
    /// Builds an address from a host and a port. An IPv4-mapped IPv6 host is stored as IPv4
    /// here too, so no constructor can bypass the normalisation.
    pub fn new(host: Host, port: u16) -> Self {
        let host = match host {
            Host::Ip(ip) => Host::Ip(ip.to_canonical()),
            name @ Host::Name(_) => name,
        };
        Self { host, port }
    }

    /// Builds an address from the two bulk strings a sentinel replies with (`ip`, `port`).
    pub fn from_parts(host: &str, port: &str) -> Result<Self, AddrError> {
        let port = parse_port(port)?;
        Ok(Self::new(Host::parse(host)?, port))
    }

    /// The normalised host.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

fn parse_port(raw: &str) -> Result<u16, AddrError> {
    match raw.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(AddrError::InvalidPort(raw.to_owned())),
    }
}

/// Parses `host:port`, `[v6]:port`; a bare IPv6 literal needs the brackets to carry a port.
impl From<std::net::SocketAddr> for Addr {
    fn from(socket: std::net::SocketAddr) -> Self {
        Self::new(Host::Ip(socket.ip()), socket.port())
    }
}

impl FromStr for Addr {
    type Err = AddrError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let trimmed = raw.trim();
        let (host, port) = if trimmed.starts_with('[') {
            let close = trimmed
                .find(']')
                .ok_or_else(|| AddrError::InvalidHost(raw.to_owned()))?;
            let port = trimmed[close + 1..]
                .strip_prefix(':')
                .ok_or_else(|| AddrError::MissingPort(raw.to_owned()))?;
            (&trimmed[..=close], port)
        } else {
            let (host, port) = trimmed
                .rsplit_once(':')
                .ok_or_else(|| AddrError::MissingPort(raw.to_owned()))?;
            if host.contains(':') {
                // `::1:6379` is ambiguous; require `[::1]:6379`.
                return Err(AddrError::InvalidHost(raw.to_owned()));
            }
            (host, port)
        };
        Self::from_parts(host, port)
    }
}

impl Addr {
    /// Parses `host:port`, or a bare host with `default_port`: Kubernetes hands out pod lists
    /// as bare FQDNs, and a service's port is known (6379 for data pods, 26379 for sentinels),
    /// so a list can be passed as given. A bare IPv6 literal (`::1`) takes the default port too;
    /// one with a port must be bracketed, as for [`FromStr`].
    pub fn parse_with_default_port(raw: &str, default_port: u16) -> Result<Self, AddrError> {
        let trimmed = raw.trim();
        let bare = if trimmed.starts_with('[') {
            trimmed.ends_with(']')
        } else {
            match trimmed.matches(':').count() {
                0 => true,
                1 => false,
                _ => trimmed.parse::<IpAddr>().is_ok(),
            }
        };
        if bare {
            Self::from_parts(trimmed, &default_port.to_string())
        } else {
            trimmed.parse()
        }
    }
}

/// `host:port`, with brackets around IPv6 so the text parses back to the same address.
impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

/// The name of a data pod (`<cluster>-valkey-1`): what an address ultimately stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodId(String);

impl PodId {
    /// Wraps a pod name. Kubernetes pod names are lowercase already; lowercasing makes a
    /// hand-typed alias match too.
    pub fn new(name: impl AsRef<str>) -> Self {
        Self(name.as_ref().trim().to_ascii_lowercase())
    }

    /// The pod name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PodId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A master's server run id (`run_id` in `INFO server`, `runid` in a sentinel record): 40 hex
/// characters today, accepted in either case and of any length, stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(String);

/// Why a run id was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid run id {0:?}: expected hexadecimal digits")]
pub struct RunIdError(pub String);

impl RunId {
    /// Parses a run id. An empty string is not an error but "unknown" (a sentinel that has not
    /// yet had an `INFO` reply from the master sends `runid` empty), hence the `Option`.
    pub fn parse(raw: &str) -> Result<Option<Self>, RunIdError> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Some(Self(raw.to_ascii_lowercase())))
        } else {
            Err(RunIdError(raw.to_owned()))
        }
    }

    /// The run id, lowercase.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh 40-hex run id, for an instance started without one (the coordinator's own
    /// `SENTINEL MYID`). Unique per process start, which is what a sentinel's run id is; not a
    /// secret, so std's randomly keyed hasher is entropy enough.
    pub fn random() -> Self {
        use std::collections::hash_map::RandomState;
        use std::hash::{BuildHasher, Hasher};

        let mut id = String::with_capacity(40);
        let mut round = 0u64;
        while id.len() < 40 {
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(round);
            hasher.write_u32(std::process::id());
            id.push_str(&format!("{:016x}", hasher.finish()));
            round += 1;
        }
        id.truncate(40);
        Self(id)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who a master address stands for, once aliases are applied: the unit sentinels agree *on*.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// The address is a known alias of this pod.
    Pod(PodId),
    /// No alias is known; the normalised address stands for itself.
    Addr(Addr),
}

/// Why an alias could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    /// The address already stands for another pod: the table would make one address two pods.
    #[error("{addr} is already an alias of {existing}, cannot also alias {requested}")]
    Conflict {
        /// The announced address.
        addr: Addr,
        /// The pod it already maps to.
        existing: PodId,
        /// The pod the caller tried to map it to.
        requested: PodId,
    },
}

/// Maps every address form a sentinel may announce to the pod behind it.
///
/// A node IP is shared by several pods, but a node IP *and port* (NodePort) is one pod's: the
/// table is keyed by the whole address, and refuses to map one address to two pods rather than
/// guess which one a sentinel meant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodAliases {
    by_addr: BTreeMap<Addr, PodId>,
}

impl PodAliases {
    /// An empty table: every address stands for itself.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `addr` reaches `pod`. Adding the same pair twice is fine.
    pub fn insert(&mut self, addr: Addr, pod: PodId) -> Result<(), AliasError> {
        match self.by_addr.get(&addr) {
            Some(existing) if *existing != pod => Err(AliasError::Conflict {
                addr,
                existing: existing.clone(),
                requested: pod,
            }),
            Some(_) => Ok(()),
            None => {
                self.by_addr.insert(addr, pod);
                Ok(())
            }
        }
    }

    /// The pod an address is known to reach.
    pub fn pod_of(&self, addr: &Addr) -> Option<&PodId> {
        self.by_addr.get(addr)
    }

    /// The identity two reports must share to name the same master.
    pub fn identify(&self, addr: &Addr) -> Identity {
        match self.pod_of(addr) {
            Some(pod) => Identity::Pod(pod.clone()),
            None => Identity::Addr(addr.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(raw: &str) -> Addr {
        raw.parse().expect("valid test address")
    }

    #[test]
    fn hostnames_compare_case_insensitively_and_without_the_root_dot() {
        assert_eq!(
            addr("Valkey-0.Headless.NS.svc.cluster.local.:6379"),
            addr("valkey-0.headless.ns.svc.cluster.local:6379")
        );
    }

    #[test]
    fn a_bare_host_from_a_kubernetes_pod_list_takes_the_default_port() {
        let fqdn = "c-valkey-0.c-valkey-headless.demo.svc.cluster.local";
        assert_eq!(
            Addr::parse_with_default_port(fqdn, 6379).unwrap(),
            addr(&format!("{fqdn}:6379"))
        );
        assert_eq!(
            Addr::parse_with_default_port("10.0.0.7:7000", 6379).unwrap(),
            addr("10.0.0.7:7000")
        );
        assert_eq!(
            Addr::parse_with_default_port("fd00::1", 26379).unwrap(),
            addr("[fd00::1]:26379")
        );
        assert_eq!(
            Addr::parse_with_default_port("[fd00::1]", 26379).unwrap(),
            addr("[fd00::1]:26379")
        );
        assert_eq!(
            Addr::parse_with_default_port("[fd00::1]:7000", 26379).unwrap(),
            addr("[fd00::1]:7000")
        );
        assert!(Addr::parse_with_default_port("host:0", 6379).is_err());
        assert!(Addr::parse_with_default_port("", 6379).is_err());
    }

    #[test]
    fn ipv6_with_and_without_brackets_is_one_address() {
        let bracketed = Addr::from_parts("[fd00::1]", "6379").unwrap();
        let bare = Addr::from_parts("fd00::1", "6379").unwrap();
        assert_eq!(bracketed, bare);
        assert_eq!(bare, addr("[FD00:0::1]:6379"));
        assert_eq!(bare.to_string(), "[fd00::1]:6379");
        assert_eq!(bare.host().to_string(), "fd00::1");
    }

    #[test]
    fn ipv4_mapped_ipv6_is_the_ipv4_address() {
        assert_eq!(addr("[::ffff:10.0.0.7]:6379"), addr("10.0.0.7:6379"));
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert_eq!(Addr::new(Host::Ip(mapped), 6379), addr("10.0.0.7:6379"));
    }

    #[test]
    fn display_round_trips() {
        for raw in ["10.0.0.1:6379", "[::1]:26379", "valkey-0.svc:6379"] {
            assert_eq!(addr(raw).to_string(), raw);
            assert_eq!(addr(&addr(raw).to_string()), addr(raw));
        }
    }

    #[test]
    fn malformed_addresses_are_rejected() {
        for raw in [
            "",
            ":6379",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "::1:6379",
            "[::1]6379",
            "[host]:1",
            "a..b:1",
            "010.0.0.1:6379",
            "sp ace:1",
            "[::1:1",
        ] {
            assert!(raw.parse::<Addr>().is_err(), "{raw:?} should be rejected");
        }
        assert_eq!(Host::parse("."), Err(AddrError::EmptyHost));
    }

    #[test]
    fn aliases_map_every_announced_form_to_one_pod() {
        let pod = PodId::new("c-valkey-1");
        let mut aliases = PodAliases::new();
        aliases.insert(addr("10.1.2.3:6379"), pod.clone()).unwrap();
        aliases
            .insert(addr("c-valkey-1.c-valkey-headless:6379"), pod.clone())
            .unwrap();
        aliases
            .insert(addr("192.168.0.9:31001"), pod.clone())
            .unwrap();
        assert_eq!(aliases.insert(addr("10.1.2.3:6379"), pod.clone()), Ok(()));
        for form in [
            "10.1.2.3:6379",
            "C-Valkey-1.c-valkey-headless.:6379",
            "192.168.0.9:31001",
        ] {
            assert_eq!(aliases.identify(&addr(form)), Identity::Pod(pod.clone()));
        }
        // Same node IP, another NodePort: another pod, not this one.
        assert_eq!(
            aliases.identify(&addr("192.168.0.9:31002")),
            Identity::Addr(addr("192.168.0.9:31002"))
        );
    }

    #[test]
    fn one_address_cannot_alias_two_pods() {
        let mut aliases = PodAliases::new();
        aliases
            .insert(addr("192.168.0.9:31001"), PodId::new("c-valkey-0"))
            .unwrap();
        let err = aliases
            .insert(addr("192.168.0.9:31001"), PodId::new("c-valkey-1"))
            .unwrap_err();
        assert!(matches!(err, AliasError::Conflict { .. }));
        assert_eq!(
            aliases.pod_of(&addr("192.168.0.9:31001")),
            Some(&PodId::new("c-valkey-0"))
        );
    }

    #[test]
    fn run_ids_are_hex_of_any_case_and_empty_means_unknown() {
        assert_eq!(RunId::parse(""), Ok(None));
        assert_eq!(
            RunId::parse("ABCdef0123").unwrap().unwrap().as_str(),
            "abcdef0123"
        );
        for bad in ["xyz", "abc d", "abc\n", "12g4"] {
            assert!(RunId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
