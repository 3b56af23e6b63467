//! Listings with filters: a location's payments (the client's search) and refunds (the
//! operators' review list), newest first, paged with [`Cursor`]s (see `paging`).
//!
//! Each listing reads the narrowest index its filters allow, then keeps the records that
//! match the other filters. A page is cut short after [`SCAN`] entries read without filling
//! it, with a cursor to go on from: a rare filter never makes one request read everything.

use super::paging::{Cursor, Page};
use super::{Payment, Refund, Shard, Store, StoreError};
use crate::domain::{PaymentStatus, RefundStatus};

/// Entries read for one page at most.
const SCAN: usize = 2_000;

#[derive(Debug, Clone, Default)]
pub struct PaymentFilter {
    pub location_id: String,
    pub status: Option<PaymentStatus>,
    pub order_id: Option<String>,
    pub tid: Option<String>,
    /// Created at or after / at or before (ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

impl PaymentFilter {
    fn matches(&self, p: &Payment) -> bool {
        *p.request.location_id == *self.location_id
            && self.status.is_none_or(|s| p.status == s)
            && self.tid.as_ref().is_none_or(|t| p.tid.as_str() == t)
            && self
                .order_id
                .as_ref()
                .is_none_or(|o| p.request.order_id.as_str() == o)
    }
}

#[derive(Debug, Clone, Default)]
pub struct RefundFilter {
    pub status: Option<RefundStatus>,
    pub location_id: Option<String>,
}

impl Store {
    /// A page of a location's payments matching `filter`, newest first.
    pub async fn search_payments(
        &self,
        filter: &PaymentFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Payment>, StoreError> {
        if let Some(order) = &filter.order_id {
            // An order names one payment at most: its reservation says which.
            let holder = self.order_holder(&filter.location_id, order).await?;
            let found = match holder {
                Some(id) => self.payment_state(&id).await?,
                None => None,
            };
            let created_ms = |p: &Payment| {
                chrono::DateTime::parse_from_rfc3339(&p.created_at)
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(0)
            };
            let items = found
                .filter(|p| filter.matches(p))
                .filter(|p| filter.from_ms.is_none_or(|f| created_ms(p) >= f))
                .filter(|p| filter.to_ms.is_none_or(|t| created_ms(p) <= t))
                .filter(|_| after.is_none())
                .into_iter()
                .collect();
            return Ok(Page { items, next: None });
        }
        let keys: Vec<String> = Shard::all()
            .map(|s| self.location_payments_key(s, &filter.location_id))
            .collect();
        let range = (filter.from_ms, filter.to_ms);
        self.filtered_page(&keys, range, after, limit, |id| async move {
            let p = self.payment_state(&id).await?;
            Ok(p.filter(|p| filter.matches(p)))
        })
        .await
    }

    /// A page of refunds matching `filter`, newest first: those waiting for review by when
    /// they were left to a person, the others by when they were requested.
    pub async fn list_refunds(
        &self,
        filter: &RefundFilter,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Page<Refund>, StoreError> {
        let keys: Vec<String> = match (&filter.location_id, filter.status) {
            (Some(location), _) => Shard::all()
                .map(|s| self.location_refunds_key(s, location))
                .collect(),
            (None, Some(RefundStatus::ManualReview)) => {
                Shard::all().map(|s| self.review_refunds_key(s)).collect()
            }
            (None, _) => Shard::all().map(|s| self.all_refunds_key(s)).collect(),
        };
        self.filtered_page(&keys, (None, None), after, limit, |id| async move {
            let r = self.refund(&id).await?;
            Ok(r.filter(|r| filter.status.is_none_or(|s| r.status == s)))
        })
        .await
    }

    /// Reads `keys` page by page, loading each id with `load` (which answers `None` for one
    /// that does not match), until `limit` match, the indexes run out, or [`SCAN`] were read.
    async fn filtered_page<'a, T, F, Fut>(
        &'a self,
        keys: &[String],
        range: (Option<i64>, Option<i64>),
        after: Option<&Cursor>,
        limit: usize,
        load: F,
    ) -> Result<Page<T>, StoreError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, StoreError>> + 'a,
    {
        let mut items = Vec::new();
        let mut position = after.cloned();
        let mut read = 0;
        loop {
            let want = limit - items.len();
            let entries = self
                .merged_page(keys, range, position.as_ref(), want)
                .await?;
            let exhausted = entries.len() < want;
            read += entries.len();
            let loaded =
                futures::future::try_join_all(entries.iter().map(|(_, id)| load(id.clone())))
                    .await?;
            items.extend(loaded.into_iter().flatten());
            if let Some((ms, id)) = entries.last() {
                position = Some(Cursor {
                    ms: *ms,
                    id: id.clone(),
                });
            }
            if exhausted {
                return Ok(Page { items, next: None });
            }
            if items.len() >= limit {
                // A full page: a cursor only if anything follows it, so that the last page
                // says it is the last.
                let more = self.merged_page(keys, range, position.as_ref(), 1).await?;
                let next = if more.is_empty() { None } else { position };
                return Ok(Page { items, next });
            }
            if read >= SCAN {
                return Ok(Page {
                    items,
                    next: position,
                });
            }
        }
    }
}
