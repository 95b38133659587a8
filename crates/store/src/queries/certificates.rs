//! Sites' certificates, ACME's status per site, challenges, the account and the rate limits'
//! events: each change a node must hear of bumps its generation in the same transaction.

use std::collections::BTreeMap;

use alveole_model::{AcmeChallenge, NodeId, SiteId};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use sqlx::types::Json;
use sqlx::{Executor, QueryBuilder};
use uuid::Uuid;

use super::super::Db;
use super::{SqlStore, WriteTx, bump_generation};
use crate::areas::certificates::{
    AcmeAccount, AcmeEvent, AcmeEventKind, AcmeStatus, CertificateSource, CertificateStore,
    StoredCertificate,
};
use crate::{AuditContext, Change, StoreError, StoreResult};

/// The columns of `site_certificates`, in the order `CertificateRow` reads them (a macro, so
/// that the SQL built with it stays a literal).
macro_rules! certificate_columns {
    () => {
        "site_id, source, chain_pem, key_sealed, names, issuer, not_before, not_after, \
         issued_at, renew_at, ari_next"
    };
}
const CERTIFICATE_COLUMNS: &str = certificate_columns!();

type CertificateRow = (
    Uuid,
    String,
    String,
    String,
    Json<Vec<String>>,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

fn certificate_of(row: CertificateRow) -> StoreResult<StoredCertificate> {
    let source = CertificateSource::parse(&row.1).ok_or_else(|| StoreError::Corrupt {
        kind: "certificate",
        id: row.0.to_string(),
        reason: format!("unknown source {}", row.1),
    })?;
    Ok(StoredCertificate {
        site_id: SiteId(row.0),
        source,
        chain_pem: row.2,
        key_sealed: row.3,
        names: row.4.0,
        issuer: row.5,
        not_before: row.6,
        not_after: row.7,
        issued_at: row.8,
        renew_at: row.9,
        ari_next: row.10,
    })
}

/// The certificates of `sites`, by site.
pub(super) async fn certificates_of<'e, E>(
    ex: E,
    sites: &[SiteId],
) -> StoreResult<BTreeMap<SiteId, StoredCertificate>>
where
    E: Executor<'e, Database = Db>,
{
    if sites.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut q = QueryBuilder::<Db>::new(format!(
        "SELECT {CERTIFICATE_COLUMNS} FROM site_certificates WHERE site_id IN ("
    ));
    let mut list = q.separated(", ");
    for site in sites {
        list.push_bind(site.0);
    }
    q.push(")");
    let rows: Vec<CertificateRow> = q.build_query_as().fetch_all(ex).await?;
    rows.into_iter()
        .map(|row| certificate_of(row).map(|c| (c.site_id, c)))
        .collect()
}

/// The answers to the challenges of `sites`' orders.
pub(super) async fn challenges_of<'e, E>(ex: E, sites: &[SiteId]) -> StoreResult<Vec<AcmeChallenge>>
where
    E: Executor<'e, Database = Db>,
{
    if sites.is_empty() {
        return Ok(vec![]);
    }
    let mut q = QueryBuilder::<Db>::new(
        "SELECT token, key_authorization FROM acme_challenges WHERE site_id IN (",
    );
    let mut list = q.separated(", ");
    for site in sites {
        list.push_bind(site.0);
    }
    q.push(") ORDER BY token");
    let rows: Vec<(String, String)> = q.build_query_as().fetch_all(ex).await?;
    Ok(rows
        .into_iter()
        .map(|(token, key_authorization)| AcmeChallenge {
            token,
            key_authorization,
        })
        .collect())
}

