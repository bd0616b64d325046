//! Lists that grow with use (runs, job reports, trigger events, received events), answered in
//! constant memory and bounded time at any size. Three shapes, chosen by the query string:
//!
//! - no paging parameter: the whole list as a JSON array (what the reference returns and its
//!   frontend expects), **streamed** in keyset batches of [`BATCH`] rows (`WHERE id > last
//!   ORDER BY id LIMIT n`). Memory stays at a few batches whatever the length, every statement
//!   has a fixed number of parameters, and no statement holds a connection (SQLite has one)
//!   for longer than one batch, so other requests interleave with a long download;
//! - `?limit=&offset=`: DRF's `LimitOffsetPagination`, `{count, next, previous, results}`;
//! - `?cursor=` (empty for the first page, then the `next` link): keyset pages `{next,
//!   previous, results}` (`previous` is always null) that neither skip nor repeat rows while
//!   rows are added, for clients that walk everything.
//!
//! Each list supplies its filtered [`Select`] and a batch serialiser (one function turning its
//! rows into its response type, used for every shape); ordering is by primary key, ascending or descending.

use crate::error::{AppError, AppResult};
use axum::{
    body::{Body, Bytes},
    extract::FromRequestParts,
    http::{HeaderValue, header, request::Parts},
    response::{IntoResponse, Response},
};
use base64::Engine;
use futures::future::BoxFuture;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Select, sea_query::Expr,
};
use serde::Serialize;
use std::{convert::Infallible, sync::Arc};
use utoipa::{
    IntoParams, PartialSchema, ToSchema,
    openapi::{ObjectBuilder, Ref, RefOr, Schema, schema::SchemaType},
};

/// Rows per statement when streaming a whole list.
pub const BATCH: u64 = 500;
/// Largest `limit` (larger values are clamped, as DRF's `max_limit` does).
pub const MAX_LIMIT: u64 = 1000;
/// `limit` when only `offset` is given.
pub const DEFAULT_LIMIT: u64 = 100;

/// The query string of a list: its paging parameters and filters, parsed once. A repeated
/// parameter is refused (400) rather than silently picking one.
#[derive(Debug, Default)]
pub struct ListQuery {
    pairs: Vec<(String, String)>,
}

