//! Providers: kept as records; one may not go while it has nodes.

use alveole_model::{FieldError, Meta, Provider, ProviderId};
use async_trait::async_trait;
use sqlx::QueryBuilder;
use uuid::Uuid;

use super::super::Db;
use super::records::{Actions, Audited};
use super::{WriteTx, in_use, names_of};
use crate::rows::ProviderRow;
use crate::{ProviderFilter, StoreError, StoreResult};

#[async_trait]
impl Audited for Provider {
    const TABLE: &'static str = "providers";
    const COLUMNS: &'static str =
        "id, name, contact, contract_end, country, notes, version, created_at, updated_at";
    const SERIALISED: bool = false;
    const ACTIONS: Actions = Actions {
        create: "provider.create",
        update: "provider.update",
        delete: "provider.delete",
    };
    type Row = ProviderRow;

    fn uuid(id: ProviderId) -> Uuid {
        id.0
    }
    fn new_id() -> ProviderId {
        ProviderId::generate()
    }
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn bind(&self, q: &mut QueryBuilder<Db>) {
        let mut s = q.separated(", ");
        s.push_bind(self.id.0)
            .push_bind(self.name.to_string())
            .push_bind(self.contact.as_ref().map(ToString::to_string))
            .push_bind(self.contract_end)
            .push_bind(self.country.as_ref().map(ToString::to_string))
            .push_bind(self.notes.to_string())
            .push_bind(self.meta.version)
            .push_bind(self.meta.created_at)
            .push_bind(self.meta.updated_at);
    }

    fn filter(filter: &ProviderFilter, q: &mut QueryBuilder<Db>) {
        if let Some(country) = &filter.country {
            q.push(" AND country = ").push_bind(country.clone());
        }
    }

    fn build(
        id: ProviderId,
        new: alveole_model::NewProvider,
        meta: Meta,
        _before: Option<&Self>,
    ) -> Self {
        Provider {
            id,
            name: new.name,
            contact: new.contact,
            contract_end: new.contract_end,
            country: new.country,
            notes: new.notes,
            meta,
        }
    }

    async fn check_delete(tx: &mut WriteTx, provider: &Self) -> StoreResult<()> {
        let nodes = names_of(
            tx.conn(),
            "SELECT name FROM nodes WHERE provider_id = $1 ORDER BY name",
            provider.id.0,
        )
        .await?;
        if nodes.is_empty() {
            Ok(())
        } else {
            Err(in_use("provider", "provider.has_nodes", "nodes", &nodes))
        }
    }
}

/// A reference to a provider that does not exist: the client's error, on `provider_id`.
pub(super) fn unknown_provider(error: StoreError) -> StoreError {
    match error {
        StoreError::NotFound { .. } => StoreError::Conflict {
            message: "the provider does not exist".into(),
            errors: vec![FieldError::new(
                "provider_id",
                "provider.unknown",
                "no provider has this id",
            )],
        },
        other => other,
    }
}
