//! Capacity planning: does a reservation fit on a node, and which node has the most room.
//! Pure functions over numbers the store reads inside its write transaction.

use crate::ids::NodeId;
use crate::resources::{Capacity, Overcommit, Reservation};

/// A node and what its sites already reserve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NodeLoad {
    pub node_id: NodeId,
    pub capacity: Capacity,
    pub overcommit: Overcommit,
    pub reserved: Reservation,
}

/// Which resource would overflow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not enough {resource} on the node: {requested} requested, {available} left")]
pub struct CapacityError {
    pub resource: &'static str,
    pub requested: u64,
    pub available: u64,
}

impl NodeLoad {
    /// What can still be promised: capacity × overcommit − reserved, per resource.
    pub fn room(&self) -> Reservation {
        let scaled = |amount: u64, ratio: f64| (amount as f64 * ratio).floor() as u64;
        Reservation {
            cpu_millis: scaled(u64::from(self.capacity.cpu_millis), self.overcommit.cpu)
                .saturating_sub(self.reserved.cpu_millis),
            memory_bytes: scaled(self.capacity.memory_bytes, self.overcommit.memory)
                .saturating_sub(self.reserved.memory_bytes),
            disk_bytes: self
                .capacity
                .disk_bytes
                .saturating_sub(self.reserved.disk_bytes),
        }
    }

    pub fn check_fits(&self, wanted: Reservation) -> Result<(), CapacityError> {
        let room = self.room();
        for (resource, requested, available) in [
            ("CPU (millicores)", wanted.cpu_millis, room.cpu_millis),
            ("memory (bytes)", wanted.memory_bytes, room.memory_bytes),
            ("disk (bytes)", wanted.disk_bytes, room.disk_bytes),
        ] {
            if requested > available {
                return Err(CapacityError {
                    resource,
                    requested,
                    available,
                });
            }
        }
        Ok(())
    }

    /// Share of the tightest resource still free after `wanted`, in [0, 1].
    fn headroom_after(&self, wanted: Reservation) -> f64 {
        let room = self.room();
        let share = |left: u64, want: u64, total: f64| {
            if total <= 0.0 {
                0.0
            } else {
                left.saturating_sub(want) as f64 / total
            }
        };
        let cpu_total = f64::from(self.capacity.cpu_millis) * self.overcommit.cpu;
        let mem_total = self.capacity.memory_bytes as f64 * self.overcommit.memory;
        share(room.cpu_millis, wanted.cpu_millis, cpu_total)
            .min(share(room.memory_bytes, wanted.memory_bytes, mem_total))
            .min(share(
                room.disk_bytes,
                wanted.disk_bytes,
                self.capacity.disk_bytes as f64,
            ))
    }
}

/// The node where `wanted` fits and leaves the most headroom (ties: the first listed).
pub fn choose_node(nodes: &[NodeLoad], wanted: Reservation) -> Option<NodeId> {
    nodes
        .iter()
        .filter(|n| n.check_fits(wanted).is_ok())
        .map(|n| (n.headroom_after(wanted), n.node_id))
        .fold(
            None,
            |best: Option<(f64, NodeId)>, (headroom, id)| match best {
                Some((h, _)) if h >= headroom => best,
                _ => Some((headroom, id)),
            },
        )
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(cpu: u32, mem_gib: u64, reserved_mem_gib: u64) -> NodeLoad {
        NodeLoad {
            node_id: NodeId::generate(),
            capacity: Capacity {
                cpu_millis: cpu,
                memory_bytes: mem_gib << 30,
                disk_bytes: 100 << 30,
            },
            overcommit: Overcommit {
                cpu: 2.0,
                memory: 1.0,
            },
            reserved: Reservation {
                cpu_millis: 0,
                memory_bytes: reserved_mem_gib << 30,
                disk_bytes: 0,
            },
        }
    }

    #[test]
    fn overcommit_scales_cpu_but_disk_is_hard() {
        let n = node(1000, 4, 0);
        assert!(
            n.check_fits(Reservation {
                cpu_millis: 2000,
                memory_bytes: 0,
                disk_bytes: 0
            })
            .is_ok()
        );
        let err = n
            .check_fits(Reservation {
                cpu_millis: 2001,
                memory_bytes: 0,
                disk_bytes: 0,
            })
            .unwrap_err();
        assert_eq!(err.available, 2000);
        assert!(
            n.check_fits(Reservation {
                cpu_millis: 0,
                memory_bytes: 0,
                disk_bytes: 101 << 30
            })
            .is_err()
        );
    }

    #[test]
    fn the_node_with_most_headroom_is_chosen_and_full_nodes_never() {
        let full = node(4000, 4, 4);
        let busy = node(4000, 8, 6);
        let idle = node(4000, 8, 1);
        let want = Reservation {
            cpu_millis: 100,
            memory_bytes: 1 << 30,
            disk_bytes: 1 << 30,
        };
        assert_eq!(choose_node(&[full, busy, idle], want), Some(idle.node_id));
        assert_eq!(choose_node(&[full], want), None);
    }
}
