//! CloudEvents ingress (placeholder until written).
