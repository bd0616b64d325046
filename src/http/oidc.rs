//! Browser sign-in through the IAM, at the paths the reference's frontend calls
//! (mozilla-django-oidc's, under `/oidc/`):
//!
//! - `GET /oidc/authenticate/`: 302 to the IAM's authorization endpoint (code flow with PKCE
//!   S256, `state` and `nonce`), with the three sealed in a short-lived pre-login cookie;
//! - `GET /oidc/callback/`: checks `state` against that cookie, exchanges the code (with the
//!   verifier and the client secret), verifies the ID token (signature, issuer, audience,
//!   expiry, nonce), creates or updates the user, sets the session and CSRF cookies, 302 to
//!   `LOGIN_REDIRECT_URL`;
//! - `GET /oidc/user-details/`: the signed-in user, or 401;
//! - `GET /oidc/logout/`: a page with a "Sign out" button (nothing is ended by a GET, so no
//!   other site can sign a user out with a link or an image); the frontend's Logout link lands
//!   there;
//! - `POST /oidc/logout/` with the CSRF token (the page's form field `csrfmiddlewaretoken`, or
//!   `X-CSRFToken`): records the session as signed out, so a copy of the cookie is refused on
//!   every replica (`auth::revocation`), clears the cookies, 303 to the IAM's end-session
//!   endpoint (or `LOGOUT_REDIRECT_URL`).
//!
//! A live session needs nothing server-side (see `auth::session`). Failures of the callback
//! are JSON errors: 400 for a callback this browser did not start (no or another pre-login
//! cookie, wrong `state`), 401 when the IAM refuses the code or the ID token does not verify,
//! 503 when the IAM cannot be reached.

use crate::{
    auth::{
        identity::Iam,
        session::{
            self, CSRF_COOKIE, LOGIN_COOKIE, PendingLogin, SESSION_COOKIE, Session, now,
            pkce_challenge, random_token, set_cookie,
        },
    },
    error::{AppError, AppResult},
    http::auth::{CurrentUser, check_csrf_token, session_of},
    http::routes::{Routes, route},
    state::AppState,
};
use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::any,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// How long a started sign-in may take at the IAM.
const LOGIN_TTL_SECS: u64 = 600;
/// Longest accepted `code` or `state`.
const MAX_PARAM_LEN: usize = 2048;

/// Routes of the sign-in.
pub fn routes<R: Routes>(routes: R) -> R {
    routes
        .add(route!(authenticate))
        .add(route!(callback))
        .add(route!(user_details))
        .add(route!(logout_page))
        .add(route!(logout))
        // Anything else under /oidc/ is a 404, never the broker-shaped event route.
        .not_an_operation("/oidc/{*rest}", any(crate::http::middleware::not_found))
}

fn iam(state: &AppState) -> AppResult<&Iam> {
    state.identities.iam.as_ref().ok_or_else(|| {
        AppError::NotFound("Sign-in through the IAM is not enabled (OIDC_ENABLED).".into())
    })
}

/// A 302 to `location` with `Set-Cookie` headers.
fn redirect(location: &str, cookies: Vec<String>) -> Response {
    let mut r = StatusCode::FOUND.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    // The redirect carries fresh secrets (state, session): never cached.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    r
}

/// `GET /oidc/authenticate/`: starts a sign-in.
#[utoipa::path(
    get,
    path = "/oidc/authenticate/",
    tag = "sign-in",
    operation_id = "oidc_authenticate",
    responses(
        (status = 302, description = "To the IAM's authorization endpoint; sets the pre-login cookie"),
        (status = 404, description = "OIDC_ENABLED is off", body = crate::http::openapi::ErrorDetail),
        (status = 503, description = "The IAM's discovery document cannot be fetched", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn authenticate(State(state): State<AppState>) -> AppResult<Response> {
    let iam = iam(&state)?;
    let endpoint = match &iam.authorization_endpoint {
        Some(e) => e.clone(),
        None => iam
            .issuer
            .discovery()
            .await?
            .authorization_endpoint
            .clone()
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!(
                    "the IAM's discovery document has no authorization_endpoint"
                ))
            })?,
    };
    let pending = PendingLogin {
        state: random_token(),
        nonce: random_token(),
        verifier: random_token(),
        exp: now() + LOGIN_TTL_SECS,
    };
    let mut url = url::Url::parse(&endpoint)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("authorization endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &iam.client_id)
        .append_pair("redirect_uri", &iam.redirect_uri)
        .append_pair("scope", &iam.scopes)
        .append_pair("state", &pending.state)
        .append_pair("nonce", &pending.nonce)
        .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
        .append_pair("code_challenge_method", "S256");
    let cookie = set_cookie(
        LOGIN_COOKIE,
        &state.sessions.seal("login", &pending),
        "/oidc",
        LOGIN_TTL_SECS,
        true,
        state.config.server.secure_cookies(),
    );
    Ok(redirect(url.as_str(), vec![cookie]))
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    id_token: Option<String>,
}

