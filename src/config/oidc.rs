//! Browser sign-in through the IAM (OpenID Connect), its sessions, and the IAM's access tokens
//! on the REST API.

use super::{ConfigError, check_url, split_list};
use serde::Deserialize;

/// The IAM as this service's OpenID provider.
#[derive(Debug, Clone, Deserialize)]
pub struct OidcConfig {
    /// Browser sign-in through the IAM (`true`/`false`, the reference's variable): adds the
    /// `/oidc/` routes and session cookies, and accepts the IAM's access tokens as Bearer.
    #[serde(default, deserialize_with = "super::lenient_bool")]
    pub oidc_enabled: bool,
    /// The IAM's discovery document (`.../.well-known/openid-configuration`).
    #[serde(default)]
    pub oidc_connect_config_url: Option<String>,
    /// The IAM's exact `iss`. Default: `OIDC_CONNECT_CONFIG_URL` without the well-known suffix.
    #[serde(default)]
    pub oidc_issuer: Option<String>,
    /// This service's client id at the IAM.
    #[serde(default)]
    pub oidc_rp_client_id: Option<String>,
    /// Its client secret (from a Secret).
    #[serde(default)]
    pub oidc_rp_client_secret: Option<String>,
    /// Scopes requested at sign-in, space-separated.
    #[serde(default = "default_oidc_scopes")]
    pub oidc_rp_scopes: String,
    /// Pins the ID token's signature algorithm (e.g. `RS256`); default: any asymmetric one.
    #[serde(default)]
    pub oidc_rp_sign_algo: Option<String>,
    /// Overrides of the discovered endpoints.
    #[serde(default)]
    pub oidc_op_authorization_endpoint: Option<String>,
    /// Token endpoint override.
    #[serde(default)]
    pub oidc_op_token_endpoint: Option<String>,
    /// JWKS override.
    #[serde(default)]
    pub oidc_op_jwks_endpoint: Option<String>,
    /// Read for compatibility with the reference's settings; not needed (claims come from the
    /// ID token).
    #[serde(default)]
    pub oidc_op_user_endpoint: Option<String>,
    /// RP-initiated logout endpoint override (default: the discovered `end_session_endpoint`).
    #[serde(default)]
    pub oidc_op_logout_endpoint: Option<String>,
    /// Where the IAM sends the browser after logging out. Default: `PUBLIC_URL/`.
    #[serde(default)]
    pub oidc_post_logout_redirect_url: Option<String>,
    /// Name of the logout endpoint's redirect parameter.
    #[serde(default = "default_logout_parameter")]
    pub oidc_logout_redirect_uri_parameter_name: String,
    /// The `redirect_uri` registered at the IAM. Default: `PUBLIC_URL/oidc/callback/`.
    #[serde(default)]
    pub oidc_rp_redirect_uri: Option<String>,
    /// Claim holding the username.
    #[serde(default = "default_username_claim")]
    pub oidc_preferred_username_claim_field: String,
    /// A first sign-in whose username names an existing account not yet linked to any identity
    /// is linked to that account (instead of getting an account of its own). Never a staff
    /// account unless the IAM's staff rule makes the identity staff. Off by default.
    #[serde(default, deserialize_with = "super::lenient_bool")]
    pub oidc_link_by_username: bool,
    /// Claim (a dotted path such as `realm_access.roles` reaches nested objects) whose values
    /// decide staff status, with `OIDC_STAFF_VALUES`.
    #[serde(default = "default_staff_claim")]
    pub oidc_staff_claim: String,
    /// Values of `OIDC_STAFF_CLAIM` that make a user staff, comma-separated. Empty: the IAM
    /// never changes staff status.
    #[serde(default)]
    oidc_staff_values: String,
    /// Accepted audiences of IAM access tokens on the REST API (`aud`, or `azp`),
    /// comma-separated. Default: the client id.
    #[serde(default)]
    oidc_api_audiences: String,
    /// Where the browser goes after signing in.
    #[serde(default = "default_login_redirect")]
    pub login_redirect_url: String,
    /// Where the browser goes after logging out when the IAM has no end-session endpoint.
    #[serde(default = "default_login_redirect")]
    pub logout_redirect_url: String,
    /// Lifetime of a browser session in seconds.
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime_secs: u64,
    /// `OIDC_STAFF_VALUES`, split.
    #[serde(skip)]
    pub staff_values: Vec<String>,
    /// `OIDC_API_AUDIENCES`, split (empty: the client id).
    #[serde(skip)]
    pub api_audiences: Vec<String>,
}