impl ListQuery {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> AppResult<Self> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(AppError::BadRequest(format!(
                    "Invalid query string: '{}' is given more than once.",
                    truncate(&k)
                )));
            }
            if v.contains('\0') {
                return Err(AppError::BadRequest(format!(
                    "Invalid query string: '{}' contains a NUL character.",
                    truncate(&k)
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self { pairs })
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` if given and not empty.
    pub fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    /// A positive id filter (`?pipeline=3`); 400 for anything else.
    pub fn id(&self, name: &str) -> AppResult<Option<i64>> {
        self.non_empty(name)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad_param(name, "a positive integer"))
            })
            .transpose()
    }

    /// An RFC 3339 time filter (`?started_after=2026-01-01T00:00:00Z`); 400 for anything else.
    pub fn time(&self, name: &str) -> AppResult<Option<chrono::DateTime<chrono::Utc>>> {
        self.non_empty(name)
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .map_err(|_| {
                        bad_param(name, "an RFC 3339 date-time, e.g. 2026-01-31T00:00:00Z")
                    })
            })
            .transpose()
    }

    /// A bounded string filter (at most `max` characters; longer cannot match any row).
    pub fn text(&self, name: &str, max: usize) -> AppResult<Option<&str>> {
        match self.non_empty(name) {
            Some(v) if v.chars().count() > max => Err(AppError::BadRequest(format!(
                "'{name}' is longer than {max} characters."
            ))),
            other => Ok(other),
        }
    }

    /// Which shape the caller asked for.
    pub fn mode(&self) -> AppResult<Mode> {
        let limit = self
            .non_empty("limit")
            .map(|v| match v.parse::<u64>() {
                Ok(0) | Err(_) => Err(bad_param("limit", "a positive integer")),
                Ok(n) => Ok(n.min(MAX_LIMIT)),
            })
            .transpose()?;
        if let Some(cursor) = self.get("cursor") {
            if self.non_empty("offset").is_some() {
                return Err(AppError::BadRequest(
                    "Use either 'cursor' or 'offset', not both.".into(),
                ));
            }
            let after = if cursor.is_empty() {
                None
            } else {
                Some(decode_cursor(cursor)?)
            };
            return Ok(Mode::Cursor {
                limit: limit.unwrap_or(DEFAULT_LIMIT),
                after,
            });
        }
        let offset = self
            .non_empty("offset")
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| bad_param("offset", "an integer >= 0"))
            })
            .transpose()?;
        Ok(match (limit, offset) {
            (None, None) => Mode::Full,
            (limit, offset) => Mode::Offset {
                limit: limit.unwrap_or(DEFAULT_LIMIT),
                offset: offset.unwrap_or(0),
            },
        })
    }

    /// The query string of a link: every filter given, plus `extra` paging parameters.
    fn link_query(&self, extra: &[(&str, String)]) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.pairs {
            if !matches!(k.as_str(), "limit" | "offset" | "cursor") {
                ser.append_pair(k, v);
            }
        }
        for (k, v) in extra {
            ser.append_pair(k, v);
        }
        ser.finish()
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(50).collect()
}

fn bad_param(name: &str, what: &str) -> AppError {
    AppError::BadRequest(format!("'{name}' must be {what}."))
}

/// The requested list shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The whole list, streamed.
    Full,
    /// `LimitOffsetPagination`.
    Offset { limit: u64, offset: u64 },
    /// Keyset pages after the row id `after` (`None`: from the start).
    Cursor { limit: u64, after: Option<i64> },
}

/// Opaque cursors: URL-safe base64 of `after:<id>`.
fn encode_cursor(after: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("after:{after}"))
}

fn decode_cursor(raw: &str) -> AppResult<i64> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw.as_bytes())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("after:").and_then(|n| n.parse::<i64>().ok()))
        .ok_or_else(|| AppError::BadRequest("Invalid cursor.".into()))
}

/// The absolute URL of the list being answered (`scheme://host/path/`), for `next` and
/// `previous` links. The host is the request's (already checked against the allowed hosts);
/// the scheme is `https` behind a proxy that says so (`X-Forwarded-Proto`).
#[derive(Debug, Clone)]
pub struct ListUrl(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ListUrl {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let scheme = match header("x-forwarded-proto").as_deref() {
            Some("https") => "https",
            _ => "http",
        };
        let host = header("host").unwrap_or_else(|| "localhost".into());
        let path = parts.uri.path().trim_end_matches('/');
        Ok(ListUrl(format!("{scheme}://{host}{path}/")))
    }
}

/// Turns one batch of rows into `(id, item)` pairs (may look up related rows for the batch).
pub type Serialise<M, T> =
    for<'a> fn(&'a DatabaseConnection, Vec<M>) -> BoxFuture<'a, AppResult<Vec<(i64, T)>>>;

/// Paging parameters of every list that grows with use. Without any of them the whole list is
/// returned as an array (streamed, as the reference's frontend expects).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Page size, 1 to 1000 (larger values are clamped; 100 when only `offset` or `cursor` is
    /// given). Selects the `LimitOffsetPagination` shape `{count, next, previous, results}`.
    limit: Option<u64>,
    /// Rows to skip (with `limit`).
    offset: Option<u64>,
    /// Keyset paging: empty for the first page, then the `next` link's value. Pages
    /// `{next, previous: null, results}` that neither skip nor repeat rows while rows are
    /// added. Not together with `offset`.
    cursor: Option<String>,
}

/// A page of a list (`?limit=&offset=`), as DRF's `LimitOffsetPagination`.
#[derive(Serialize)]
pub struct Page<T> {
    /// Number of rows matching the filters.
    pub count: u64,
    /// URL of the next page; null on the last.
    pub next: Option<String>,
    /// URL of the previous page; null on the first.
    pub previous: Option<String>,
    pub results: Vec<T>,
}

/// A keyset page of a list (`?cursor=`).
#[derive(Serialize)]
pub struct CursorPage<T> {
    /// URL of the next page; null after the last row.
    pub next: Option<String>,
    /// Always null (keyset pages go forward).
    pub previous: Option<String>,
    pub results: Vec<T>,
}

/// What a list that grows with use answers, for the OpenAPI document: one of three shapes,
/// chosen by the query ([`PageParams`]): every row as an array (streamed), a [`Page`] with
/// `limit`/`offset`, a [`CursorPage`] with `cursor`. [`Listing::respond`] writes them; this
/// type only describes them. Written by hand because utoipa's derive would copy `T`'s whole
/// schema into each page shape instead of referring to it.
pub struct Listed<T>(std::marker::PhantomData<T>);

impl<T: ToSchema> PartialSchema for Listed<T> {
    fn schema() -> RefOr<Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Type};
        let rows = || ArrayBuilder::new().items(Ref::from_schema_name(T::name()));
        let link = |description: &str| {
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .description(Some(description))
        };
        let page = ObjectBuilder::new()
            .title(Some("Page"))
            .description(Some(
                "With `limit` and/or `offset`: a page, as DRF's `LimitOffsetPagination`.",
            ))
            .property(
                "count",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .description(Some("Number of rows matching the filters.")),
            )
            .property("next", link("URL of the next page; null on the last."))
            .property(
                "previous",
                link("URL of the previous page; null on the first."),
            )
            .property("results", rows())
            .required("count")
            .required("next")
            .required("previous")
            .required("results");
        let cursor = ObjectBuilder::new()
            .title(Some("CursorPage"))
            .description(Some(
                "With `cursor`: a keyset page, which neither skips nor repeats rows while rows \
                 are added.",
            ))
            .property(
                "next",
                link("URL of the next page; null after the last row."),
            )
            .property("previous", link("Always null (keyset pages go forward)."))
            .property("results", rows())
            .required("next")
            .required("previous")
            .required("results");
        OneOfBuilder::new()
            .item(
                rows()
                    .title(Some("All"))
                    .description(Some("Without paging parameters: every row (streamed).")),
            )
            .item(page)
            .item(cursor)
            .into()
    }
}

