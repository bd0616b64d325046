//! Replay tooling behind `application-quality-api events export|replay`.
//!
//! `export` writes the stored received events (`aq_received_event`) as CloudEvents JSON lines
//! (structured mode: `specversion`, `id`, `source`, `type`, `subject`, `time`, the `user`
//! extension, `datacontenttype` and `data`), in the order they were received. `replay` sends
//! them again in binary mode, from the database or from an export file, to our service or to a
//! broker. Events keep their `source` and `id`, so our service recognises them and answers
//! `.duplicate` without a second run; `--new-id` gives each a fresh id to force new executions.
//!
//! Extension attributes other than `user` are replayed when the event arrived in binary mode
//! (they are stored with the request headers as `ce-<name>`); of a structured-mode delivery
//! only the core attributes, `user` and the data are stored.

use crate::db::entities::received_event;
use anyhow::{Context, bail};
use axum::body::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use cloudevents::{AttributesReader, AttributesWriter, Event, EventBuilder, EventBuilderV10};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;
use std::{
    collections::BTreeMap,
    fmt,
    io::{BufRead, Write},
    sync::Arc,
    time::Duration,
};

/// Rows read from the database per query.
const PAGE: u64 = 500;
/// Failure messages kept in a [`Summary`] (the counts cover all of them).
const MAX_REPORTED_FAILURES: usize = 20;
/// A replay stops after this many events in a row got no HTTP answer at all.
const MAX_CONSECUTIVE_TRANSPORT_ERRORS: usize = 5;
/// Largest reply body read (our replies are a few hundred bytes, a broker's are empty).
const MAX_REPLY_BYTES: usize = 1 << 20;

/// Attributes that are not extensions (never copied from the stored `ce-*` headers).
const CORE_ATTRIBUTES: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
    "user",
];

/// Which events to export or replay.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Stored events received at or after this instant; for an export file, events whose
    /// `time` is at or after it (events without `time` are kept).
    pub since: Option<DateTime<Utc>>,
    /// Events whose type starts with this prefix.
    pub type_prefix: Option<String>,
}

impl Filter {
    /// Whether an event read from an export file passes.
    pub fn matches(&self, event: &Event) -> bool {
        let type_ok = self
            .type_prefix
            .as_deref()
            .is_none_or(|p| event.ty().starts_with(p));
        let time_ok = match (self.since, event.time()) {
            (Some(since), Some(t)) => *t >= since,
            _ => true,
        };
        type_ok && time_ok
    }
}

/// Parses `--since`: an RFC 3339 instant (`2026-11-25T08:00:00Z`), a date (`2026-11-25`,
/// midnight UTC), or a duration before `now` (`90s`, `30m`, `24h`, `7d`, `2w`, `1h30m`).
pub fn parse_since(value: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let v = value.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_duration(v).map(|d| now - d).ok_or_else(|| {
        format!("{value:?} is neither an RFC 3339 time nor a duration like 24h, 30m or 7d")
    })
}

/// `--since` for clap: relative durations count back from now.
pub fn since_arg(value: &str) -> Result<DateTime<Utc>, String> {
    parse_since(value, Utc::now())
}

/// A duration as number-unit pairs (`s`, `m`, `h`, `d`, `w`), e.g. `1h30m`.
fn parse_duration(value: &str) -> Option<chrono::Duration> {
    if value.is_empty() {
        return None;
    }
    let mut total = chrono::Duration::zero();
    let mut digits = String::new();
    for c in value.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let unit = match c {
            's' => chrono::Duration::try_seconds(n)?,
            'm' => chrono::Duration::try_minutes(n)?,
            'h' => chrono::Duration::try_hours(n)?,
            'd' => chrono::Duration::try_days(n)?,
            'w' => chrono::Duration::try_weeks(n)?,
            _ => return None,
        };
        total = total.checked_add(&unit)?;
    }
    // A trailing number without a unit is ambiguous: refuse it.
    digits.is_empty().then_some(total)
}

/// The CloudEvent a stored row describes.
pub fn to_cloudevent(row: &received_event::Model) -> anyhow::Result<Event> {
    let mut b = EventBuilderV10::new()
        .id(row.event_id.clone())
        .source(row.source.clone())
        .ty(row.event_type.clone());
    if let Some(subject) = &row.subject {
        b = b.subject(subject.clone());
    }
    if let Some(time) = row.event_time {
        b = b.time(time);
    }
    if let Some(user) = &row.user {
        b = b.extension("user", user.clone());
    }
    if let Some(headers) = row.headers.as_object() {
        for (name, value) in headers {
            let Some(ext) = name.strip_prefix("ce-") else {
                continue;
            };
            let valid_name = !ext.is_empty()
                && ext.len() <= 20
                && ext
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if valid_name
                && !CORE_ATTRIBUTES.contains(&ext)
                && let Some(v) = value.as_str()
            {
                b = b.extension(ext, v.to_owned());
            }
        }
    }
    if let Some(data) = &row.data {
        b = b.data("application/json", data.clone());
    }
    b.build().with_context(|| {
        format!(
            "stored event {} ({} / {}) is not a valid CloudEvent",
            row.id, row.source, row.event_id
        )
    })
}

