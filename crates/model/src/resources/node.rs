//! Nodes: the machines sites run on, with what they offer and how they are reached.

use std::collections::BTreeSet;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Meta;
use crate::error::{FieldError, ValidationErrors};
use crate::ids::{NodeId, ProviderId};
use crate::text::Slug;

/// What a node offers. Reservations of its sites must stay within capacity × overcommit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
// Refused by the API (`strict`), not by serde: agents read these in documents too.
#[schemars(deny_unknown_fields)]
pub struct Capacity {
    #[schemars(range(min = 1, max = 1_024_000))]
    pub cpu_millis: u32,
    /// 64 MiB to 64 TiB.
    #[schemars(range(min = 67_108_864, max = 70_368_744_177_664_u64))]
    pub memory_bytes: u64,
    /// 1 GiB to 1 PiB.
    #[schemars(range(min = 1_073_741_824, max = 1_125_899_906_842_624_u64))]
    pub disk_bytes: u64,
}

/// How far CPU and memory may be promised beyond the hardware (disk never is: quotas are hard).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
// Refused by the API (`strict`), not by serde: agents read these in documents too.
#[schemars(deny_unknown_fields)]
pub struct Overcommit {
    #[schemars(range(min = 1, max = 16))]
    pub cpu: f64,
    #[schemars(range(min = 1, max = 16))]
    pub memory: f64,
}

impl Default for Overcommit {
    fn default() -> Self {
        Self {
            cpu: 4.0,
            memory: 1.0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeInput {
    pub provider_id: ProviderId,
    /// Lowercase letters, digits and hyphens; unique.
    pub name: String,
    #[serde(default)]
    pub public_addresses: Vec<String>,
    pub capacity: Capacity,
    #[serde(default)]
    pub overcommit: Overcommit,
    /// Opt in to the node's input filter: the host's own services (SSH, the agent's ports)
    /// answer only `input_allowed` and the co-op's other nodes; the ingress stays public.
    #[serde(default)]
    pub input_filter: bool,
    /// Networks or addresses admins reach the node from (`198.51.100.0/24`, `2001:db8::7`).
    #[serde(default)]
    pub input_allowed: Vec<String>,
}

/// The largest memory and disk a node may declare (beyond any machine, well within what the
/// database stores).
pub const MAX_NODE_MEMORY: u64 = 64 << 40;
pub const MAX_NODE_DISK: u64 = 1 << 50;

/// The most networks an input filter's allow list holds.
pub const MAX_INPUT_ALLOWED: usize = 256;

#[derive(Clone, Debug, PartialEq)]
pub struct NewNode {
    pub provider_id: ProviderId,
    pub name: Slug,
    pub public_addresses: Vec<IpAddr>,
    pub capacity: Capacity,
    pub overcommit: Overcommit,
    pub input_filter: bool,
    pub input_allowed: Vec<crate::Prefix>,
}

impl NodeInput {
    pub fn validate(self) -> Result<NewNode, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = errors.check("name", Slug::parse(&self.name));
        let mut addresses = BTreeSet::new();
        for (i, raw) in self.public_addresses.iter().enumerate() {
            if let Some(address) =
                errors.check(&format!("public_addresses[{i}]"), parse_address(raw))
            {
                addresses.insert(address);
            }
        }
        let cap = self.capacity;
        if cap.cpu_millis == 0 || cap.cpu_millis > 1_024_000 {
            errors.push(FieldError::new(
                "capacity.cpu_millis",
                "range",
                "between 1 and 1,024,000 millicores",
            ));
        }
        if !((64 << 20)..=MAX_NODE_MEMORY).contains(&cap.memory_bytes) {
            errors.push(FieldError::new(
                "capacity.memory_bytes",
                "range",
                "between 64 MiB and 64 TiB",
            ));
        }
        if !((1 << 30)..=MAX_NODE_DISK).contains(&cap.disk_bytes) {
            errors.push(FieldError::new(
                "capacity.disk_bytes",
                "range",
                "between 1 GiB and 1 PiB",
            ));
        }
        for (field, ratio) in [
            ("overcommit.cpu", self.overcommit.cpu),
            ("overcommit.memory", self.overcommit.memory),
        ] {
            if !(1.0..=16.0).contains(&ratio) {
                errors.push(FieldError::new(field, "range", "a ratio between 1 and 16"));
            }
        }
        let mut allowed = BTreeSet::new();
        for (i, raw) in self.input_allowed.iter().enumerate() {
            if let Some(prefix) = errors.check(
                &format!("input_allowed[{i}]"),
                crate::Prefix::parse_or_host(raw),
            ) {
                allowed.insert(prefix);
            }
        }
        if self.input_allowed.len() > MAX_INPUT_ALLOWED {
            errors.push(FieldError::new(
                "input_allowed",
                "input_allowed.too_many",
                format!("at most {MAX_INPUT_ALLOWED} networks"),
            ));
        }
        if self.input_filter && self.input_allowed.is_empty() {
            errors.push(FieldError::new(
                "input_allowed",
                "input_allowed.empty",
                "list the networks admins reach the node from, or the filter shuts them out",
            ));
        }
        errors.finish(|| {
            Some(NewNode {
                provider_id: self.provider_id,
                name: name?,
                public_addresses: addresses.into_iter().collect(),
                capacity: cap,
                overcommit: self.overcommit,
                input_filter: self.input_filter,
                input_allowed: allowed.into_iter().collect(),
            })
        })
    }
}

fn parse_address(raw: &str) -> Result<IpAddr, FieldError> {
    let address: IpAddr = raw.trim().parse().map_err(|_| {
        FieldError::new(
            "",
            "ip.invalid",
            "an IPv4 or IPv6 address such as 203.0.113.7",
        )
    })?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(FieldError::new(
            "",
            "ip.unusable",
            "this address cannot be a node's address",
        ));
    }
    Ok(address)
}

#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct Node {
    pub id: NodeId,
    pub provider_id: ProviderId,
    pub name: Slug,
    pub public_addresses: Vec<IpAddr>,
    pub capacity: Capacity,
    pub overcommit: Overcommit,
    #[serde(default)]
    pub input_filter: bool,
    #[serde(default)]
    pub input_allowed: Vec<crate::Prefix>,
    #[serde(flatten)]
    pub meta: Meta,
}

impl Node {
    pub fn to_input(&self) -> NodeInput {
        NodeInput {
            provider_id: self.provider_id,
            name: self.name.to_string(),
            public_addresses: self
                .public_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            capacity: self.capacity,
            overcommit: self.overcommit,
            input_filter: self.input_filter,
            input_allowed: self.input_allowed.iter().map(ToString::to_string).collect(),
        }
    }
}