/// `GET /oidc/callback/`: finishes a sign-in.
#[utoipa::path(
    get,
    path = "/oidc/callback/",
    tag = "sign-in",
    operation_id = "oidc_callback",
    params(
        ("code" = Option<String>, Query, description = "Authorization code"),
        ("state" = Option<String>, Query, description = "The state of the sign-in"),
    ),
    responses(
        (status = 302, description = "Signed in: session and csrftoken cookies set, to LOGIN_REDIRECT_URL"),
        (status = 400, description = "No sign-in of this browser, or a wrong state", body = crate::http::openapi::ErrorDetail),
        (status = 401, description = "The IAM refused the code, or the ID token does not verify", body = crate::http::openapi::ErrorDetail),
        (status = 503, description = "The IAM cannot be reached", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, QueryRejection>,
) -> AppResult<Response> {
    let iam = iam(&state)?;
    let Query(q) = query.map_err(|e| AppError::BadRequest(format!("Invalid callback: {e}")))?;
    let pending = match session::cookie(&headers, LOGIN_COOKIE)
        .map(|v| state.sessions.open_login(v))
    {
        Some(Ok(p)) => p,
        Some(Err(session::CookieError::Expired)) => {
            return Err(AppError::BadRequest(
                "The sign-in took too long; start again at /oidc/authenticate/.".into(),
            ));
        }
        _ => {
            return Err(AppError::BadRequest(
                "No sign-in was started in this browser (missing or invalid pre-login cookie); start at /oidc/authenticate/.".into(),
            ));
        }
    };
    if let Some(error) = q.error {
        let description = q.error_description.unwrap_or_default();
        return Err(AppError::Unauthorized(format!(
            "The IAM refused the sign-in: {} {}",
            error.chars().take(100).collect::<String>(),
            description.chars().take(300).collect::<String>()
        )));
    }
    let (Some(code), Some(returned_state)) = (q.code, q.state) else {
        return Err(AppError::BadRequest(
            "The callback needs code and state.".into(),
        ));
    };
    if code.len() > MAX_PARAM_LEN || returned_state.len() > MAX_PARAM_LEN {
        return Err(AppError::BadRequest("code or state is too long.".into()));
    }
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        returned_state.as_bytes(),
        pending.state.as_bytes(),
    )) {
        return Err(AppError::BadRequest(
            "The state does not match the sign-in started in this browser.".into(),
        ));
    }
    let id_token = exchange_code(iam, &code, &pending.verifier).await?;
    let claims = iam.verify_id_token(&id_token, &pending.nonce).await?;
    let user = iam.upsert_user(&state.db, &claims, true).await?;
    state.users.evict(user.id);
    let name = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .chars()
            .take(150)
            .collect::<String>()
    };
    let session = Session {
        sid: random_token(),
        uid: user.id,
        exp: now() + state.config.oidc.session_lifetime_secs,
        csrf: random_token(),
        first_name: name("given_name"),
        last_name: name("family_name"),
    };
    tracing::info!(user = %user.username, "signed in through the IAM");
    Ok(redirect(
        &iam.login_redirect,
        session_cookies(&state, &session),
    ))
}

/// The session, CSRF and cleared pre-login cookies.
fn session_cookies(state: &AppState, session: &Session) -> Vec<String> {
    let secure = state.config.server.secure_cookies();
    let ttl = state.config.oidc.session_lifetime_secs;
    vec![
        set_cookie(
            SESSION_COOKIE,
            &state.sessions.seal("session", session),
            "/",
            ttl,
            true,
            secure,
        ),
        // Readable by the frontend's script, which copies it into X-CSRFToken.
        set_cookie(CSRF_COOKIE, &session.csrf, "/", ttl, false, secure),
        set_cookie(LOGIN_COOKIE, "", "/oidc", 0, true, secure),
    ]
}

