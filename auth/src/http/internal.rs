//! `GET /internal/v1/revocations?after=<seq>` (operator key): what the
//! engine and the persistence API poll to enforce revocations locally (see
//! [`crate::revocation`]).

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{OperatorAuth, QueryParams};
use crate::error::AuthError;
use crate::limits::REVOCATIONS_PAGE_MAX;
use crate::revocation::RevocationsPage;

pub async fn revocations(
    State(state): State<AppState>,
    _operator: OperatorAuth,
    query: QueryParams,
) -> Result<Json<RevocationsPage>, AuthError> {
    query.allow(&["after"])?;
    let after = query.cursor("after")?.unwrap_or(0);
    Ok(Json(state.revocations.page(after, REVOCATIONS_PAGE_MAX)))
}
