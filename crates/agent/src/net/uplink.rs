//! The node's public addresses on its uplink. The agent adds the addresses the panel gives the
//! node, announces each new one so that neighbours (the provider's router, a client on the
//! segment) send its traffic here at once, and removes those taken away, forgetting their
//! tracked connections (the old NAT). Addresses it did not add itself are never removed: it
//! keeps the list of those it added in its state directory, written before each addition.
//!
//! A pass first lets addresses go ([`Uplink::release`]), then the node's table changes, then
//! it takes new ones ([`Uplink::take`]): a new address answers only once the table routes it.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use crate::control::files::StateFiles;

/// What the kernel says of an address on the uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressState {
    /// Answers.
    Ready,
    /// IPv6 duplicate address detection is running: answers within a second or so.
    Tentative,
    /// Another host on the segment answers for it (IPv6 duplicate address detection failed).
    Duplicate,
}

/// The side effects on one network interface.
pub trait Interface: Send + Sync {
    /// Readies the interface for announcements (IPv6: unsolicited neighbour advertisements).
    fn prepare(&self) -> Result<(), UplinkError>;
    /// The global addresses configured on the interface.
    fn addresses(&self) -> Result<Vec<(IpAddr, AddressState)>, UplinkError>;
    fn add(&self, address: IpAddr) -> Result<(), UplinkError>;
    fn remove(&self, address: IpAddr) -> Result<(), UplinkError>;
    /// Tells neighbours the address is here now (IPv4: a gratuitous ARP request; IPv6: the
    /// kernel sends an unsolicited neighbour advertisement once duplicate address detection
    /// has passed, which [`Interface::prepare`] enables).
    fn announce(&self, address: IpAddr) -> Result<(), UplinkError>;
    /// Drops the tracked connections to and from the address.
    fn forget_connections(&self, address: IpAddr) -> Result<(), UplinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("cannot run {program}: {error}")]
    Spawn {
        program: &'static str,
        error: std::io::Error,
    },
    #[error("{program} refused: {message}")]
    Refused {
        program: &'static str,
        message: String,
    },
    #[error("cannot read what `ip` printed: {0}")]
    Unreadable(String),
    #[error("cannot keep the list of added addresses in {path}: {error}")]
    Ledger {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// What one step did: what the uplink answers for afterwards, and what went wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UplinkReport {
    /// The addresses the uplink answers for (or is about to: IPv6 under duplicate address
    /// detection). When the uplink cannot be read, every address alveole added or wants:
    /// the panel must never think an address let go when it may not be.
    pub held: Vec<IpAddr>,
    pub problems: Vec<String>,
}

/// The addresses alveole holds on one interface.
pub struct Uplink {
    interface: Box<dyn Interface>,
    /// Keeps the addresses alveole added (`uplink-addresses`, one per line): only those are
    /// ever removed.
    files: Arc<dyn StateFiles>,
}

const ADDED: &str = "uplink-addresses";

impl std::fmt::Debug for Uplink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uplink")
            .field("added", &self.files.locate(ADDED))
            .finish_non_exhaustive()
    }
}

impl Uplink {
    pub fn new(interface: Box<dyn Interface>, files: Arc<dyn StateFiles>) -> Self {
        Self { interface, files }
    }

    fn added(&self) -> Result<BTreeSet<IpAddr>, UplinkError> {
        match self.files.read(ADDED) {
            // A line that is not an address cannot be one alveole added.
            Ok(Some(bytes)) => Ok(String::from_utf8_lossy(&bytes)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()),
            Ok(None) => Ok(BTreeSet::new()),
            Err(error) => Err(UplinkError::Ledger {
                path: self.files.locate(ADDED),
                error,
            }),
        }
    }

    fn keep_added(&self, added: &BTreeSet<IpAddr>) -> Result<(), UplinkError> {
        let text: String = added.iter().map(|a| format!("{a}\n")).collect();
        self.files
            .write(ADDED, text.as_bytes())
            .map_err(|error| UplinkError::Ledger {
                path: self.files.locate(ADDED),
                error,
            })
    }

