//! What the API needs to know of each resource: names, filters, and which store calls.

use std::collections::BTreeMap;

use alveole_model::{
    Member, MemberId, MemberInput, NewMember, NewNode, NewProvider, NewSite, Node, NodeId,
    NodeInput, Provider, ProviderId, ProviderInput, Role, Site, SiteId, SiteInput, SitePhase,
    ValidationErrors, Wildcard,
};
use alveole_store::{
    AuditContext, MemberFilter, NodeFilter, Page, PageRequest, ProviderFilter, SiteFilter, Store,
    StoreResult,
};

use super::{BoxFuture, Resource, invalid};

fn parse_param<T>(
    errors: &mut ValidationErrors,
    params: &BTreeMap<String, String>,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    expected: &str,
) -> Option<T> {
    let raw = params.get(name)?;
    errors.check(
        name,
        parse(raw).ok_or_else(|| invalid(name, "filter.invalid", expected)),
    )
}

/// Providers.
#[derive(Debug)]
pub struct Providers;

impl Resource for Providers {
    const KIND: &'static str = "provider";
    const PLURAL: &'static str = "providers";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("country", "ISO 3166-1 alpha-2 code")];
    type Id = ProviderId;
    type Item = Provider;
    type Input = ProviderInput;
    type New = NewProvider;
    type Filter = ProviderFilter;

    fn parse_filter(params: &BTreeMap<String, String>) -> Result<ProviderFilter, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let country = parse_param(
            &mut errors,
            params,
            "country",
            |s| alveole_model::CountryCode::parse(s).ok(),
            "a country code",
        );
        errors.finish(|| {
            Some(ProviderFilter {
                country: country.map(|c| c.to_string()),
            })
        })
    }
    fn validate(
        input: ProviderInput,
        _: Option<&Provider>,
    ) -> Result<NewProvider, ValidationErrors> {
        input.validate()
    }
    fn to_input(item: &Provider) -> ProviderInput {
        item.to_input()
    }
    fn id_of(item: &Provider) -> ProviderId {
        item.id
    }
    fn list<'a>(
        store: &'a dyn Store,
        f: &'a ProviderFilter,
        p: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Provider>>> {
        store.list_providers(f, p)
    }
    fn get<'a>(store: &'a dyn Store, id: ProviderId) -> BoxFuture<'a, StoreResult<Provider>> {
        store.get_provider(id)
    }
    fn create<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        new: NewProvider,
    ) -> BoxFuture<'a, StoreResult<Provider>> {
        store.create_provider(ctx, new)
    }
    fn update<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: ProviderId,
        v: i64,
        new: NewProvider,
    ) -> BoxFuture<'a, StoreResult<Provider>> {
        store.update_provider(ctx, id, v, new)
    }
    fn delete<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: ProviderId,
        v: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        store.delete_provider(ctx, id, v)
    }
}

/// Nodes.
#[derive(Debug)]
pub struct Nodes;

impl Resource for Nodes {
    const KIND: &'static str = "node";
    const PLURAL: &'static str = "nodes";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("provider_id", "only the nodes of this provider")];
    type Id = NodeId;
    type Item = Node;
    type Input = NodeInput;
    type New = NewNode;
    type Filter = NodeFilter;

    fn parse_filter(params: &BTreeMap<String, String>) -> Result<NodeFilter, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let provider_id = parse_param(
            &mut errors,
            params,
            "provider_id",
            |s| s.parse().ok(),
            "a provider id",
        );
        errors.finish(|| Some(NodeFilter { provider_id }))
    }
    fn validate(input: NodeInput, _: Option<&Node>) -> Result<NewNode, ValidationErrors> {
        input.validate()
    }
    fn to_input(item: &Node) -> NodeInput {
        item.to_input()
    }
    fn id_of(item: &Node) -> NodeId {
        item.id
    }
    fn list<'a>(
        store: &'a dyn Store,
        f: &'a NodeFilter,
        p: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Node>>> {
        store.list_nodes(f, p)
    }
    fn get<'a>(store: &'a dyn Store, id: NodeId) -> BoxFuture<'a, StoreResult<Node>> {
        store.get_node(id)
    }
    fn create<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        new: NewNode,
    ) -> BoxFuture<'a, StoreResult<Node>> {
        store.create_node(ctx, new)
    }
    fn update<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: NodeId,
        v: i64,
        new: NewNode,
    ) -> BoxFuture<'a, StoreResult<Node>> {
        store.update_node(ctx, id, v, new)
    }
    fn delete<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: NodeId,
        v: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        store.delete_node(ctx, id, v)
    }
}

/// Members.
#[derive(Debug)]
pub struct Members;

