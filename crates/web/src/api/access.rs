//! Access-control endpoints: the dashboard session (`/auth/…`), users,
//! robots, bindings, the audit log (administrators) and API tokens (each
//! user their own).
//!
//! With access control off these answer 404 `access control is off`,
//! except `GET /auth/session`, which tells the dashboard there is nothing
//! to sign in to.

use super::ApiError;
use super::handlers::{limit_param, parse_time};
use super::params::{AuditParams, OwnerQuery, Params};
use super::scope::{Body, Caller};
use crate::State;
use auth::{AccessControl, Action, AuditQuery, AuthError, Binding, Identity, Method, Subject};
use axum::Json;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type ApiResult<T> = Result<T, ApiError>;

fn access(state: &State) -> ApiResult<AccessControl> {
    state.access.clone().ok_or_else(|| {
        ApiError::not_found("access control is off: there are no users, robots or tokens")
    })
}

/// Access control must be on and the caller a server administrator; a
/// refusal is audited.
fn admin(state: &State, caller: &Caller, action: &str, target: &str) -> ApiResult<AccessControl> {
    let ac = access(state)?;
    if let Err(e) = caller.require_admin() {
        ac.audit_by(
            &caller.principal,
            action,
            target,
            "denied",
            "not an administrator",
        );
        return Err(e);
    }
    Ok(ac)
}

/// Run access-control work (argon2, SQLite) off the async threads.
async fn run<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// An administrator's listing (users, robots, bindings), each row as its
/// API type.
async fn admin_list<R: 'static, T: From<R> + Send + 'static>(
    state: &State,
    caller: &Caller,
    action: &str,
    list: fn(&AccessControl) -> Result<Vec<R>, AuthError>,
) -> ApiResult<Json<Vec<T>>> {
    let ac = admin(state, caller, action, "")?;
    run(move || Ok(Json(list(&ac)?.into_iter().map(T::from).collect()))).await
}

/// An administrator's change of `target` answered 204 when done.
async fn admin_change(
    state: &State,
    caller: Caller,
    action: &str,
    target: String,
    change: fn(&AccessControl, &auth::Principal, &str) -> Result<(), AuthError>,
) -> ApiResult<StatusCode> {
    let ac = admin(state, &caller, action, &target)?;
    run(move || {
        change(&ac, &caller.principal, &target)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// A robot or token just added, as its listing shows it; missing from
/// the list is the server's fault.
fn just_added<R, T: From<R>>(rows: Vec<R>, is_it: impl Fn(&R) -> bool, what: &str) -> ApiResult<T> {
    rows.into_iter()
        .find(is_it)
        .map(T::from)
        .ok_or_else(|| ApiError::internal(format!("a {what} just added is not listed")))
}

/// Parse a body that may carry a secret: serde's messages for a wrong
/// type or value quote the value, so only those naming a field are kept.
fn parse_secret<T: for<'de> Deserialize<'de>>(body: &Body, expected: &str) -> ApiResult<T> {
    serde_json::from_slice(&body.0).map_err(|e| {
        let m = e.to_string();
        if m.starts_with("unknown field") || m.starts_with("missing field") {
            ApiError::bad_request(format!("invalid JSON body: {m}"))
        } else {
            ApiError::bad_request(format!(
                "invalid JSON body (line {}, column {}); expected {expected}",
                e.line(),
                e.column()
            ))
        }
    })
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Body) -> ApiResult<T> {
    super::handlers::parse_json(body)
}

fn parse_actions(list: &[String]) -> ApiResult<Vec<Action>> {
    list.iter()
        .map(|a| Action::parse(a).map_err(|e| ApiError::bad_request(e.0)))
        .collect()
}

fn optional_time(name: &str, v: &Option<String>) -> ApiResult<Option<time::OffsetDateTime>> {
    v.as_deref().map(|s| parse_time(name, s)).transpose()
}

fn kind_of(identity: &Identity) -> &'static str {
    match identity {
        Identity::Unrestricted => "unrestricted",
        Identity::Anonymous => "anonymous",
        Identity::User { .. } => "user",
        Identity::Robot { .. } => "robot",
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::None => "none",
        Method::Anonymous => "anonymous",
        Method::Basic => "basic",
        Method::AccessToken => "access_token",
        Method::ApiToken => "api_token",
        Method::Session => "session",
    }
}

// ---- session ----

/// Who the caller is.
#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    /// Whether access control is on; when off, everyone may do everything
    /// and there is nothing to sign in to.
    pub access_control: bool,
    /// `alice`, `robot$ci`; `-` when access control is off.
    pub name: String,
    /// `user`, `robot` or `unrestricted`.
    pub kind: String,
    /// Administrator of the whole server.
    pub admin: bool,
    /// How the request was authenticated: `session`, `basic`, `api_token`,
    /// `access_token` or `none`.
    pub method: String,
    /// The session's CSRF token, when authenticated by the session cookie:
    /// send it as `X-CSRF-Token` on every POST, PUT, PATCH and DELETE.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/auth/session", tag = "auth",
    responses((status = 200, body = SessionInfo),
        (status = 401, description = "Anonymous (access control on)", body = super::ErrorBody)))]