    /// The addresses on the interface now, whatever their state.
    fn present(&self) -> Result<BTreeSet<IpAddr>, UplinkError> {
        Ok(self
            .interface
            .addresses()?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    /// Removes the addresses alveole added that are no longer wanted, and forgets their
    /// connections.
    pub fn release(&self, wanted: &[IpAddr]) -> UplinkReport {
        let mut problems = Vec::new();
        if let Err(error) = self.release_unwanted(wanted) {
            problems.push(error.to_string());
        }
        self.report(wanted, problems)
    }

    fn release_unwanted(&self, wanted: &[IpAddr]) -> Result<(), UplinkError> {
        let mut added = self.added()?;
        let present = self.present()?;
        let unwanted: Vec<IpAddr> = added
            .iter()
            .filter(|a| !wanted.contains(a))
            .copied()
            .collect();
        for address in unwanted {
            if present.contains(&address) {
                self.interface.remove(address)?;
                tracing::info!(%address, "let the address go");
            }
            self.interface.forget_connections(address)?;
            added.remove(&address);
            self.keep_added(&added)?;
        }
        Ok(())
    }

    /// Adds and announces the wanted addresses the uplink lacks.
    pub fn take(&self, wanted: &[IpAddr]) -> UplinkReport {
        let mut problems = Vec::new();
        if let Err(error) = self.take_wanted(wanted, &mut problems) {
            problems.push(error.to_string());
        }
        self.report(wanted, problems)
    }

    /// Both steps, when there is no table to change between them (the engine is away).
    pub fn converge(&self, wanted: &[IpAddr]) -> UplinkReport {
        let mut released = self.release(wanted);
        let mut taken = self.take(wanted);
        released.problems.append(&mut taken.problems);
        taken.problems = released.problems;
        taken
    }

    fn take_wanted(
        &self,
        wanted: &[IpAddr],
        problems: &mut Vec<String>,
    ) -> Result<(), UplinkError> {
        let present = self.present()?;
        let missing: Vec<IpAddr> = wanted
            .iter()
            .filter(|a| !present.contains(a))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        self.interface.prepare()?;
        let mut added = self.added()?;
        for address in missing {
            // Written first: an address added before a crash is still known to be ours.
            if added.insert(address) {
                self.keep_added(&added)?;
            }
            // Connections tracked when the address was here before are stale.
            self.interface.forget_connections(address)?;
            self.interface.add(address)?;
            tracing::info!(%address, "took the address");
            if let Err(error) = self.interface.announce(address) {
                // The address answers anyway; neighbours learn it when their cache expires.
                problems.push(format!("{address} was not announced: {error}"));
            }
        }
        Ok(())
    }

    fn report(&self, wanted: &[IpAddr], mut problems: Vec<String>) -> UplinkReport {
        let held = match self.interface.addresses() {
            Ok(addresses) => {
                for (address, state) in &addresses {
                    if *state == AddressState::Duplicate {
                        problems.push(format!(
                            "another host on the segment answers for {address}: this node does not"
                        ));
                    }
                }
                addresses
                    .into_iter()
                    .filter(|(_, state)| *state != AddressState::Duplicate)
                    .map(|(a, _)| a)
                    .collect()
            }
            Err(error) => {
                problems.push(error.to_string());
                let mut maybe: BTreeSet<IpAddr> = self.added().unwrap_or_default();
                maybe.extend(wanted);
                maybe.into_iter().collect()
            }
        };
        UplinkReport { held, problems }
    }
}

/// A network interface name as the kernel accepts it.
pub fn valid_interface_name(name: &str) -> bool {
    (1..16).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        && name != "."
        && name != ".."
}

/// An interface of the host (or, for tests, of a named network namespace), changed with
/// `ip`, `arping` (iputils) and `conntrack` (conntrack-tools).
#[derive(Clone, Debug)]
pub struct IpInterface {
    device: String,
    netns: Option<String>,
}

impl IpInterface {
    /// `None` when `device` is not an interface name.
    pub fn new(device: &str, netns: Option<&str>) -> Option<Self> {
        valid_interface_name(device).then(|| Self {
            device: device.to_owned(),
            netns: netns.map(str::to_owned),
        })
    }

    fn run(&self, program: &'static str, args: &[&str]) -> Result<String, UplinkError> {
        let mut command = match &self.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, program]);
                c
            }
            None => Command::new(program),
        };
        let output = command
            .args(args)
            .output()
            .map_err(|error| UplinkError::Spawn { program, error })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let stdout = String::from_utf8_lossy(&output.stdout);
            Err(UplinkError::Refused {
                program,
                message: format!("{}{}", stderr.trim(), stdout.trim()),
            })
        }
    }

    fn host_route(address: IpAddr) -> String {
        match address {
            IpAddr::V4(_) => format!("{address}/32"),
            IpAddr::V6(_) => format!("{address}/128"),
        }
    }
}

/// `ip -j address show`: the parts read here.
#[derive(serde::Deserialize)]
struct IpLink {
    #[serde(default)]
    addr_info: Vec<IpAddressInfo>,
}

#[derive(serde::Deserialize)]
struct IpAddressInfo {
    local: IpAddr,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    tentative: bool,
    #[serde(default)]
    dadfailed: bool,
}

/// The global addresses of an `ip -j address show dev X` listing.
pub fn parse_addresses(listing: &str) -> Result<Vec<(IpAddr, AddressState)>, UplinkError> {
    let links: Vec<IpLink> =
        serde_json::from_str(listing).map_err(|e| UplinkError::Unreadable(e.to_string()))?;
    Ok(links
        .into_iter()
        .flat_map(|link| link.addr_info)
        .filter(|info| info.scope == "global")
        .map(|info| {
            let state = if info.dadfailed {
                AddressState::Duplicate
            } else if info.tentative {
                AddressState::Tentative
            } else {
                AddressState::Ready
            };
            (info.local, state)
        })
        .collect())
}

impl Interface for IpInterface {
    fn prepare(&self) -> Result<(), UplinkError> {
        let key = format!("net.ipv6.conf.{}.ndisc_notify=1", self.device);
        self.run("sysctl", &["-q", "-w", &key]).map(|_| ())
    }

