//! The co-op's addresses: pools, allocations and moves, through the API and the page.

use alveole_model::{AddressMove, IpAllocation};

use super::{Access, Delete, Get, Post, Table};
use crate::api::addresses::{self, NewAllocation, NewPool};
use crate::pages;
use crate::service::addresses::{MoveRequest, PoolView};

pub(super) fn api(t: &mut Table) {
    t.api(Get, "/api/v1/ip-pools", addresses::pools)
        .named(
            "list_ip_pools",
            "The co-op's address pools, with how many addresses are used and free",
        )
        .access(Access::Read)
        .returns::<Vec<PoolView>>(200)
        .errors(&[401, 403]);
    t.api(Post, "/api/v1/ip-pools", addresses::create_pool)
        .named(
            "create_ip_pool",
            "A pool of addresses (a prefix) at a provider",
        )
        .takes::<NewPool>()
        .returns::<PoolView>(201)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Delete, "/api/v1/ip-pools/{id}", addresses::delete_pool)
        .named(
            "delete_ip_pool",
            "Removes a pool none of whose addresses is allocated",
        )
        .status(204)
        .errors(&[400, 401, 403, 404, 409]);
    t.api(Get, "/api/v1/ip-allocations", addresses::allocations)
        .named(
            "list_ip_allocations",
            "Every allocated address: its pool, node and dedicated site",
        )
        .access(Access::Read)
        .returns::<Vec<IpAllocation>>(200)
        .errors(&[401, 403]);
    t.api(
        Post,
        "/api/v1/ip-pools/{id}/allocations",
        addresses::allocate,
    )
    .named(
        "allocate_ip",
        "Allocates an address of the pool (given, or the first free) to a node or a site",
    )
    .takes::<NewAllocation>()
    .returns::<IpAllocation>(201)
    .errors(&[400, 401, 403, 404, 409]);
    t.api(
        Delete,
        "/api/v1/ip-allocations/{address}",
        addresses::release,
    )
    .named("release_ip", "Releases an allocated address")
    .status(204)
    .errors(&[400, 401, 403, 404]);
    t.api(
        Post,
        "/api/v1/ip-allocations/{address}/move",
        addresses::move_address,
    )
    .named(
        "move_ip",
        "Moves an address to another node: the old node lets it go, the provider routes it, \
             then the new node announces it (force: without waiting for the old node)",
    )
    .takes::<MoveRequest>()
    .returns::<AddressMove>(202)
    .errors(&[400, 401, 403, 404, 409]);
    t.api(
        Delete,
        "/api/v1/ip-allocations/{address}/move",
        addresses::cancel_move,
    )
    .named(
        "cancel_ip_move",
        "Gives a moving address back to its old node",
    )
    .status(204)
    .errors(&[400, 401, 403, 404]);
    t.api(Get, "/api/v1/address-moves", addresses::moves)
        .named(
            "list_address_moves",
            "Addresses on their way to another node, with why a move is not finished",
        )
        .access(Access::Read)
        .returns::<Vec<AddressMove>>(200)
        .errors(&[401, 403]);
}

pub(super) fn pages(t: &mut Table) {
    use pages::addresses as page;
    t.page(Get, "/addresses", page::page)
        .named("page_addresses", "")
        .access(Access::Read);
    t.page(Post, "/addresses/pools", page::create_pool)
        .named("page_addresses_pool", "");
    t.page(Post, "/addresses/allocations", page::allocate)
        .named("page_addresses_allocate", "");
    t.page(
        Post,
        "/addresses/allocations/{address}/release",
        page::release,
    )
    .named("page_addresses_release", "");
    t.page(
        Post,
        "/addresses/allocations/{address}/move",
        page::move_address,
    )
    .named("page_addresses_move", "");
    t.page(
        Post,
        "/addresses/allocations/{address}/cancel-move",
        page::cancel_move,
    )
    .named("page_addresses_cancel_move", "");
}
