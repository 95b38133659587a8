//! The audit record for the board: filtered reads and exports (a member sees the events of
//! their own sites only), checks of the chain (from the last check onwards, or whole), and
//! signed checkpoints.

use std::collections::BTreeMap;

use alveole_audit::export::{self, ExportFilter};
use alveole_model::MemberId;
use alveole_store::{
    AuditContext, AuditRecord, Checkpoint, SiteFilter, Store, StoreResult, VerifiedPoint,
};
use chrono::{DateTime, Utc};

use super::Service;
use crate::error::{ApiError, ApiResult};

/// Reads the filter shared by the list, the exports, the pages and the report; parameters
/// other than these and `extra` are refused (a typo must not silently widen an export).
pub fn parse_filter(params: &BTreeMap<String, String>, extra: &[&str]) -> ApiResult<ExportFilter> {
    let mut filter = ExportFilter::default();
    for (name, value) in params {
        let value = value.trim();
        let text = || (!value.is_empty()).then(|| value.to_owned());
        let instant = |field: &str| -> ApiResult<Option<DateTime<Utc>>> {
            if value.is_empty() {
                return Ok(None);
            }
            parse_instant(value).map(Some).ok_or_else(|| {
                ApiError::field(
                    field,
                    "instant.invalid",
                    "a date (2026-11-01) or an RFC 3339 instant (2026-11-01T08:00:00Z)",
                )
            })
        };
        match name.as_str() {
            "from" => filter.from = instant("from")?,
            "to" => filter.to = instant("to")?,
            "actor" => filter.actor = text(),
            "action" => filter.action = text(),
            "target_kind" => filter.target_kind = text(),
            "target_id" => filter.target_id = text(),
            other if extra.contains(&other) => {}
            other => {
                return Err(ApiError::field(
                    other,
                    "parameter.unknown",
                    "this parameter is not known here",
                ));
            }
        }
    }
    Ok(filter)
}

/// `2026-11-01` (midnight UTC) or an RFC 3339 instant.
fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
}

/// Every record matching `filter`, page by page.
pub async fn all_records(
    store: &dyn Store,
    filter: &ExportFilter,
) -> StoreResult<Vec<AuditRecord>> {
    let mut records = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_records(filter, after, 1000).await?;
        let Some(last) = page.last().and_then(|r| r.event.chain_index) else {
            records.extend(page);
            return Ok(records);
        };
        after = last;
        let full = page.len() == 1000;
        records.extend(page);
        if !full {
            return Ok(records);
        }
    }
}

/// An export of the record, ready to send.
#[derive(Debug)]
pub struct Export {
    pub body: String,
    pub content_type: &'static str,
    pub file_name: String,
}

impl Service {
    /// Narrows `filter` to the events about `limited_to`'s own sites, when a member asks.
    pub async fn narrow_audit_filter(
        &self,
        limited_to: Option<MemberId>,
        filter: &mut ExportFilter,
    ) -> ApiResult<()> {
        let Some(member) = limited_to else {
            return Ok(());
        };
        let owned = SiteFilter {
            owner_id: Some(member),
            ..Default::default()
        };
        let store = self.store();
        let owned = &owned;
        let sites: Vec<String> = crate::api::every(|page| {
            Box::pin(async move { store.sites().list(owned, &page).await })
        })
        .await?
        .iter()
        .map(|s| s.id.to_string())
        .collect();
        filter.target_kind = Some("site".into());
        // No site: a target no event has, so that nothing matches.
        filter.target_ids = if sites.is_empty() {
            vec![String::new()]
        } else {
            sites
        };
        Ok(())
    }

    /// The record matching `filter` as JSON Lines (verifiable on its own) or CSV.
    pub async fn export_audit(&self, filter: &ExportFilter, format: &str) -> ApiResult<Export> {
        let store = self.store();
        let records = all_records(store, filter).await?;
        let links = records.iter().filter_map(|r| r.link.as_ref());
        let now = self.now();
        let (body, content_type, extension) = match format {
            "jsonl" => {
                let keys: Vec<_> = store
                    .audit_keys()
                    .await?
                    .into_iter()
                    .map(|k| k.key)
                    .collect();
                let mut body = export::header(filter, &keys, now);
                for link in links {
                    body.push_str(&export::event_line(link));
                }
                if let Some(latest) = store.checkpoints(1).await?.into_iter().next() {
                    body.push_str(&export::checkpoint_line(&latest));
                }
                (body, "application/x-ndjson", "jsonl")
            }
            "csv" => {
                let mut body = export::CSV_HEADER.to_owned();
                for link in links {
                    body.push_str(&export::csv_row(link));
                }
                (body, "text/csv; charset=utf-8", "csv")
            }
            _ => {
                return Err(ApiError::field("format", "format.unknown", "jsonl or csv"));
            }
        };
        Ok(Export {
            body,
            content_type,
            file_name: format!("alveole-audit-{}.{extension}", now.format("%Y%m%dT%H%M%SZ")),
        })
    }

    /// Checks the record and keeps the result as the last check: from the first event when
    /// `full` (or when the last check found it broken, so that a repair is seen), else from
    /// the head the last check found intact.
    pub async fn verify_audit(&self, full: bool) -> ApiResult<VerifiedPoint> {
        let store = self.store();
        let last = store.last_verification().await?;
        let from = match &last {
            Some(last) if !full && last.verification.intact => Some(&last.verification),
            _ => None,
        };
        let verification = match from {
            Some(previous) => {
                let mut checked =
                    alveole_store::verify_audit_from(store, &previous.head, &[], None).await?;
                // What an earlier check verified stays verified.
                let mut verified = previous.checkpoints_verified.clone();
                verified.extend(checked.checkpoints_verified.iter().copied());
                verified.sort_unstable();
                verified.dedup();
                checked.checkpoints_verified = verified;
                checked
            }
            None => alveole_store::verify_audit(store, &[], None).await?,
        };
        let point = VerifiedPoint {
            at: self.now(),
            full: from.is_none(),
            verification,
        };
        if !point.verification.intact {
            tracing::error!(first_break = ?point.verification.first_break, "the audit chain is broken");
        }
        store.record_verification(&point).await?;
        Ok(point)
    }

    /// The last check of the record (one is made when there was none yet).
    pub async fn last_audit_verification(&self) -> ApiResult<VerifiedPoint> {
        match self.store().last_verification().await? {
            Some(point) => Ok(point),
            None => self.verify_audit(true).await,
        }
    }

    /// Signs a checkpoint of the chain now (and sends it out).
    pub async fn sign_checkpoint(&self, ctx: &AuditContext) -> ApiResult<Checkpoint> {
        let notary = self
            .config()
            .notary
            .clone()
            .ok_or(ApiError::Unavailable("this panel has no audit signing key"))?;
        Ok(notary.checkpoint(self.store(), ctx, self.now()).await?)
    }
}
