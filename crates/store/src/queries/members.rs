//! Members: kept as records; one may not go while they own sites.

use alveole_model::{Member, MemberId, Meta, NewMember};
use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::super::Db;
use super::records::{Actions, Audited};
use super::{WriteTx, in_use, names_of};
use crate::rows::MemberRow;
use crate::{MemberFilter, StoreResult};

#[async_trait]
impl Audited for Member {
    const TABLE: &'static str = "members";
    const COLUMNS: &'static str =
        "id, display_name, email, role, disabled_at, version, created_at, updated_at";
    const SERIALISED: bool = true;
    const ACTIONS: Actions = Actions {
        create: "member.create",
        update: "member.update",
        delete: "member.delete",
    };
    type Row = MemberRow;

    fn uuid(id: MemberId) -> Uuid {
        id.0
    }
    fn new_id() -> MemberId {
        MemberId::generate()
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn bind(&self, q: &mut QueryBuilder<Db>) {
        let mut s = q.separated(", ");
        s.push_bind(self.id.0)
            .push_bind(self.display_name.to_string())
            .push_bind(self.email.to_string())
            .push_bind(self.role.as_str())
            .push_bind(self.disabled_at)
            .push_bind(self.meta.version)
            .push_bind(self.meta.created_at)
            .push_bind(self.meta.updated_at);
    }

    fn filter(filter: &MemberFilter, q: &mut QueryBuilder<Db>) {
        if let Some(role) = filter.role {
            q.push(" AND role = ").push_bind(role.as_str());
        }
    }

    fn build(id: MemberId, new: NewMember, meta: Meta, before: Option<&Self>) -> Self {
        Member {
            id,
            display_name: new.display_name,
            email: new.email,
            role: new.role,
            // Disabling and enabling have routes of their own; an edit keeps what is.
            disabled_at: before.and_then(|member| member.disabled_at),
            meta,
        }
    }

    async fn check_delete(tx: &mut WriteTx, member: &Self) -> StoreResult<()> {
        let sites = names_of(
            tx.conn(),
            "SELECT primary_domain FROM sites WHERE owner_id = $1 ORDER BY primary_domain",
            member.id.0,
        )
        .await?;
        if sites.is_empty() {
            Ok(())
        } else {
            Err(in_use("member", "member.has_sites", "sites", &sites))
        }
    }
}