pub async fn session(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<SessionInfo>> {
    let p = &caller.principal;
    if state.access.is_some() && p.is_anonymous() {
        return Err(caller.unauthorized("not signed in"));
    }
    Ok(Json(SessionInfo {
        access_control: state.access.is_some(),
        name: p.name(),
        kind: kind_of(p.identity()).into(),
        admin: p.is_admin(),
        method: method_name(p.method()).into(),
        csrf: caller.session.map(|s| s.csrf),
    }))
}

/// Credentials for a dashboard session.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// A user name, or `robot$NAME`.
    pub username: String,
    pub password: String,
}

/// A session was started; its cookie is in `Set-Cookie`.
#[derive(Serialize, ToSchema)]
pub struct LoggedIn {
    pub name: String,
    pub admin: bool,
    /// Send as `X-CSRF-Token` on every state-changing request.
    pub csrf: String,
}

fn session_cookie(value: &str, max_age: u64, secure: bool) -> String {
    format!(
        "{}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{}",
        auth::SESSION_COOKIE,
        if secure { "; Secure" } else { "" }
    )
}

/// A session just started for `p` (a login, or a password change): its
/// name and CSRF token, and the cookie set.
fn logged_in(
    p: &auth::Principal,
    cookie: &str,
    csrf: String,
    ttl: u64,
    secure: bool,
) -> ApiResult<Response> {
    let mut r = Json(LoggedIn {
        name: p.name(),
        admin: p.is_admin(),
        csrf,
    })
    .into_response();
    let value =
        HeaderValue::from_str(&session_cookie(cookie, ttl, secure)).map_err(ApiError::internal)?;
    r.headers_mut().insert(header::SET_COOKIE, value);
    Ok(r)
}

/// Sign in: checks the credentials (rate-limited per name and address)
/// and sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoggedIn, headers(("Set-Cookie" = String, description = "drydock_session=…; HttpOnly; SameSite=Strict; Path=/; Max-Age=…[; Secure]"))),
        (status = 400, body = super::ErrorBody),
        (status = 401, description = "Bad credentials", body = super::ErrorBody),
        (status = 404, description = "Access control is off", body = super::ErrorBody),
        (status = 415, description = "Not application/json", body = super::ErrorBody),
        (status = 429, description = "Too many failed logins; see Retry-After", body = super::ErrorBody)))]
pub async fn login(
    AxState(state): AxState<State>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let ac = access(&state)?;
    // A cross-site form cannot send JSON without a preflight, so a page
    // elsewhere cannot sign a browser into another account.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send the credentials as application/json",
        ));
    }
    let req: LoginRequest = parse_secret(&body, "{\"username\", \"password\"}")?;
    let address = caller.peer.or(caller.principal.address());
    let secure = caller.tls();
    let ttl = ac.settings().session_ttl.as_secs();
    run(move || {
        let p = ac.login(&req.username, &req.password, address)?;
        let (cookie, csrf) = ac.start_session(&p)?;
        ac.audit_by(&p, "login", "", "ok", "dashboard session");
        let mut r = logged_in(&p, &cookie, csrf, ttl, secure)?;
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(r)
    })
    .await
}