/// Exchanges the code at the token endpoint; returns the ID token.
async fn exchange_code(iam: &Iam, code: &str, verifier: &str) -> AppResult<String> {
    let endpoint = match &iam.token_endpoint {
        Some(e) => e.clone(),
        None => iam
            .issuer
            .discovery()
            .await?
            .token_endpoint
            .clone()
            .ok_or_else(|| {
                AppError::Internal(anyhow::anyhow!(
                    "the IAM's discovery document has no token_endpoint"
                ))
            })?,
    };
    let (status, body) = iam
        .issuer
        .post_form(
            &endpoint,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &iam.redirect_uri),
                ("code_verifier", verifier),
                ("client_id", &iam.client_id),
            ],
            Some((&iam.client_id, &iam.client_secret)),
        )
        .await
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "the IAM's token endpoint cannot be reached");
            AppError::Unavailable {
                detail: "The IAM cannot be reached right now; retry later.".into(),
                retry_after: 2,
            }
        })?;
    if status.is_client_error() {
        // invalid_grant: a used, expired or foreign code (RFC 6749 5.2).
        let error = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {}", status.as_u16()));
        tracing::warn!(%error, "the IAM refused an authorization code");
        return Err(AppError::Unauthorized(format!(
            "The IAM refused the authorization code ({}); sign in again.",
            error.chars().take(100).collect::<String>()
        )));
    }
    if !status.is_success() {
        tracing::error!(status = status.as_u16(), "the IAM's token endpoint failed");
        return Err(AppError::Unavailable {
            detail: "The IAM cannot exchange the code right now; retry later.".into(),
            retry_after: 2,
        });
    }
    serde_json::from_slice::<TokenAnswer>(&body)
        .ok()
        .and_then(|t| t.id_token)
        .ok_or_else(|| AppError::Unauthorized("The IAM's token answer carries no ID token.".into()))
}

/// The signed-in user, in the shape the frontend reads.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 3, "username": "alice", "email": "alice@example.org", "first_name": "Alice", "last_name": "", "is_active": true, "is_admin": false, "is_superuser": false}))]
pub struct UserDetails {
    pub id: i64,
    pub username: String,
    pub email: String,
    /// From the IAM's ID token, kept in the session.
    pub first_name: String,
    pub last_name: String,
    pub is_active: bool,
    /// Same as `is_staff`.
    pub is_admin: bool,
    /// Same as `is_staff`: staff may do everything.
    pub is_superuser: bool,
}