/// Tells the nodes that serve `site` (its own, and a move's target while it moves): each
/// with its new generation.
async fn bump_site_nodes(tx: &mut WriteTx, site: SiteId) -> StoreResult<Vec<(NodeId, u64)>> {
    let nodes: Vec<Uuid> = sqlx::query_scalar(
        "SELECT node_id FROM sites WHERE id = $1 AND node_id IS NOT NULL \
         UNION SELECT to_node FROM site_moves WHERE site_id = $1 \
         AND phase IN ('copying', 'forwarding')",
    )
    .bind(site.0)
    .fetch_all(tx.conn())
    .await?;
    let mut bumped = Vec::new();
    for node in nodes {
        bump_generation(tx, Some(NodeId(node))).await?;
        let generation: i64 =
            sqlx::query_scalar("SELECT desired_generation FROM nodes WHERE id = $1")
                .bind(node)
                .fetch_one(tx.conn())
                .await?;
        bumped.push((NodeId(node), u64::try_from(generation).unwrap_or_default()));
    }
    Ok(bumped)
}

async fn site_exists(tx: &mut WriteTx, site: SiteId) -> StoreResult<()> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM sites WHERE id = $1")
        .bind(site.0)
        .fetch_optional(tx.conn())
        .await?;
    found
        .map(|_| ())
        .ok_or(StoreError::NotFound { kind: "site" })
}

/// The public view of a certificate, for the audit record (never its key).
fn audited(certificate: &StoredCertificate) -> serde_json::Value {
    serde_json::json!({
        "source": certificate.source.as_str(),
        "names": certificate.names,
        "issuer": certificate.issuer,
        "not_before": certificate.not_before,
        "not_after": certificate.not_after,
    })
}