/// One page of stored events after `after` (received time, row id), in received order, among
/// the rows up to `last_id`.
async fn page(
    db: &DatabaseConnection,
    filter: &Filter,
    last_id: i64,
    after: Option<(DateTime<Utc>, i64)>,
) -> anyhow::Result<Vec<received_event::Model>> {
    use received_event::Column;
    let mut select = received_event::Entity::find()
        .filter(Column::Id.lte(last_id))
        .order_by_asc(Column::ReceivedAt)
        .order_by_asc(Column::Id)
        .limit(PAGE);
    if let Some(since) = filter.since {
        select = select.filter(Column::ReceivedAt.gte(since));
    }
    if let Some(prefix) = filter.type_prefix.as_deref().filter(|p| !p.is_empty()) {
        select = select.filter(Column::EventType.starts_with(prefix));
    }
    if let Some((t, id)) = after {
        select = select.filter(
            Condition::any().add(Column::ReceivedAt.gt(t)).add(
                Condition::all()
                    .add(Column::ReceivedAt.eq(t))
                    .add(Column::Id.gt(id)),
            ),
        );
    }
    select.all(db).await.context("reading stored events")
}

/// Calls `each` for every stored event that passes the filter, in received order, reading
/// the table a page at a time. Only rows that existed at the start are read: a replay into
/// the service that owns this database stores new events as it goes (with `--new-id`), and
/// those must not be replayed in turn.
async fn for_each_stored(
    db: &DatabaseConnection,
    filter: &Filter,
    mut each: impl AsyncFnMut(Event) -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let last_id: Option<i64> = received_event::Entity::find()
        .select_only()
        .column_as(received_event::Column::Id.max(), "last")
        .into_tuple()
        .one(db)
        .await
        .context("reading stored events")?
        .flatten();
    let Some(last_id) = last_id else {
        return Ok(());
    };
    let mut after = None;
    loop {
        let rows = page(db, filter, last_id, after).await?;
        let Some(last) = rows.last() else {
            return Ok(());
        };
        after = Some((last.received_at, last.id));
        for row in &rows {
            if !each(to_cloudevent(row)?).await? {
                return Ok(());
            }
        }
    }
}

/// Writes the stored events that pass the filter as JSON lines; returns how many.
pub async fn export(
    db: &DatabaseConnection,
    filter: &Filter,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut n = 0usize;
    for_each_stored(db, filter, async |event| {
        serde_json::to_writer(&mut *out, &event).context("writing the export")?;
        out.write_all(b"\n").context("writing the export")?;
        n += 1;
        Ok(true)
    })
    .await?;
    out.flush().context("writing the export")?;
    Ok(n)
}

/// Reads an export file: one structured-mode CloudEvent per line (blank lines skipped). The
/// whole file is checked before anything is sent, so a bad line cannot leave a half replay.
pub fn read_export(input: impl BufRead) -> anyhow::Result<Vec<Event>> {
    let mut events = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(&line)
            .with_context(|| format!("line {} is not a CloudEvent", i + 1))?;
        events.push(event);
    }
    Ok(events)
}

/// Where and how to send.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Target URL: our service (`https://aq.example.org/`, `.../api/events/`) or a broker.
    pub to: String,
    /// Give each event a fresh UUID so the receiver treats it as new.
    pub new_id: bool,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// Per-request time limit.
    pub timeout: Duration,
}

/// What a replay did. Any 2xx answer counts as a success (a broker answers 202 with no body);
/// our service's reply type (`...duplicate`, `...accepted`) is counted by its last segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Events sent (attempted).
    pub sent: usize,
    /// Answered with a 2xx status.
    pub succeeded: usize,
    /// Answered with another status, or not answered.
    pub failed: usize,
    /// Answers by HTTP status.
    pub by_status: BTreeMap<u16, usize>,
    /// 2xx answers by reply event type suffix (`duplicate`, `accepted`, `ignored`, `ok`).
    pub by_reply: BTreeMap<String, usize>,
    /// Events that got no HTTP answer (connection refused, timeout).
    pub transport_errors: usize,
    /// The first failures, one line each.
    pub failures: Vec<String>,
    /// Whether the replay stopped early because the target stopped answering.
    pub gave_up: bool,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "sent {} event(s): {} succeeded, {} failed",
            self.sent, self.succeeded, self.failed
        )?;
        for (status, n) in &self.by_status {
            writeln!(f, "status {status}: {n}")?;
        }
        for (reply, n) in &self.by_reply {
            writeln!(f, "reply {reply}: {n}")?;
        }
        if self.transport_errors > 0 {
            writeln!(f, "no answer: {}", self.transport_errors)?;
        }
        if self.gave_up {
            writeln!(f, "stopped early: the target did not answer")?;
        }
        Ok(())
    }
}

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Sends events one by one, in order, and keeps the [`Summary`].
struct Replayer {
    client: HttpClient,
    uri: http::Uri,
    opts: ReplayOptions,
    summary: Summary,
    consecutive_transport_errors: usize,
}