impl OidcConfig {
    /// With `OIDC_ENABLED`, a client id and secret and either a discovery URL or an issuer;
    /// every IAM URL https (http only to loopback); the lists split.
    pub(super) fn check(&mut self) -> Result<(), ConfigError> {
        if self.session_lifetime_secs == 0 {
            return Err(ConfigError("SESSION_LIFETIME_SECS must be positive".into()));
        }
        for (name, value) in [
            ("OIDC_CONNECT_CONFIG_URL", &self.oidc_connect_config_url),
            ("OIDC_ISSUER", &self.oidc_issuer),
            (
                "OIDC_OP_AUTHORIZATION_ENDPOINT",
                &self.oidc_op_authorization_endpoint,
            ),
            ("OIDC_OP_TOKEN_ENDPOINT", &self.oidc_op_token_endpoint),
            ("OIDC_OP_JWKS_ENDPOINT", &self.oidc_op_jwks_endpoint),
            ("OIDC_OP_LOGOUT_ENDPOINT", &self.oidc_op_logout_endpoint),
        ] {
            check_url(name, value.as_deref())?;
        }
        if self.oidc_rp_sign_algo.as_deref().is_some_and(|a| {
            a.parse::<jsonwebtoken::Algorithm>().ok().is_none_or(|a| {
                matches!(
                    a,
                    jsonwebtoken::Algorithm::HS256
                        | jsonwebtoken::Algorithm::HS384
                        | jsonwebtoken::Algorithm::HS512
                )
            })
        }) {
            return Err(ConfigError(
                "OIDC_RP_SIGN_ALGO must name an asymmetric JWS algorithm such as RS256".into(),
            ));
        }
        if self.oidc_enabled {
            if self.oidc_rp_client_id.is_none() || self.oidc_rp_client_secret.is_none() {
                return Err(ConfigError(
                    "OIDC_RP_CLIENT_ID and OIDC_RP_CLIENT_SECRET are required with OIDC_ENABLED=true"
                        .into(),
                ));
            }
            if self.oidc_issuer().is_none() {
                return Err(ConfigError(
                    "OIDC_CONNECT_CONFIG_URL (or OIDC_ISSUER) is required with OIDC_ENABLED=true"
                        .into(),
                ));
            }
            if !self
                .oidc_rp_scopes
                .split_whitespace()
                .any(|s| s == "openid")
            {
                return Err(ConfigError("OIDC_RP_SCOPES must include openid".into()));
            }
        }
        self.staff_values = split_list(&self.oidc_staff_values)
            .map(str::to_owned)
            .collect();
        self.api_audiences = split_list(&self.oidc_api_audiences)
            .map(str::to_owned)
            .collect();
        Ok(())
    }

    /// The IAM's issuer: `OIDC_ISSUER`, else the discovery URL without its well-known suffix.
    pub fn oidc_issuer(&self) -> Option<String> {
        self.oidc_issuer.clone().or_else(|| {
            self.oidc_connect_config_url.as_deref().map(|u| {
                u.trim_end_matches('/')
                    .trim_end_matches("/.well-known/openid-configuration")
                    .to_string()
            })
        })
    }
}

fn default_oidc_scopes() -> String {
    "openid profile email".into()
}

fn default_logout_parameter() -> String {
    "post_logout_redirect_uri".into()
}

fn default_username_claim() -> String {
    "preferred_username".into()
}

fn default_staff_claim() -> String {
    "groups".into()
}

fn default_login_redirect() -> String {
    "/".into()
}

fn default_session_lifetime() -> u64 {
    12 * 3600
}