impl Resource for Members {
    const KIND: &'static str = "member";
    const PLURAL: &'static str = "members";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("role", "member, admin or auditor")];
    type Id = MemberId;
    type Item = Member;
    type Input = MemberInput;
    type New = NewMember;
    type Filter = MemberFilter;

    fn parse_filter(params: &BTreeMap<String, String>) -> Result<MemberFilter, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let role = parse_param(
            &mut errors,
            params,
            "role",
            Role::parse,
            "member, admin or auditor",
        );
        errors.finish(|| Some(MemberFilter { role }))
    }
    fn validate(input: MemberInput, _: Option<&Member>) -> Result<NewMember, ValidationErrors> {
        input.validate()
    }
    fn to_input(item: &Member) -> MemberInput {
        item.to_input()
    }
    fn id_of(item: &Member) -> MemberId {
        item.id
    }
    fn list<'a>(
        store: &'a dyn Store,
        f: &'a MemberFilter,
        p: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Member>>> {
        store.list_members(f, p)
    }
    fn get<'a>(store: &'a dyn Store, id: MemberId) -> BoxFuture<'a, StoreResult<Member>> {
        store.get_member(id)
    }
    fn create<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        new: NewMember,
    ) -> BoxFuture<'a, StoreResult<Member>> {
        store.create_member(ctx, new)
    }
    fn update<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: MemberId,
        v: i64,
        new: NewMember,
    ) -> BoxFuture<'a, StoreResult<Member>> {
        store.update_member(ctx, id, v, new)
    }
    fn delete<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: MemberId,
        v: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        store.delete_member(ctx, id, v)
    }
}

/// Sites.
#[derive(Debug)]
pub struct Sites;

impl Resource for Sites {
    fn owner(site: &Site) -> Option<MemberId> {
        Some(site.owner_id)
    }
    fn only_owned_by(filter: &mut SiteFilter, member: MemberId) {
        filter.owner_id = Some(member);
    }
    fn input_owner(input: &SiteInput) -> Option<MemberId> {
        Some(input.owner_id)
    }

    const KIND: &'static str = "site";
    const PLURAL: &'static str = "sites";
    const FILTERS: &'static [(&'static str, &'static str)] = &[
        ("owner_id", "only the sites of this member"),
        ("node_id", "only the sites on this node"),
        ("phase", "pending, running, stopped, failed or deleting"),
        (
            "hostname",
            "the site answering for this host name (any spelling)",
        ),
    ];
    type Id = SiteId;
    type Item = Site;
    type Input = SiteInput;
    type New = NewSite;
    type Filter = SiteFilter;

    fn parse_filter(params: &BTreeMap<String, String>) -> Result<SiteFilter, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let owner_id = parse_param(
            &mut errors,
            params,
            "owner_id",
            |s| s.parse().ok(),
            "a member id",
        );
        let node_id = parse_param(
            &mut errors,
            params,
            "node_id",
            |s| s.parse().ok(),
            "a node id",
        );
        let phase = parse_param(
            &mut errors,
            params,
            "phase",
            SitePhase::parse,
            "a site phase",
        );
        let hostname = parse_param(
            &mut errors,
            params,
            "hostname",
            |s| alveole_model::Hostname::parse(s, Wildcard::Allowed).ok(),
            "a host name",
        );
        errors.finish(|| {
            Some(SiteFilter {
                owner_id,
                node_id,
                phase,
                hostname: hostname.map(|h| h.to_string()),
            })
        })
    }
    fn validate(input: SiteInput, previous: Option<&Site>) -> Result<NewSite, ValidationErrors> {
        input.validate(previous)
    }
    fn to_input(item: &Site) -> SiteInput {
        item.to_input()
    }
    fn id_of(item: &Site) -> SiteId {
        item.id
    }
    fn list<'a>(
        store: &'a dyn Store,
        f: &'a SiteFilter,
        p: &'a PageRequest,
    ) -> BoxFuture<'a, StoreResult<Page<Site>>> {
        store.list_sites(f, p)
    }
    fn get<'a>(store: &'a dyn Store, id: SiteId) -> BoxFuture<'a, StoreResult<Site>> {
        store.get_site(id)
    }
    fn create<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        new: NewSite,
    ) -> BoxFuture<'a, StoreResult<Site>> {
        store.create_site(ctx, new)
    }
    fn update<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: SiteId,
        v: i64,
        new: NewSite,
    ) -> BoxFuture<'a, StoreResult<Site>> {
        store.update_site(ctx, id, v, new)
    }
    fn delete<'a>(
        store: &'a dyn Store,
        ctx: &'a AuditContext,
        id: SiteId,
        v: Option<i64>,
    ) -> BoxFuture<'a, StoreResult<()>> {
        store.delete_site(ctx, id, v)
    }
}