    fn addresses(&self) -> Result<Vec<(IpAddr, AddressState)>, UplinkError> {
        parse_addresses(&self.run("ip", &["-j", "address", "show", "dev", &self.device])?)
    }

    fn add(&self, address: IpAddr) -> Result<(), UplinkError> {
        let host = Self::host_route(address);
        match self.run("ip", &["address", "add", &host, "dev", &self.device]) {
            Err(UplinkError::Refused { message, .. }) if message.contains("File exists") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    fn remove(&self, address: IpAddr) -> Result<(), UplinkError> {
        let host = Self::host_route(address);
        match self.run("ip", &["address", "del", &host, "dev", &self.device]) {
            Err(UplinkError::Refused { message, .. })
                if message.contains("Cannot assign requested address") =>
            {
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    fn announce(&self, address: IpAddr) -> Result<(), UplinkError> {
        match address {
            IpAddr::V4(_) => self
                .run(
                    "arping",
                    &["-U", "-c", "1", "-I", &self.device, &address.to_string()],
                )
                .map(|_| ()),
            // The kernel announces it after duplicate address detection (`prepare`).
            IpAddr::V6(_) => Ok(()),
        }
    }

    fn forget_connections(&self, address: IpAddr) -> Result<(), UplinkError> {
        let family = match address {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        };
        let address = address.to_string();
        // Connections to the address (inbound, DNAT'd) and from it (egress SNAT'd to it).
        for direction in ["--orig-dst", "--reply-dst"] {
            match self.run("conntrack", &["-D", "-f", family, direction, &address]) {
                // conntrack fails when there was nothing to delete.
                Err(UplinkError::Refused { message, .. }) if message.contains("0 flow entries") => {
                }
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::files::MemoryFiles;
    use crate::net::fake::FakeInterface;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_added_addresses_are_removed_and_new_ones_are_announced_after_forgetting() {
        let recorded = Arc::new(FakeInterface::default());
        // The node's own address, configured by its admin.
        recorded.configure(ip("198.51.100.2"), AddressState::Ready);
        let uplink = Uplink::new(Box::new(recorded.clone()), Arc::new(MemoryFiles::default()));
        let wanted = [ip("203.0.113.10")];
        assert_eq!(uplink.release(&wanted).problems, Vec::<String>::new());
        let report = uplink.take(&wanted);
        assert_eq!(report.held, [ip("198.51.100.2"), ip("203.0.113.10")]);
        assert_eq!(
            recorded.take_log(),
            [
                "forget 203.0.113.10",
                "add 203.0.113.10",
                "announce 203.0.113.10"
            ]
        );
        assert_eq!(uplink.take(&wanted), report, "nothing to do twice");
        assert!(recorded.take_log().is_empty());

        // Let go: removed and forgotten; the admin's address stays, even when unwanted.
        let report = uplink.release(&[]);
        assert_eq!(report.held, [ip("198.51.100.2")]);
        assert_eq!(
            recorded.take_log(),
            ["remove 203.0.113.10", "forget 203.0.113.10"]
        );
        let report = uplink.release(&[]);
        assert_eq!(report.held, [ip("198.51.100.2")]);
    }

    #[test]
    fn an_address_another_host_answers_for_is_reported_not_held() {
        let recorded = Arc::new(FakeInterface::default());
        recorded.configure(ip("2001:db8::10"), AddressState::Duplicate);
        let report = Uplink::new(Box::new(recorded), Arc::new(MemoryFiles::default()))
            .take(&[ip("2001:db8::10")]);
        assert!(report.held.is_empty());
        assert!(report.problems[0].contains("2001:db8::10"), "{report:?}");
    }

    #[test]
    fn ip_listings_are_read_for_global_addresses_and_their_state() {
        let listing = r#"[{"ifindex":2,"ifname":"eth0","addr_info":[
            {"family":"inet","local":"203.0.113.2","prefixlen":24,"scope":"global"},
            {"family":"inet6","local":"2001:db8::10","prefixlen":128,"scope":"global","tentative":true},
            {"family":"inet6","local":"2001:db8::11","prefixlen":128,"scope":"global","tentative":true,"dadfailed":true},
            {"family":"inet6","local":"fe80::1","prefixlen":64,"scope":"link"}]}]"#;
        assert_eq!(
            parse_addresses(listing).unwrap(),
            [
                (ip("203.0.113.2"), AddressState::Ready),
                (ip("2001:db8::10"), AddressState::Tentative),
                (ip("2001:db8::11"), AddressState::Duplicate),
            ]
        );
        assert!(parse_addresses("not json").is_err());
    }

    #[test]
    fn interface_names_are_checked() {
        for good in ["eth0", "enp3s0f1", "br-lan", "vlan.42"] {
            assert!(IpInterface::new(good, None).is_some(), "{good}");
        }
        for bad in [
            "",
            "a-name-far-too-long",
            "eth0; rm",
            "..",
            "eth 0",
            "eth0/1",
        ] {
            assert!(IpInterface::new(bad, None).is_none(), "{bad}");
        }
    }
}
