//! The node's network: alveole's nftables table (`routing`), the public addresses on the
//! uplink (`uplink`), and the input filter applied commit-confirmed (`confirm`).

pub mod confirm;
pub mod fake;
pub mod routing;
pub mod uplink;
