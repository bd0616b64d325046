//! CloudEvents ingress: decoding ([`decode`]), what each event type does ([`dispatch`]:
//! health probes, `pipeline.execute`, ApiServerSource Job events, triggers), exactly-once run
//! creation keyed by `(source, id)`, CQL2-JSON trigger filters ([`cql2`]), trigger bookkeeping
//! ([`triggers`]) and the binary-mode reply event ([`reply`]). `docs/events.md` is the sender's
//! guide (status codes, filters, parameter mapping).

pub mod cql2;
pub mod decode;
pub mod dispatch;
pub mod reply;
pub mod triggers;

use crate::db::{entities::received_event, iso};
use serde_json::{Value, json};

/// The staff view of a received event (`GET /api/events/`).
pub fn received_event_json(e: &received_event::Model) -> Value {
    json!({
        "id": e.id,
        "source": e.source,
        "event_id": e.event_id,
        "type": e.event_type,
        "subject": e.subject,
        "time": e.event_time.as_ref().map(iso),
        "user": e.user,
        "outcome": e.outcome,
        "message": e.message,
        "run_ids": e.run_ids,
        "pipeline_id": e.pipeline_id,
        "received_at": iso(&e.received_at),
        "data": e.data,
        "headers": e.headers,
    })
}
