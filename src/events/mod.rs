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