/// `GET /oidc/user-details/`: the signed-in user in the shape the frontend reads.
#[utoipa::path(
    get,
    path = "/oidc/user-details/",
    tag = "sign-in",
    operation_id = "oidc_user_details",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = UserDetails),
        (status = 401, description = "Not signed in", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn user_details(
    State(state): State<AppState>,
    headers: HeaderMap,
    CurrentUser(user): CurrentUser,
) -> Json<UserDetails> {
    // Names live in the session (there are no columns for them).
    let session = session_of(&headers, &state, true).ok().flatten();
    let (first, last) = match &session {
        Some(s) if s.uid == user.id => (s.first_name.as_str(), s.last_name.as_str()),
        _ => ("", ""),
    };
    Json(UserDetails {
        id: user.id,
        username: user.username.clone(),
        email: user.email.clone(),
        first_name: first.to_owned(),
        last_name: last.to_owned(),
        is_active: user.is_active,
        is_admin: user.is_staff,
        is_superuser: user.is_staff,
    })
}

/// The session of a request if it is live: sealed by us, not expired, not signed out.
async fn live_session(state: &AppState, headers: &HeaderMap) -> AppResult<Option<Session>> {
    let Some(session) = session_of(headers, state, true)? else {
        return Ok(None);
    };
    if state
        .revocations
        .is_revoked(&state.db, &session.sid)
        .await?
    {
        return Ok(None);
    }
    Ok(Some(session))
}

/// Text safe inside HTML (element content and double-quoted attributes).
fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /oidc/logout/`: where the frontend's Logout link goes. Ends nothing (a GET any page can
/// trigger must not): a page whose button posts the sign-out with the session's CSRF token.
#[utoipa::path(
    get,
    path = "/oidc/logout/",
    tag = "sign-in",
    operation_id = "oidc_logout_page",
    responses(
        (status = 200, description = "An HTML page: a Sign out button (a form posting to /oidc/logout/ with the CSRF token), or a note that nobody is signed in", body = String, content_type = "text/html"),
    )
)]
async fn logout_page(State(state): State<AppState>, headers: HeaderMap) -> AppResult<Response> {
    let body = match live_session(&state, &headers).await? {
        Some(session) => format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign out</title></head>\n<body>\n<h1>Sign out of Application Quality?</h1>\n<form method=\"post\" action=\"/oidc/logout/\">\n<input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{}\">\n<button type=\"submit\">Sign out</button>\n</form>\n<p><a href=\"{}\">Stay signed in</a></p>\n</body></html>\n",
            html_escape(&session.csrf),
            html_escape(&state.config.oidc.login_redirect_url)
        ),
        None => format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed out</title></head>\n<body>\n<h1>You are not signed in.</h1>\n<p><a href=\"{}\">Continue</a></p>\n</body></html>\n",
            html_escape(&state.config.oidc.logout_redirect_url)
        ),
    };
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // It carries the CSRF token: never cached, never framed (no clickjacking of the button).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    Ok(r)
}

/// The CSRF token a sign-out submitted: the form field of the page's form, else the header.
fn submitted_csrf(headers: &HeaderMap, body: &[u8]) -> String {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if form
        && let Some((_, v)) =
            url::form_urlencoded::parse(body).find(|(k, _)| k == "csrfmiddlewaretoken")
    {
        return v.into_owned();
    }
    headers
        .get(session::CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// `POST /oidc/logout/`: ends the session on every replica and in this browser, then at the IAM.
#[utoipa::path(
    post,
    path = "/oidc/logout/",
    tag = "sign-in",
    operation_id = "oidc_logout",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`csrfmiddlewaretoken=<the csrftoken cookie>` (or send it as X-CSRFToken)"),
    responses(
        (status = 303, description = "Session signed out (a copy of its cookie is refused everywhere), cookies cleared; to the IAM's end-session endpoint or LOGOUT_REDIRECT_URL. Without a live session only the cookies are cleared"),
        (status = 403, description = "A live session without the right CSRF token or from another origin", body = crate::http::openapi::ErrorDetail),
        (status = 503, description = "The database cannot record the sign-out; nothing was changed, retry", body = crate::http::openapi::ErrorDetail),
    )
)]
async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    if let Some(session) = live_session(&state, &headers).await? {
        check_csrf_token(&headers, &state, &session, &submitted_csrf(&headers, &body))?;
        let expires = chrono::DateTime::from_timestamp(session.exp as i64, 0)
            .unwrap_or_else(chrono::Utc::now);
        state
            .revocations
            .revoke(&state.db, &session.sid, expires)
            .await?;
        tracing::info!(user_id = session.uid, "signed out");
    }
    let secure = state.config.server.secure_cookies();
    let cookies = vec![
        set_cookie(SESSION_COOKIE, "", "/", 0, true, secure),
        set_cookie(CSRF_COOKIE, "", "/", 0, false, secure),
        set_cookie(LOGIN_COOKIE, "", "/oidc", 0, true, secure),
    ];
    let Some(iam) = state.identities.iam.as_ref() else {
        return Ok(see_other(&state.config.oidc.logout_redirect_url, cookies));
    };
    let endpoint = match &iam.logout_endpoint {
        Some(e) => Some(e.clone()),
        // Signing out must work when the IAM is down: then only this service's session ends.
        None => match iam.issuer.discovery().await {
            Ok(d) => d.end_session_endpoint.clone(),
            Err(_) => None,
        },
    };
    let location = endpoint
        .and_then(|e| url::Url::parse(&e).ok())
        .map(|mut url| {
            url.query_pairs_mut()
                .append_pair("client_id", &iam.client_id)
                .append_pair(&iam.logout_parameter, &iam.post_logout_redirect);
            url.to_string()
        })
        .unwrap_or_else(|| iam.logout_redirect.clone());
    Ok(see_other(&location, cookies))
}

/// A 303 (the browser follows a POST's answer with a GET) to `location` with cookies.
fn see_other(location: &str, cookies: Vec<String>) -> Response {
    let mut r = redirect(location, cookies);
    *r.status_mut() = StatusCode::SEE_OTHER;
    r
}