async fn delete_challenges(tx: &mut WriteTx, site: SiteId) -> StoreResult<()> {
    sqlx::query("DELETE FROM acme_challenges WHERE site_id = $1")
        .bind(site.0)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Makes sure the site has a status row to update.
async fn ensure_status(tx: &mut WriteTx, site: SiteId) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO acme_status (site_id, failures) VALUES ($1, 0) ON CONFLICT (site_id) \
         DO NOTHING",
    )
    .bind(site.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

#[async_trait]
impl CertificateStore for SqlStore {
    async fn certificate(&self, site: SiteId) -> StoreResult<Option<StoredCertificate>> {
        Ok(certificates_of(&self.pool, &[site]).await?.remove(&site))
    }

    async fn certificates(&self) -> StoreResult<Vec<StoredCertificate>> {
        let rows: Vec<CertificateRow> = sqlx::query_as(concat!(
            "SELECT ",
            certificate_columns!(),
            " FROM site_certificates ORDER BY site_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(certificate_of).collect()
    }

    async fn put_certificate(
        &self,
        ctx: &AuditContext,
        certificate: &StoredCertificate,
        action: &'static str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let site = certificate.site_id;
        site_exists(&mut tx, site).await?;
        let before = certificates_of(tx.conn(), &[site]).await?.remove(&site);
        sqlx::query("DELETE FROM site_certificates WHERE site_id = $1")
            .bind(site.0)
            .execute(tx.conn())
            .await?;
        sqlx::query(concat!(
            "INSERT INTO site_certificates (",
            certificate_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        ))
        .bind(site.0)
        .bind(certificate.source.as_str())
        .bind(&certificate.chain_pem)
        .bind(&certificate.key_sealed)
        .bind(Json(&certificate.names))
        .bind(&certificate.issuer)
        .bind(certificate.not_before)
        .bind(certificate.not_after)
        .bind(certificate.issued_at)
        .bind(certificate.renew_at)
        .bind(certificate.ari_next)
        .execute(tx.conn())
        .await?;
        if certificate.source == CertificateSource::Acme {
            delete_challenges(&mut tx, site).await?;
            ensure_status(&mut tx, site).await?;
            let now = tx.now;
            sqlx::query(
                "UPDATE acme_status SET last_error = NULL, error_at = NULL, failures = 0, \
                 retry_at = NULL, renewed_at = $2 WHERE site_id = $1",
            )
            .bind(site.0)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        bump_site_nodes(&mut tx, site).await?;
        let change = Change {
            action,
            target_kind: "site",
            target_id: site.to_string(),
            before: before.as_ref().map(audited),
            after: Some(audited(certificate)),
        };
        tx.commit(ctx, change).await
    }

    async fn remove_certificate(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        action: &'static str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let Some(before) = certificates_of(tx.conn(), &[site]).await?.remove(&site) else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM site_certificates WHERE site_id = $1")
            .bind(site.0)
            .execute(tx.conn())
            .await?;
        bump_site_nodes(&mut tx, site).await?;
        let change = Change {
            action,
            target_kind: "site",
            target_id: site.to_string(),
            before: Some(audited(&before)),
            after: None,
        };
        tx.commit(ctx, change).await?;
        Ok(true)
    }

    async fn set_renewal(
        &self,
        site: SiteId,
        renew_at: DateTime<Utc>,
        ari_next: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE site_certificates SET renew_at = $2, ari_next = $3 WHERE site_id = $1")
            .bind(site.0)
            .bind(renew_at)
            .bind(ari_next)
            .execute(tx.conn())
            .await?;
        tx.commit_bookkeeping().await
    }

    async fn acme_statuses(&self) -> StoreResult<Vec<AcmeStatus>> {
        type Row = (
            Uuid,
            Option<String>,
            Option<DateTime<Utc>>,
            i64,
            Option<DateTime<Utc>>,
            Option<DateTime<Utc>>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT site_id, last_error, error_at, failures, retry_at, renewed_at \
             FROM acme_status ORDER BY site_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| AcmeStatus {
                site_id: SiteId(r.0),
                last_error: r.1,
                error_at: r.2,
                failures: u32::try_from(r.3).unwrap_or(u32::MAX),
                retry_at: r.4,
                renewed_at: r.5,
            })
            .collect())
    }

    async fn start_order(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        names: &[String],
        challenges: &[AcmeChallenge],
    ) -> StoreResult<Vec<(NodeId, u64)>> {
        let mut tx = self.begin_write().await?;
        site_exists(&mut tx, site).await?;
        delete_challenges(&mut tx, site).await?;
        let now = tx.now;
        for challenge in challenges {
            sqlx::query(
                "INSERT INTO acme_challenges (token, site_id, key_authorization, created_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&challenge.token)
            .bind(site.0)
            .bind(&challenge.key_authorization)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        let bumped = bump_site_nodes(&mut tx, site).await?;
        let change = Change {
            action: "certificate.order",
            target_kind: "site",
            target_id: site.to_string(),
            before: None,
            after: Some(serde_json::json!({ "names": names })),
        };
        tx.commit(ctx, change).await?;
        Ok(bumped)
    }

    async fn fail_order(
        &self,
        ctx: &AuditContext,
        site: SiteId,
        error: &str,
        retry_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        site_exists(&mut tx, site).await?;
        let had_challenges: Option<String> =
            sqlx::query_scalar("SELECT token FROM acme_challenges WHERE site_id = $1 LIMIT 1")
                .bind(site.0)
                .fetch_optional(tx.conn())
                .await?;
        delete_challenges(&mut tx, site).await?;
        ensure_status(&mut tx, site).await?;
        let now = tx.now;
        sqlx::query(
            "UPDATE acme_status SET last_error = $2, error_at = $3, failures = failures + 1, \
             retry_at = $4 WHERE site_id = $1",
        )
        .bind(site.0)
        .bind(error)
        .bind(now)
        .bind(retry_at)
        .execute(tx.conn())
        .await?;
        if had_challenges.is_some() {
            bump_site_nodes(&mut tx, site).await?;
        }
        let change = Change {
            action: "certificate.fail",
            target_kind: "site",
            target_id: site.to_string(),
            before: None,
            after: Some(serde_json::json!({ "error": error, "retry_at": retry_at })),
        };
        tx.commit(ctx, change).await
    }

    async fn note_acme_problem(
        &self,
        site: SiteId,
        problem: Option<&str>,
        retry_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        ensure_status(&mut tx, site).await?;
        let now = tx.now;
        sqlx::query(
            "UPDATE acme_status SET last_error = $2, error_at = CASE WHEN $2 IS NULL THEN NULL \
             ELSE $3 END, retry_at = $4 WHERE site_id = $1",
        )
        .bind(site.0)
        .bind(problem)
        .bind(now)
        .bind(retry_at)
        .execute(tx.conn())
        .await?;
        tx.commit_bookkeeping().await
    }

    async fn acme_account(&self, directory: &str) -> StoreResult<Option<AcmeAccount>> {
        let row: Option<(String, Option<DateTime<Utc>>)> =
            sqlx::query_as("SELECT sealed, backoff_until FROM acme_accounts WHERE directory = $1")
                .bind(directory)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(sealed, backoff_until)| AcmeAccount {
            directory: directory.to_owned(),
            sealed,
            backoff_until,
        }))
    }

    async fn put_acme_account(
        &self,
        ctx: &AuditContext,
        directory: &str,
        sealed: &str,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        sqlx::query(
            "INSERT INTO acme_accounts (directory, sealed, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (directory) DO UPDATE SET sealed = $2",
        )
        .bind(directory)
        .bind(sealed)
        .bind(now)
        .execute(tx.conn())
        .await?;
        let change = Change {
            action: "acme.account",
            target_kind: "acme_account",
            target_id: directory.to_owned(),
            before: None,
            after: Some(serde_json::json!({ "directory": directory })),
        };
        tx.commit(ctx, change).await
    }

    async fn set_acme_backoff(&self, directory: &str, until: DateTime<Utc>) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE acme_accounts SET backoff_until = $2 WHERE directory = $1")
            .bind(directory)
            .bind(until)
            .execute(tx.conn())
            .await?;
        tx.commit_bookkeeping().await
    }

    async fn record_acme_events(&self, kind: AcmeEventKind, keys: &[String]) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let now = tx.now;
        for key in keys {
            sqlx::query("INSERT INTO acme_events (kind, key, at) VALUES ($1, $2, $3)")
                .bind(kind.as_str())
                .bind(key)
                .bind(now)
                .execute(tx.conn())
                .await?;
        }
        sqlx::query("DELETE FROM acme_events WHERE at < $1")
            .bind(now - Duration::days(8))
            .execute(tx.conn())
            .await?;
        tx.commit_bookkeeping().await
    }

    async fn acme_events_since(&self, since: DateTime<Utc>) -> StoreResult<Vec<AcmeEvent>> {
        let rows: Vec<(String, String, DateTime<Utc>)> =
            sqlx::query_as("SELECT kind, key, at FROM acme_events WHERE at >= $1 ORDER BY at")
                .bind(since)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, key, at)| {
                Some(AcmeEvent {
                    kind: AcmeEventKind::parse(&kind)?,
                    key,
                    at,
                })
            })
            .collect())
    }

    async fn reseal_certificates(
        &self,
        keys: &[(SiteId, String)],
        accounts: &[(String, String)],
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        for (site, sealed) in keys {
            sqlx::query("UPDATE site_certificates SET key_sealed = $2 WHERE site_id = $1")
                .bind(site.0)
                .bind(sealed)
                .execute(tx.conn())
                .await?;
        }
        for (directory, sealed) in accounts {
            sqlx::query("UPDATE acme_accounts SET sealed = $2 WHERE directory = $1")
                .bind(directory)
                .bind(sealed)
                .execute(tx.conn())
                .await?;
        }
        tx.commit_bookkeeping().await
    }

    async fn acme_accounts(&self) -> StoreResult<Vec<AcmeAccount>> {
        let rows: Vec<(String, String, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT directory, sealed, backoff_until FROM acme_accounts ORDER BY directory",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(directory, sealed, backoff_until)| AcmeAccount {
                directory,
                sealed,
                backoff_until,
            })
            .collect())
    }
}