/// Sign out: clears the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Cookie cleared (Max-Age=0)"),
        (status = 404, description = "Access control is off", body = super::ErrorBody)))]
pub async fn logout(AxState(state): AxState<State>, caller: Caller) -> ApiResult<Response> {
    let ac = access(&state)?;
    if caller.session.is_some() {
        ac.audit_by(&caller.principal, "logout", "", "ok", "dashboard session");
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let value =
        HeaderValue::from_str(&session_cookie("", 0, caller.tls())).map_err(ApiError::internal)?;
    r.headers_mut().insert(header::SET_COOKIE, value);
    Ok(r)
}

// ---- users ----

/// A user.
#[derive(Serialize, ToSchema)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// RFC 3339.
    pub created_at: String,
    /// Administrator of the whole server (admin on `**`).
    pub admin: bool,
}

impl From<auth::UserView> for User {
    fn from(u: auth::UserView) -> User {
        User {
            name: u.name,
            groups: u.groups,
            created_at: u.created_at,
            admin: u.admin,
        }
    }
}

/// A new user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Letters, digits, `.`, `_`, `-`; at most 64.
    pub name: String,
    /// At least 8 characters.
    pub password: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

/// A new password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    pub password: String,
    /// Required when a user who is not an administrator changes their own.
    pub current_password: Option<String>,
}

/// A user's groups (replacing the old ones).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Groups {
    pub groups: Vec<String>,
}

fn user_view(ac: &AccessControl, name: &str) -> ApiResult<User> {
    ac.users()?
        .into_iter()
        .find(|u| u.name == name)
        .map(User::from)
        .ok_or_else(|| ApiError::not_found(format!("user {name} not found")))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "access",
    responses((status = 200, body = Vec<User>), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, description = "Access control is off", body = super::ErrorBody)))]
pub async fn list_users(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<Vec<User>>> {
    admin_list(&state, &caller, "user.list", AccessControl::users).await
}

#[utoipa::path(post, path = "/api/v1/users", tag = "access", request_body = NewUser,
    responses((status = 201, body = User), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 409, description = "The name is taken", body = super::ErrorBody)))]
