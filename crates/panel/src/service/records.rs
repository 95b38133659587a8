//! Providers, nodes, members, sites and backup targets, whichever face of the panel asks: one validator per
//! resource whatever the verb, PATCH as a JSON Merge Patch with the version read, and a
//! member reaching their own sites only.

use std::collections::BTreeMap;

use alveole_model::{
    BackupTarget, BackupTargetInput, Member, MemberId, MemberInput, Node, NodeInput, Provider,
    ProviderInput, Role, Site, SiteInput, SitePhase, ValidationErrors, Wildcard, merge_patch,
};
use alveole_store::{
    AuditContext, BackupTargetFilter, MemberFilter, NodeFilter, Page, PageRequest, ProviderFilter,
    SiteFilter, Stored,
};
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Service;
use crate::error::{ApiError, ApiResult};

/// What the rules need of a resource beyond what the store keeps: its input and validator,
/// its list filters, and who owns an item.
pub trait Resource: Stored + Serialize + JsonSchema {
    /// The path segment (`sites`).
    const PLURAL: &'static str;
    /// Query parameters that filter the list: name and description.
    const FILTERS: &'static [(&'static str, &'static str)];
    /// What a client sends: raw values, so that every problem names its field.
    type Input: DeserializeOwned + Serialize + JsonSchema + Send + 'static;

    fn parse_filter(params: &BTreeMap<String, String>) -> Result<Self::Filter, ValidationErrors>;
    /// Validates an input; `previous` is the stored resource when it is an edit.
    fn validate(input: Self::Input, previous: Option<&Self>)
    -> Result<Self::New, ValidationErrors>;
    fn to_input(&self) -> Self::Input;
    /// The version a client must send back to change the item.
    fn version(&self) -> i64;
    /// Whether two validated forms say the same (in normal form: a site's variables in any
    /// order): an edit that changes nothing records nothing and restarts nothing.
    fn same(a: &Self::New, b: &Self::New) -> bool;
    /// Seals the secrets of what is about to be written (`crate::secrets`).
    fn seal_secrets(_new: &mut Self::New, _service: &Service) -> ApiResult<()> {
        Ok(())
    }
    /// Rules that need the panel's configuration (the public suffix list), after validation.
    fn check_with(_new: &Self::New, _service: &Service) -> Result<(), ValidationErrors> {
        Ok(())
    }

    /// The member who owns an item: a member reaches only what they own. `None` for kinds no
    /// member owns (their routes are for admins and auditors).
    fn owner(&self) -> Option<MemberId> {
        None
    }
    /// Narrows a list to one member's items.
    fn only_owned_by(_filter: &mut Self::Filter, _member: MemberId) {}
    /// The owner an input names.
    fn input_owner(_input: &Self::Input) -> Option<MemberId> {
        None
    }
    /// The keys a site needs (made after the write, once the site has its id): its
    /// admission key, and its repository key once its backup policy names targets.
    fn site_keys_needed(&self) -> Vec<(alveole_store::SiteKeyKind, alveole_model::SiteId)> {
        vec![]
    }
}

/// An item that `limited_to` (a member) may not reach answers 404, as if it did not exist:
/// another member's site is not even confirmed to exist.
fn reachable<R: Resource>(item: R, limited_to: Option<MemberId>) -> ApiResult<R> {
    match limited_to {
        Some(member) if item.owner() != Some(member) => Err(ApiError::NotFound(R::KIND)),
        _ => Ok(item),
    }
}

/// A member creates or keeps items in their own name only.
fn own_input<R: Resource>(input: &R::Input, limited_to: Option<MemberId>) -> ApiResult<()> {
    match limited_to {
        Some(member) if R::input_owner(input) != Some(member) => Err(ApiError::field(
            "owner_id",
            "owner.not_you",
            "a member's sites are their own: owner_id must be your member id",
        )),
        _ => Ok(()),
    }
}

/// The version a merge patch carries (and takes out of it).
fn take_version(patch: &mut serde_json::Value) -> ApiResult<i64> {
    let Some(object) = patch.as_object_mut() else {
        return Err(ApiError::BadRequest("send a JSON object".into()));
    };
    object
        .remove("version")
        .and_then(|v| v.as_i64())
        .ok_or_else(|| ApiError::field("version", "version.required", "send the version you read"))
}