impl Replayer {
    fn new(opts: &ReplayOptions) -> anyhow::Result<Self> {
        let uri: http::Uri = opts
            .to
            .parse()
            .with_context(|| format!("--to {:?} is not a URL", opts.to))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("--to must be an http:// or https:// URL, got {:?}", opts.to),
        };
        if uri.host().is_none() {
            bail!("--to {:?} has no host", opts.to);
        }
        Ok(Replayer {
            client: http_client(https)?,
            uri,
            opts: opts.clone(),
            summary: Summary::default(),
            consecutive_transport_errors: 0,
        })
    }

    /// Sends one event; `false` when the replay should stop.
    async fn send(&mut self, mut event: Event) -> anyhow::Result<bool> {
        if self.opts.new_id {
            event.set_id(uuid::Uuid::new_v4().to_string());
        }
        let label = format!("{} / {}", event.source(), event.id());
        let binary = http::Request::<Option<Vec<u8>>>::try_from(event)
            .with_context(|| format!("event {label} cannot be encoded in binary mode"))?;
        let (parts, body) = binary.into_parts();
        let mut req = http::Request::post(self.uri.clone())
            .header(
                http::header::USER_AGENT,
                concat!(
                    "application-quality-api/",
                    env!("CARGO_PKG_VERSION"),
                    " replay"
                ),
            )
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("building the request")?;
        req.headers_mut().extend(parts.headers);
        if let Some(token) = &self.opts.token {
            let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value")?;
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
        }
        self.summary.sent += 1;
        match tokio::time::timeout(self.opts.timeout, self.exchange(req)).await {
            Ok(Ok((status, reply_type, body))) => {
                self.consecutive_transport_errors = 0;
                *self.summary.by_status.entry(status.as_u16()).or_default() += 1;
                if status.is_success() {
                    self.summary.succeeded += 1;
                    if let Some(kind) = reply_type {
                        *self.summary.by_reply.entry(kind).or_default() += 1;
                    }
                } else {
                    self.fail(format!(
                        "{label}: HTTP {}: {}",
                        status.as_u16(),
                        detail(&body)
                    ));
                }
            }
            Ok(Err(e)) => self.transport_error(format!("{label}: {e:#}")),
            Err(_) => self.transport_error(format!(
                "{label}: no answer within {} s",
                self.opts.timeout.as_secs()
            )),
        }
        if self.consecutive_transport_errors >= MAX_CONSECUTIVE_TRANSPORT_ERRORS {
            self.summary.gave_up = true;
            return Ok(false);
        }
        Ok(true)
    }

    async fn exchange(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> anyhow::Result<(http::StatusCode, Option<String>, Bytes)> {
        let response = self.client.request(req).await?;
        let status = response.status();
        let reply_type = response
            .headers()
            .get("ce-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
            .map(str::to_owned);
        let body = Limited::new(response.into_body(), MAX_REPLY_BYTES)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
            .to_bytes();
        Ok((status, reply_type, body))
    }

    fn fail(&mut self, message: String) {
        self.summary.failed += 1;
        if self.summary.failures.len() < MAX_REPORTED_FAILURES {
            self.summary.failures.push(message);
        }
    }

    fn transport_error(&mut self, message: String) {
        self.summary.transport_errors += 1;
        self.consecutive_transport_errors += 1;
        self.fail(message);
    }
}

/// The `detail` of a JSON error body, else the body's start.
fn detail(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v["detail"].is_string() => v["detail"].as_str().unwrap_or_default().to_owned(),
        _ => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// An HTTP/1.1 client for http and https URLs. TLS uses the ring provider explicitly (no
/// process-wide default needed) and the system's root certificates; when there are none, only
/// plain http targets work.
pub(crate) fn http_client(https: bool) -> anyhow::Result<HttpClient> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = || {
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS configuration")
    };
    let tls = match builder()?.with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) if https => bail!("no system root certificates for an https target: {e}"),
        Err(_) => builder()?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Replays the stored events that pass the filter, in received order.
pub async fn replay_stored(
    db: &DatabaseConnection,
    filter: &Filter,
    opts: &ReplayOptions,
) -> anyhow::Result<Summary> {
    let mut replayer = Replayer::new(opts)?;
    for_each_stored(db, filter, async |event| replayer.send(event).await).await?;
    Ok(replayer.summary)
}

/// Replays events read from an export file (see [`read_export`]) that pass the filter.
pub async fn replay_events(
    events: Vec<Event>,
    filter: &Filter,
    opts: &ReplayOptions,
) -> anyhow::Result<Summary> {
    let mut replayer = Replayer::new(opts)?;
    for event in events.into_iter().filter(|e| filter.matches(e)) {
        if !replayer.send(event).await? {
            break;
        }
    }
    Ok(replayer.summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn since_accepts_times_dates_and_durations() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
        assert_eq!(
            parse_since("2026-11-24T08:30:00Z", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 24, 8, 30, 0).unwrap()
        );
        assert_eq!(
            parse_since("2026-11-24T09:30:00+01:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 24, 8, 30, 0).unwrap()
        );
        assert_eq!(
            parse_since("2026-11-20", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("24h", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_since("1h30m", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 25, 10, 30, 0).unwrap()
        );
        assert_eq!(
            parse_since("2w", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 11, 12, 0, 0).unwrap()
        );
        for bad in [
            "",
            "24",
            "h",
            "3x",
            "yesterday",
            "-5m",
            "99999999999999999999d",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad:?}");
        }
    }

    fn row() -> received_event::Model {
        received_event::Model {
            id: 7,
            source: "curl".into(),
            event_id: "e-1".into(),
            event_type: "org.eoepca.application-quality.events.pipeline.execute".into(),
            subject: Some("pipelines/3".into()),
            event_time: Some(Utc.with_ymd_and_hms(2026, 11, 25, 8, 0, 0).unwrap()),
            user: Some("eric".into()),
            data: Some(json!({"parameters": {}})),
            headers: json!({
                "ce-id": "e-1",
                "ce-user": "eric",
                "ce-repository": "aq",
                "ce-Bad_Name": "x",
                "content-type": "application/json"
            }),
            outcome: "accepted".into(),
            message: None,
            run_ids: json!([1]),
            pipeline_id: Some(3),
            received_at: Utc::now(),
        }
    }

    #[test]
    fn stored_rows_become_structured_events() {
        let event = to_cloudevent(&row()).unwrap();
        let v: Value = serde_json::to_value(&event).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["id"], "e-1");
        assert_eq!(v["source"], "curl");
        assert_eq!(v["subject"], "pipelines/3");
        assert_eq!(v["time"], "2026-11-25T08:00:00Z");
        assert_eq!(v["user"], "eric");
        assert_eq!(v["repository"], "aq");
        assert!(v.get("Bad_Name").is_none() && v.get("bad_name").is_none());
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["data"], json!({"parameters": {}}));
        // And back: what `replay --input` reads.
        let line = serde_json::to_string(&event).unwrap();
        let back = read_export(format!("{line}\n\n{line}\n").as_bytes()).unwrap();
        assert_eq!(back, vec![event.clone(), event]);
        let err = read_export("{}\n".as_bytes()).unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }

    #[test]
    fn binary_mode_keeps_source_and_id() {
        let event = to_cloudevent(&row()).unwrap();
        let req = http::Request::<Option<Vec<u8>>>::try_from(event).unwrap();
        let h = req.headers();
        assert_eq!(h["ce-id"], "e-1");
        assert_eq!(h["ce-source"], "curl");
        assert_eq!(h["ce-user"], "eric");
        assert_eq!(h["content-type"], "application/json");
        let body: Value = serde_json::from_slice(req.body().as_ref().unwrap()).unwrap();
        assert_eq!(body, json!({"parameters": {}}));
    }

    #[test]
    fn file_filter() {
        let event = to_cloudevent(&row()).unwrap();
        let at = |h| Utc.with_ymd_and_hms(2026, 11, 25, h, 0, 0).unwrap();
        assert!(Filter::default().matches(&event));
        let by_type = |p: &str| Filter {
            type_prefix: Some(p.into()),
            ..Default::default()
        };
        assert!(by_type("org.eoepca.").matches(&event));
        assert!(!by_type("com.github.").matches(&event));
        let since = |t| Filter {
            since: Some(t),
            ..Default::default()
        };
        assert!(since(at(8)).matches(&event));
        assert!(!since(at(9)).matches(&event));
    }

    #[test]
    fn targets_must_be_http_urls() {
        let opts = |to: &str| ReplayOptions {
            to: to.into(),
            new_id: false,
            token: None,
            timeout: Duration::from_secs(1),
        };
        assert!(Replayer::new(&opts("ftp://x/")).is_err());
        assert!(Replayer::new(&opts("not a url")).is_err());
        assert!(Replayer::new(&opts("/relative")).is_err());
        assert!(Replayer::new(&opts("http://127.0.0.1:9/")).is_ok());
    }
}