impl<T: ToSchema> ToSchema for Listed<T> {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into_owned(), T::schema()));
        T::schemas(schemas);
    }
}

/// One list: its filtered rows, primary key, direction and serialiser.
pub struct Listing<E: EntityTrait, M, T> {
    /// Filtered (and, for extra columns, decorated) select; no order, limit or offset.
    pub select: Select<E>,
    /// The primary key column (the keyset and the order).
    pub id: E::Column,
    /// Newest first.
    pub descending: bool,
    /// Serialiser of a batch.
    pub serialise: Serialise<M, T>,
}

impl<E, M, T> Listing<E, M, T>
where
    E: EntityTrait,
    E::Column: Send + Sync,
    M: FromQueryResult + Send + Sync + 'static,
    T: Serialize + Send + Sync + 'static,
{
    /// The rows after `after` (in list order), `offset`, at most `limit` of them.
    async fn batch(
        &self,
        db: &DatabaseConnection,
        after: Option<i64>,
        offset: Option<u64>,
        limit: u64,
    ) -> AppResult<Vec<(i64, T)>> {
        let rows = self
            .page_select(after, offset, limit)
            .into_model::<M>()
            .all(db)
            .await?;
        (self.serialise)(db, rows).await
    }

    /// The statement of one batch or page (public for the query-plan tests).
    pub fn page_select(&self, after: Option<i64>, offset: Option<u64>, limit: u64) -> Select<E> {
        let mut q = self.select.clone();
        if let Some(after) = after {
            q = q.filter(if self.descending {
                self.id.lt(after)
            } else {
                self.id.gt(after)
            });
        }
        q = if self.descending {
            q.order_by_desc(self.id)
        } else {
            q.order_by_asc(self.id)
        };
        if let Some(offset) = offset {
            q = q.offset(offset);
        }
        q.limit(limit)
    }

    /// The id of the row at `offset` in list order, reading ids only.
    async fn id_at(&self, db: &DatabaseConnection, offset: u64) -> Result<Option<i64>, DbErr> {
        let q = self.select.clone().select_only().column(self.id);
        let q = if self.descending {
            q.order_by_desc(self.id)
        } else {
            q.order_by_asc(self.id)
        };
        q.offset(offset).limit(1).into_tuple().one(db).await
    }

    /// Number of rows of the list (the filters only, none of the decorating columns).
    async fn count(&self, db: &DatabaseConnection) -> Result<u64, DbErr> {
        let n: Option<i64> = self
            .select
            .clone()
            .select_only()
            .expr_as(Expr::cust("COUNT(*)"), "n")
            .into_tuple()
            .one(db)
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Answers the list in the shape `query` asks for.
    pub async fn respond(
        self,
        db: &DatabaseConnection,
        query: &ListQuery,
        url: &ListUrl,
    ) -> AppResult<Response>
    where
        E: 'static,
    {
        match query.mode()? {
            Mode::Full => {
                // The first batch is read before answering, so an unavailable database is
                // still a 503 with a JSON body rather than a cut-off 200.
                let first = self.batch(db, None, None, BATCH).await?;
                Ok(json_response(stream_all(Arc::new(self), db.clone(), first)))
            }
            Mode::Offset { limit, offset } => {
                let count = self.count(db).await?;
                let results = if offset == 0 {
                    self.batch(db, None, None, limit).await?
                } else {
                    // Skip on the ids alone, then read the page by key: PostgreSQL would
                    // otherwise compute every skipped row's columns (the run's starter and
                    // report count included), 2 s for an offset of 500,000.
                    match self.id_at(db, offset).await? {
                        Some(first) => {
                            let before = if self.descending {
                                first + 1
                            } else {
                                first - 1
                            };
                            self.batch(db, Some(before), None, limit).await?
                        }
                        None => Vec::new(),
                    }
                };
                let next = (offset.saturating_add(limit) < count).then(|| {
                    link(
                        url,
                        query,
                        &[
                            ("limit", limit.to_string()),
                            ("offset", (offset + limit).to_string()),
                        ],
                    )
                });
                // As DRF: the first page's link carries no offset.
                let previous = (offset > 0).then(|| {
                    let mut extra = vec![("limit", limit.to_string())];
                    if offset > limit {
                        extra.push(("offset", (offset - limit).to_string()));
                    }
                    link(url, query, &extra)
                });
                Ok(axum::Json(Page {
                    count,
                    next,
                    previous,
                    results: results.into_iter().map(|(_, v)| v).collect(),
                })
                .into_response())
            }
            Mode::Cursor { limit, after } => {
                // One row more than asked tells whether there is a next page.
                let mut rows = self.batch(db, after, None, limit + 1).await?;
                let more = rows.len() as u64 > limit;
                rows.truncate(limit as usize);
                let next = match rows.last() {
                    Some((id, _)) if more => Some(link(
                        url,
                        query,
                        &[("limit", limit.to_string()), ("cursor", encode_cursor(*id))],
                    )),
                    _ => None,
                };
                Ok(axum::Json(CursorPage {
                    next,
                    previous: None,
                    results: rows.into_iter().map(|(_, v)| v).collect(),
                })
                .into_response())
            }
        }
    }
}

fn link(url: &ListUrl, query: &ListQuery, extra: &[(&str, String)]) -> String {
    format!("{}?{}", url.0, query.link_query(extra))
}

fn json_response(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// State of a streamed list between two batches.
struct Walk<E: EntityTrait, M, T> {
    listing: Arc<Listing<E, M, T>>,
    db: DatabaseConnection,
    /// Rows read but not yet written (the first batch, read before answering).
    pending: Option<Vec<(i64, T)>>,
    after: Option<i64>,
    wrote_any: bool,
    done: bool,
}

/// The whole list as a streamed JSON array: `[`, each batch's items, `]`. A database error
/// after the first batch aborts the response (the client sees a cut-off body, never a
/// well-formed but incomplete list) and is logged.
fn stream_all<E, M, T>(
    listing: Arc<Listing<E, M, T>>,
    db: DatabaseConnection,
    first: Vec<(i64, T)>,
) -> Body
where
    E: EntityTrait + 'static,
    E::Column: Send + Sync,
    M: FromQueryResult + Send + Sync + 'static,
    T: Serialize + Send + Sync + 'static,
{
    let walk = Walk {
        listing,
        db,
        pending: Some(first),
        after: None,
        wrote_any: false,
        done: false,
    };
    let stream = futures::stream::unfold(walk, |mut w| async move {
        if w.done {
            return None;
        }
        let rows = match w.pending.take() {
            Some(rows) => rows,
            None => match w.listing.batch(&w.db, w.after, None, BATCH).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %e, "streamed list aborted");
                    w.done = true;
                    return Some((Err(std::io::Error::other("list aborted")), w));
                }
            },
        };
        let mut buf = Vec::with_capacity(rows.len() * 512 + 2);
        if w.after.is_none() && !w.wrote_any {
            buf.push(b'[');
        }
        for (id, item) in &rows {
            if w.wrote_any {
                buf.push(b',');
            }
            // Serialising these types (strings, numbers, JSON values) into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut buf, item);
            w.wrote_any = true;
            w.after = Some(*id);
        }
        if (rows.len() as u64) < BATCH {
            buf.push(b']');
            w.done = true;
        }
        Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), w))
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let q = |s: &str| ListQuery::parse(Some(s)).unwrap().mode();
        assert_eq!(q("").unwrap(), Mode::Full);
        assert_eq!(q("status=failed").unwrap(), Mode::Full);
        assert_eq!(
            q("limit=10").unwrap(),
            Mode::Offset {
                limit: 10,
                offset: 0
            }
        );
        assert_eq!(
            q("offset=20").unwrap(),
            Mode::Offset {
                limit: DEFAULT_LIMIT,
                offset: 20
            }
        );
        assert_eq!(
            q("limit=5000").unwrap(),
            Mode::Offset {
                limit: MAX_LIMIT,
                offset: 0
            }
        );
        assert_eq!(
            q("cursor=").unwrap(),
            Mode::Cursor {
                limit: DEFAULT_LIMIT,
                after: None
            }
        );
        let c = encode_cursor(41);
        assert_eq!(
            q(&format!("cursor={c}&limit=2")).unwrap(),
            Mode::Cursor {
                limit: 2,
                after: Some(41)
            }
        );
        for bad in [
            "limit=0",
            "limit=-1",
            "limit=abc",
            "limit=99999999999999999999999",
            "offset=-3",
            "cursor=nope",
            "cursor=&offset=3",
        ] {
            assert_eq!(q(bad).unwrap_err().status(), 400, "{bad}");
        }
        assert_eq!(
            ListQuery::parse(Some("limit=1&limit=2"))
                .unwrap_err()
                .status(),
            400
        );
    }

    #[test]
    fn links_keep_filters() {
        let q = ListQuery::parse(Some("status=failed&limit=2&offset=4")).unwrap();
        let url = ListUrl("http://h/api/pipelines/_/runs/".into());
        assert_eq!(
            link(&url, &q, &[("limit", "2".into()), ("offset", "6".into())]),
            "http://h/api/pipelines/_/runs/?status=failed&limit=2&offset=6"
        );
    }
}