/// Reads a JSON value as an input, strictly (an unknown field at any depth is refused),
/// naming the field at fault.
pub fn input_of<I: DeserializeOwned>(value: serde_json::Value) -> ApiResult<I> {
    Ok(alveole_model::strict::from_value(value)?)
}

impl Service {
    /// A page of items; `limited_to` a member, only theirs, whatever the filter says.
    pub async fn list<R: Resource>(
        &self,
        limited_to: Option<MemberId>,
        mut filter: R::Filter,
        page: &PageRequest,
    ) -> ApiResult<Page<R>> {
        if let Some(member) = limited_to {
            R::only_owned_by(&mut filter, member);
        }
        Ok(R::records(self.store()).list(&filter, page).await?)
    }

    pub async fn get<R: Resource>(&self, limited_to: Option<MemberId>, id: R::Id) -> ApiResult<R> {
        reachable(R::records(self.store()).get(id).await?, limited_to)
    }

    pub async fn create<R: Resource>(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        input: R::Input,
    ) -> ApiResult<R> {
        own_input::<R>(&input, limited_to)?;
        let mut new = R::validate(input, None)?;
        R::check_with(&new, self)?;
        R::seal_secrets(&mut new, self)?;
        let created = R::records(self.store()).create(ctx, new).await?;
        self.after_write(&created).await?;
        Ok(created)
    }

    async fn after_write<R: Resource>(&self, item: &R) -> ApiResult<()> {
        for (kind, site) in item.site_keys_needed() {
            self.ensure_site_key(kind, site).await?;
        }
        // A site's names or HTTPS settings may have changed: its certificate, at once.
        self.poke(crate::background::Task::Certificates);
        Ok(())
    }

    /// Applies a JSON Merge Patch carrying the `version` the client read to the item's input
    /// form, then validates the result as a create would be.
    pub async fn update<R: Resource>(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        id: R::Id,
        mut patch: serde_json::Value,
    ) -> ApiResult<R> {
        let version = take_version(&mut patch)?;
        let current = self.get::<R>(limited_to, id).await?;
        let mut merged = serde_json::to_value(current.to_input())
            .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        merge_patch(&mut merged, &patch);
        let input: R::Input = input_of(merged)?;
        own_input::<R>(&input, limited_to)?;
        let mut new = R::validate(input, Some(&current))?;
        R::check_with(&new, self)?;
        if version == current.version()
            && R::validate(current.to_input(), Some(&current)).is_ok_and(|now| R::same(&now, &new))
        {
            return Ok(current);
        }
        R::seal_secrets(&mut new, self)?;
        let updated = R::records(self.store())
            .update(ctx, id, version, new)
            .await?;
        self.after_write(&updated).await?;
        Ok(updated)
    }

    pub async fn delete<R: Resource>(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        id: R::Id,
        version: Option<i64>,
    ) -> ApiResult<()> {
        if limited_to.is_some() {
            self.get::<R>(limited_to, id).await?;
        }
        Ok(R::records(self.store()).delete(ctx, id, version).await?)
    }

    /// Deletes a site and its volume (a deletion keeps the volume, so that it can be undone).
    pub async fn purge_site(
        &self,
        ctx: &AuditContext,
        limited_to: Option<MemberId>,
        id: alveole_model::SiteId,
        version: Option<i64>,
    ) -> ApiResult<()> {
        if limited_to.is_some() {
            self.get::<Site>(limited_to, id).await?;
        }
        Ok(self.store().purge_site(ctx, id, version).await?)
    }
}

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
        parse(raw).ok_or_else(|| alveole_model::FieldError::new(name, "filter.invalid", expected)),
    )
}

impl Resource for Provider {
    const PLURAL: &'static str = "providers";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("country", "ISO 3166-1 alpha-2 code")];
    type Input = ProviderInput;

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
    fn validate(input: ProviderInput, _: Option<&Self>) -> Result<Self::New, ValidationErrors> {
        input.validate()
    }
    fn to_input(&self) -> ProviderInput {
        Provider::to_input(self)
    }
    fn version(&self) -> i64 {
        self.meta.version
    }
    fn same(a: &Self::New, b: &Self::New) -> bool {
        a == b
    }
}