pub async fn create_user(
    AxState(state): AxState<State>,
    caller: Caller,
    body: Body,
) -> ApiResult<(StatusCode, Json<User>)> {
    let ac = admin(&state, &caller, "user.add", "")?;
    let n: NewUser = parse_secret(&body, "{\"name\", \"password\", \"groups\": [...]}")?;
    run(move || {
        ac.add_user(&caller.principal, &n.name, &n.password, &n.groups)?;
        Ok((StatusCode::CREATED, Json(user_view(&ac, &n.name)?)))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/users/{name}", tag = "access", params(("name" = String, Path)),
    responses((status = 204), (status = 400, description = "Removing yourself", body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn delete_user(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let ac = admin(&state, &caller, "user.rm", &name)?;
    // An administrator removing themselves could leave nobody to sign in.
    if caller.principal.name() == name
        && matches!(caller.principal.identity(), Identity::User { .. })
    {
        return Err(ApiError::bad_request(
            "you cannot remove yourself; another administrator can",
        ));
    }
    run(move || {
        ac.remove_user(&caller.principal, &name)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Set a password: administrators for anyone, a user for themselves (with
/// `current_password`). The user's sessions and refresh tokens end; a
/// caller changing their own password over a session gets a new cookie.
#[utoipa::path(put, path = "/api/v1/users/{name}/password", tag = "access", params(("name" = String, Path)),
    request_body = NewPassword,
    responses((status = 204, description = "Changed"), (status = 200, description = "Changed; a new session for the caller", body = LoggedIn),
        (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn set_password(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let ac = access(&state)?;
    let p = caller.principal.clone();
    let own = matches!(p.identity(), Identity::User { name: n, .. } if *n == name);
    let is_admin = p.is_admin();
    // Not with a registry access token: it is scoped to repositories.
    let may = is_admin || (own && p.method() != Method::AccessToken);
    if !may {
        ac.audit_by(&p, "user.passwd", &name, "denied", "");
        return Err(caller.forbidden("only an administrator or the user may change a password"));
    }
    let n: NewPassword = parse_secret(&body, "{\"password\", \"current_password\"}")?;
    let address = caller.peer.or(p.address());
    let renew = own && caller.session.is_some();
    let secure = caller.tls();
    run(move || {
        if !is_admin {
            let current = n
                .current_password
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("current_password is required"))?;
            ac.login(&name, current, address).map_err(|e| match e {
                AuthError::BadCredentials => {
                    ApiError::forbidden("current_password is not the current password")
                }
                other => other.into(),
            })?;
        }
        ac.set_password(&p, &name, &n.password)?;
        if !renew {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let (cookie, csrf) = ac.start_session(&p)?;
        let ttl = ac.settings().session_ttl.as_secs();
        logged_in(&p, &cookie, csrf, ttl, secure)
    })
    .await
}

#[utoipa::path(put, path = "/api/v1/users/{name}/groups", tag = "access", params(("name" = String, Path)),
    request_body = Groups,
    responses((status = 200, body = User), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn set_groups(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Json<User>> {
    let ac = admin(&state, &caller, "user.groups", &name)?;
    let g: Groups = parse_body(&body)?;
    run(move || {
        ac.set_groups(&caller.principal, &name, &g.groups)?;
        Ok(Json(user_view(&ac, &name)?))
    })
    .await
}

// ---- robots ----

/// A grant of actions on repositories matching a pattern.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Permission {
    /// Repository glob: `*` within one path segment, `**` across several.
    #[schema(example = "team-a/**")]
    pub pattern: String,
    /// `pull`, `push`, `delete`, `admin`.
    #[schema(example = json!(["pull", "push"]))]
    pub actions: Vec<String>,
}

/// A robot account (never its secret).
#[derive(Serialize, ToSchema)]
pub struct Robot {
    pub name: String,
    /// What to sign in with: `robot$NAME`.
    pub username: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    pub permissions: Vec<Permission>,
}

impl From<auth::RobotView> for Robot {
    fn from(r: auth::RobotView) -> Robot {
        Robot {
            name: r.name,
            username: r.username,
            description: r.description,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            state: r.state,
            permissions: r
                .permissions
                .into_iter()
                .map(|b| Permission {
                    pattern: b.pattern,
                    actions: b.actions.iter().map(|a| a.as_str().to_string()).collect(),
                })
                .collect(),
        }
    }
}

/// A new robot account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRobot {
    #[schema(example = "ci")]
    pub name: String,
    pub description: Option<String>,
    /// RFC 3339; absent for no expiry.
    pub expires_at: Option<String>,
    pub permissions: Vec<Permission>,
}

/// A robot just created, with its secret: shown here once, never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedRobot {
    #[serde(flatten)]
    pub robot: Robot,
    /// Sign in as `username` with this; it cannot be shown again.
    pub secret: String,
}

#[utoipa::path(get, path = "/api/v1/robots", tag = "access",
    responses((status = 200, body = Vec<Robot>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn list_robots(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<Vec<Robot>>> {
    admin_list(&state, &caller, "robot.list", AccessControl::robots).await
}

#[utoipa::path(post, path = "/api/v1/robots", tag = "access", request_body = NewRobot,
    responses((status = 201, body = CreatedRobot), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn create_robot(
    AxState(state): AxState<State>,
    caller: Caller,
    body: Body,
) -> ApiResult<(StatusCode, Json<CreatedRobot>)> {
    let ac = admin(&state, &caller, "robot.add", "")?;
    let n: NewRobot = parse_body(&body)?;
    let expires_at = optional_time("expires_at", &n.expires_at)?;
    let permissions = n
        .permissions
        .iter()
        .map(|p| Ok((p.pattern.clone(), parse_actions(&p.actions)?)))
        .collect::<ApiResult<Vec<_>>>()?;
    run(move || {
        let secret = ac.add_robot(
            &caller.principal,
            &n.name,
            n.description.as_deref().unwrap_or_default(),
            expires_at,
            &permissions,
        )?;
        let robot = just_added(ac.robots()?, |r| r.name == n.name, "robot")?;
        Ok((StatusCode::CREATED, Json(CreatedRobot { robot, secret })))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/robots/{name}/revoke", tag = "access", params(("name" = String, Path)),
    responses((status = 204, description = "Revoked: its logins and tokens stop working"), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody), (status = 404, description = "No such active robot", body = super::ErrorBody)))]
pub async fn revoke_robot(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    admin_change(
        &state,
        caller,
        "robot.revoke",
        name,
        AccessControl::revoke_robot,
    )
    .await
}

#[utoipa::path(delete, path = "/api/v1/robots/{name}", tag = "access", params(("name" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody)))]
pub async fn delete_robot(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    admin_change(
        &state,
        caller,
        "robot.rm",
        name,
        AccessControl::remove_robot,
    )
    .await
}

// ---- bindings ----

/// Who a binding grants to.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubjectRef {
    /// `user`, `robot`, `group` or `anonymous`.
    pub kind: String,
    /// Absent for `anonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// A binding: `subject` may do `actions` on repositories matching `pattern`.
#[derive(Serialize, ToSchema)]
pub struct BindingView {
    /// Empty for bindings from the configuration file (not removable here).
    pub id: String,
    pub subject: SubjectRef,
    pub pattern: String,
    pub actions: Vec<String>,
    /// `config` or `stored`.
    pub source: String,
}

impl From<Binding> for BindingView {
    fn from(b: Binding) -> BindingView {
        BindingView {
            source: if b.id.is_empty() { "config" } else { "stored" }.into(),
            id: b.id,
            subject: SubjectRef {
                kind: b.subject.kind().into(),
                name: match &b.subject {
                    Subject::Anonymous => None,
                    s => Some(s.name().to_string()),
                },
            },
            pattern: b.pattern,
            actions: b.actions.iter().map(|a| a.as_str().to_string()).collect(),
        }
    }
}

/// A new binding.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBinding {
    pub subject: SubjectRef,
    #[schema(example = "team-a/*")]
    pub pattern: String,
    #[schema(example = json!(["pull"]))]
    pub actions: Vec<String>,
}

#[utoipa::path(get, path = "/api/v1/bindings", tag = "access",
    responses((status = 200, body = Vec<BindingView>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn list_bindings(
    AxState(state): AxState<State>,
    caller: Caller,
) -> ApiResult<Json<Vec<BindingView>>> {
    admin_list(&state, &caller, "binding.list", AccessControl::bindings).await
}

#[utoipa::path(post, path = "/api/v1/bindings", tag = "access", request_body = NewBinding,
    responses((status = 201, body = BindingView), (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
        (status = 403, body = super::ErrorBody)))]
pub async fn create_binding(
    AxState(state): AxState<State>,
    caller: Caller,
    body: Body,
) -> ApiResult<(StatusCode, Json<BindingView>)> {
    let ac = admin(&state, &caller, "binding.add", "")?;
    let n: NewBinding = parse_body(&body)?;
    let subject = Subject::from_parts(
        &n.subject.kind,
        n.subject.name.as_deref().unwrap_or_default(),
    )
    .map_err(|e| ApiError::bad_request(e.0))?;
    let b = Binding {
        id: String::new(),
        subject,
        pattern: n.pattern,
        actions: parse_actions(&n.actions)?,
    };
    run(move || {
        let b = ac.add_binding(&caller.principal, b)?;
        Ok((StatusCode::CREATED, Json(BindingView::from(b))))
    })
    .await
}

#[utoipa::path(delete, path = "/api/v1/bindings/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 404, body = super::ErrorBody),
        (status = 409, description = "The last stored binding making someone administrator", body = super::ErrorBody)))]
pub async fn delete_binding(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let ac = admin(&state, &caller, "binding.rm", &id)?;
    run(move || {
        // Keep at least one administrator: removing the last grant of
        // admin on `**` would leave the server unmanageable from the API.
        let all = ac.bindings()?;
        let server_admin = |b: &Binding| b.pattern == "**" && b.actions.contains(&Action::Admin);
        if all.iter().any(|b| b.id == id && server_admin(b))
            && !all.iter().any(|b| b.id != id && server_admin(b))
        {
            return Err(ApiError::conflict(
                "this is the last binding granting admin on **; add another first",
            ));
        }
        ac.remove_binding(&caller.principal, &id)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

// ---- audit ----

/// One audit record.
#[derive(Serialize, ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    /// RFC 3339.
    pub at: String,
    pub identity: String,
    pub address: String,
    /// `push`, `pull`, `delete`, `login`, `user.add`, `robot.revoke`, …
    pub action: String,
    /// A repository, `repo@digest`, a user name, …
    pub target: String,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    pub detail: String,
    /// How many events this record stands for (pulls are aggregated per hour).
    pub count: i64,
}

impl From<auth::AuditEntry> for AuditRecord {
    fn from(e: auth::AuditEntry) -> AuditRecord {
        AuditRecord {
            id: e.id,
            at: e.at,
            identity: e.identity,
            address: e.address,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            detail: e.detail,
            count: e.count,
        }
    }
}

/// The audit log, newest first. Page back with `before` = the last id seen.
#[utoipa::path(get, path = "/api/v1/audit", tag = "access",
    params(("identity" = Option<String>, Query, description = "Exactly this identity (`alice`, `robot$ci`, `anonymous`)"),
           ("action" = Option<String>, Query, description = "Exactly this action"),
           ("repository" = Option<String>, Query, description = "Targets starting with this"),
           ("outcome" = Option<String>, Query, description = "ok, denied or failed"),
           ("since" = Option<String>, Query, description = "RFC 3339; at or after"),
           ("until" = Option<String>, Query, description = "RFC 3339; before"),
           ("before" = Option<i64>, Query, description = "Records with an id below this"),
           ("limit" = Option<usize>, Query, description = "At most this many (default 100, at most 1000)")),
    responses((status = 200, body = Vec<AuditRecord>), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn audit(
    AxState(state): AxState<State>,
    caller: Caller,
    Params(q): Params<AuditParams>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    let ac = admin(&state, &caller, "audit.read", "")?;
    // An empty value is no filter.
    let text = |v: &Option<String>| v.as_ref().filter(|v| !v.is_empty()).cloned();
    let at = |k: &str, v: &Option<String>| -> ApiResult<Option<i64>> {
        Ok(text(v)
            .map(|v| parse_time(k, &v))
            .transpose()?
            .map(|t| t.unix_timestamp()))
    };
    let limit = limit_param(text(&q.limit).as_deref(), 100, 1000)?;
    let before_id = text(&q.before)
        .map(|v| {
            v.parse::<i64>().map_err(|_| {
                ApiError::bad_request(format!("before must be a record id, not {v:?}"))
            })
        })
        .transpose()?;
    let query = AuditQuery {
        identity: text(&q.identity),
        action: text(&q.action),
        target_prefix: text(&q.repository),
        outcome: text(&q.outcome),
        since: at("since", &q.since)?,
        until: at("until", &q.until)?,
        before_id,
        limit,
    };
    run(move || {
        // Buffered records first, so what just happened is listed.
        ac.flush();
        Ok(Json(
            ac.query_audit(&query)?
                .into_iter()
                .map(AuditRecord::from)
                .collect(),
        ))
    })
    .await
}

// ---- API tokens ----

/// An API token (never its secret).
#[derive(Serialize, ToSchema)]
pub struct ApiToken {
    pub id: String,
    pub owner: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<auth::ApiTokenView> for ApiToken {
    fn from(t: auth::ApiTokenView) -> ApiToken {
        ApiToken {
            id: t.id,
            owner: t.owner,
            description: t.description,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A new API token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub description: Option<String>,
    /// RFC 3339; absent for no expiry.
    pub expires_at: Option<String>,
    /// Whose token (administrators only); the caller by default.
    pub owner: Option<String>,
}

/// A token just created, with its secret: shown here once, never again.
#[derive(Serialize, ToSchema)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: ApiToken,
    /// Send as `Authorization: Bearer …`; it cannot be shown again.
    pub secret: String,
}

/// Whose tokens the caller manages: their own, or (an administrator)
/// `owner`'s. API tokens belong to users; a request authenticated by an
/// access token (the registry's token flow) may not mint or list them.
fn token_owner(caller: &Caller, owner: Option<String>) -> ApiResult<String> {
    let p = &caller.principal;
    if p.is_anonymous() {
        return Err(caller.unauthorized("authentication required"));
    }
    if p.method() == Method::AccessToken {
        return Err(ApiError::forbidden(
            "API tokens cannot be managed with a registry access token",
        ));
    }
    let me = match p.identity() {
        Identity::User { name, .. } => Some(name.clone()),
        _ => None,
    };
    match (owner, me) {
        (Some(o), me) if me.as_deref() == Some(o.as_str()) => Ok(o),
        (Some(o), _) if p.is_admin() => Ok(o),
        (Some(_), _) => Err(ApiError::forbidden(
            "only an administrator may manage another user's tokens",
        )),
        (None, Some(me)) => Ok(me),
        (None, None) if p.is_admin() => Err(ApiError::bad_request("owner is required")),
        (None, None) => Err(ApiError::forbidden("only users have API tokens")),
    }
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "access",
    params(("owner" = Option<String>, Query, description = "Another user's tokens (administrators)")),
    responses((status = 200, body = Vec<ApiToken>), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody)))]
pub async fn list_tokens(
    AxState(state): AxState<State>,
    caller: Caller,
    Params(q): Params<OwnerQuery>,
) -> ApiResult<Json<Vec<ApiToken>>> {
    let ac = access(&state)?;
    let owner = token_owner(&caller, q.owner)?;
    run(move || {
        Ok(Json(
            ac.api_tokens(Some(&owner))?
                .into_iter()
                .map(ApiToken::from)
                .collect(),
        ))
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "access", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = super::ErrorBody),
        (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn create_token(
    AxState(state): AxState<State>,
    caller: Caller,
    body: Body,
) -> ApiResult<(StatusCode, Json<CreatedToken>)> {
    let ac = access(&state)?;
    let n: NewToken = parse_body(&body)?;
    let owner = token_owner(&caller, n.owner.clone())?;
    let expires_at = optional_time("expires_at", &n.expires_at)?;
    run(move || {
        let (id, secret) = ac.add_api_token(
            &caller.principal,
            &owner,
            n.description.as_deref().unwrap_or_default(),
            expires_at,
        )?;
        let token = just_added(ac.api_tokens(Some(&owner))?, |t| t.id == id, "token")?;
        Ok((StatusCode::CREATED, Json(CreatedToken { token, secret })))
    })
    .await
}

/// Revoke a token (it stays listed, with `revoked_at`).
#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "access", params(("id" = String, Path)),
    responses((status = 204), (status = 401, body = super::ErrorBody), (status = 403, body = super::ErrorBody),
        (status = 404, description = "No such active token of the caller's", body = super::ErrorBody)))]
pub async fn delete_token(
    AxState(state): AxState<State>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let ac = access(&state)?;
    // Administrators may revoke anyone's; others only their own.
    let owner = if caller.principal.is_admin() {
        None
    } else {
        Some(token_owner(&caller, None)?)
    };
    run(move || {
        ac.revoke_api_token(&caller.principal, &id, owner.as_deref())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
