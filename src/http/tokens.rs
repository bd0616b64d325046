//! (to be written)

use crate::state::AppState;
use axum::Router;

/// Routes of this resource.
pub fn router() -> Router<AppState> {
    Router::new()
}