impl Resource for Node {
    const PLURAL: &'static str = "nodes";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("provider_id", "only the nodes of this provider")];
    type Input = NodeInput;

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
    fn validate(input: NodeInput, _: Option<&Self>) -> Result<Self::New, ValidationErrors> {
        input.validate()
    }
    fn to_input(&self) -> NodeInput {
        Node::to_input(self)
    }
    fn version(&self) -> i64 {
        self.meta.version
    }
    fn same(a: &Self::New, b: &Self::New) -> bool {
        a == b
    }
}

impl Resource for Member {
    const PLURAL: &'static str = "members";
    const FILTERS: &'static [(&'static str, &'static str)] =
        &[("role", "member, admin or auditor")];
    type Input = MemberInput;

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
    fn validate(input: MemberInput, _: Option<&Self>) -> Result<Self::New, ValidationErrors> {
        input.validate()
    }
    fn to_input(&self) -> MemberInput {
        Member::to_input(self)
    }
    fn version(&self) -> i64 {
        self.meta.version
    }
    fn same(a: &Self::New, b: &Self::New) -> bool {
        a == b
    }
}

impl Resource for Site {
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
    type Input = SiteInput;

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
    fn validate(input: SiteInput, previous: Option<&Self>) -> Result<Self::New, ValidationErrors> {
        input.validate(previous)
    }
    fn seal_secrets(new: &mut Self::New, service: &Service) -> ApiResult<()> {
        service.seal_env(&mut new.env)?;
        service.seal_database_credentials(&mut new.databases)
    }
    fn check_with(new: &Self::New, service: &Service) -> Result<(), ValidationErrors> {
        let suffixes = &service.config().public_suffixes;
        let mut errors = ValidationErrors::default();
        service.check_database_offers(new, &mut errors);
        for (i, alias) in new.aliases.iter().enumerate() {
            if !alias.is_wildcard() {
                continue;
            }
            if let Some(reason) = suffixes.refuses_wildcard_under(alias.parent()) {
                errors.push(alveole_model::FieldError::new(
                    format!("aliases[{i}]"),
                    "hostname.public_suffix",
                    reason,
                ));
            }
        }
        errors.finish(|| Some(()))
    }
    fn to_input(&self) -> SiteInput {
        Site::to_input(self)
    }
    fn version(&self) -> i64 {
        self.meta.version
    }
    fn same(a: &Self::New, b: &Self::New) -> bool {
        a.same_as(b)
    }
    fn owner(&self) -> Option<MemberId> {
        Some(self.owner_id)
    }
    fn only_owned_by(filter: &mut SiteFilter, member: MemberId) {
        filter.owner_id = Some(member);
    }
    fn input_owner(input: &SiteInput) -> Option<MemberId> {
        Some(input.owner_id)
    }
    fn site_keys_needed(&self) -> Vec<(alveole_store::SiteKeyKind, alveole_model::SiteId)> {
        let mut kinds = vec![alveole_store::SiteKeyKind::Admission];
        if self.backup.is_on() {
            kinds.push(alveole_store::SiteKeyKind::Backup);
        }
        kinds.into_iter().map(|kind| (kind, self.id)).collect()
    }
}

impl Resource for BackupTarget {
    const PLURAL: &'static str = "backup-targets";
    const FILTERS: &'static [(&'static str, &'static str)] = &[];
    type Input = BackupTargetInput;

    fn parse_filter(_: &BTreeMap<String, String>) -> Result<BackupTargetFilter, ValidationErrors> {
        Ok(BackupTargetFilter)
    }
    fn validate(input: BackupTargetInput, _: Option<&Self>) -> Result<Self::New, ValidationErrors> {
        input.validate()
    }
    fn to_input(&self) -> BackupTargetInput {
        BackupTarget::to_input(self)
    }
    fn version(&self) -> i64 {
        self.meta.version
    }
    fn same(a: &Self::New, b: &Self::New) -> bool {
        a == b
    }
}
