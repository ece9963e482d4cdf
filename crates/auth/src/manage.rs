//! Managing identities and bindings: users, robots, API tokens and
//! bindings, each change stored, reloaded into the snapshot and audited.
//! Callers check that the acting principal (`by`) may make the change.

use crate::{
    API_TOKEN_PREFIX, AccessControl, Action, AuditEvent, AuthError, Binding, Identity, PolicyError,
    Principal, ROBOT_PREFIX, ROBOT_SECRET_PREFIX, Subject, now, rfc3339, secret,
};
use serde::Serialize;
use storage::access::{ApiTokenRow, BindingRow, RobotRow};
use storage::block_on;
use time::OffsetDateTime;

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    pub groups: Vec<String>,
    pub created_at: String,
    pub admin: bool,
}

/// A robot as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct RobotView {
    pub name: String,
    /// What to log in with: `robot$NAME`.
    pub username: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    pub permissions: Vec<Binding>,
}

/// An API token as the API shows it (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiTokenView {
    pub id: String,
    pub owner: String,
    pub description: String,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

/// Check a user, robot or group name: letters, digits, `.`, `_`, `-`,
/// starting with a letter or digit, at most 64 characters.
pub fn validate_name(what: &str, name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "invalid {what} name {name:?}: use up to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

/// Check a new password's strength.
pub fn validate_password(password: &str) -> Result<(), AuthError> {
    if password.chars().count() < 8 {
        return Err(AuthError::Invalid(
            "a password needs at least 8 characters".into(),
        ));
    }
    if password.len() > 1024 {
        return Err(AuthError::Invalid(
            "a password may have at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

impl AccessControl {
    /// Create the first administrator when there are no users: `admin`
    /// with `password`, or a generated one, which is returned (to be shown
    /// once). `None` when users exist already.
    pub fn ensure_admin(&self, password: Option<&str>) -> Result<Option<String>, AuthError> {
        if !block_on(self.inner.store.users())?.is_empty() {
            return Ok(None);
        }
        let generated = password.is_none();
        let password = password.map_or_else(secret::generate_password, str::to_string);
        validate_password(&password)?;
        block_on(
            self.inner
                .store
                .insert_user("admin", &secret::hash_password(&password), now()),
        )?;
        block_on(self.inner.store.insert_binding(&BindingRow {
            id: uuid::Uuid::new_v4().to_string(),
            subject_kind: "user".into(),
            subject: "admin".into(),
            pattern: "**".into(),
            actions: "admin".into(),
            created_at: now(),
        }))?;
        self.reload()?;
        self.audit(AuditEvent {
            identity: "-".into(),
            address: String::new(),
            action: "user.add".into(),
            target: "admin".into(),
            outcome: "ok".into(),
            detail: "first administrator".into(),
        });
        Ok(generated.then_some(password))
    }

    /// Add a user.
    pub fn add_user(
        &self,
        by: &Principal,
        name: &str,
        password: &str,
        groups: &[String],
    ) -> Result<(), AuthError> {
        validate_name("user", name)?;
        validate_password(password)?;
        for g in groups {
            validate_name("group", g)?;
        }
        if !block_on(
            self.inner
                .store
                .insert_user(name, &secret::hash_password(password), now()),
        )? {
            return Err(AuthError::Conflict(format!("user {name}")));
        }
        block_on(self.inner.store.set_groups(name, groups))?;
        self.reload()?;
        self.audit_by(by, "user.add", name, "ok", &groups.join(","));
        Ok(())
    }

    /// Set a user's groups.
    pub fn set_groups(
        &self,
        by: &Principal,
        name: &str,
        groups: &[String],
    ) -> Result<(), AuthError> {
        for g in groups {
            validate_name("group", g)?;
        }
        if block_on(self.inner.store.user(name))?.is_none() {
            return Err(AuthError::NotFound(format!("user {name}")));
        }
        block_on(self.inner.store.set_groups(name, groups))?;
        self.reload()?;
        self.audit_by(by, "user.groups", name, "ok", &groups.join(","));
        Ok(())
    }

    /// Change a user's password: its refresh tokens and sessions end.
    pub fn set_password(
        &self,
        by: &Principal,
        name: &str,
        password: &str,
    ) -> Result<(), AuthError> {
        validate_password(password)?;
        if !block_on(
            self.inner
                .store
                .set_password(name, &secret::hash_password(password)),
        )? {
            return Err(AuthError::NotFound(format!("user {name}")));
        }
        self.reload()?;
        self.audit_by(by, "user.passwd", name, "ok", "");
        Ok(())
    }

    /// Remove a user with its API tokens and bindings.
    pub fn remove_user(&self, by: &Principal, name: &str) -> Result<(), AuthError> {
        if !block_on(self.inner.store.delete_user(name))? {
            return Err(AuthError::NotFound(format!("user {name}")));
        }
        self.reload()?;
        self.audit_by(by, "user.rm", name, "ok", "");
        Ok(())
    }

    /// Every user.
    pub fn users(&self) -> Result<Vec<UserView>, AuthError> {
        let snap = self.reload()?;
        let mut out: Vec<UserView> = snap
            .users
            .values()
            .map(|u| UserView {
                name: u.name.clone(),
                groups: u.groups.clone(),
                created_at: rfc3339(u.created_at),
                admin: snap.policy.is_admin(&Identity::User {
                    name: u.name.clone(),
                    groups: u.groups.clone(),
                }),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Add a robot with its permissions; returns its secret (shown once).
    pub fn add_robot(
        &self,
        by: &Principal,
        name: &str,
        description: &str,
        expires_at: Option<OffsetDateTime>,
        permissions: &[(String, Vec<Action>)],
    ) -> Result<String, AuthError> {
        validate_name("robot", name)?;
        if description.len() > 1024 {
            return Err(AuthError::Invalid(
                "description longer than 1024 bytes".into(),
            ));
        }
        if expires_at.is_some_and(|e| e.unix_timestamp() <= now()) {
            return Err(AuthError::Invalid("the expiry is in the past".into()));
        }
        let bindings: Vec<Binding> = permissions
            .iter()
            .map(|(pattern, actions)| Binding {
                id: uuid::Uuid::new_v4().to_string(),
                subject: Subject::Robot(name.to_string()),
                pattern: pattern.clone(),
                actions: actions.clone(),
            })
            .collect();
        for b in &bindings {
            b.validate()?;
        }
        let secret = secret::generate(ROBOT_SECRET_PREFIX);
        if !block_on(self.inner.store.insert_robot(&RobotRow {
            name: name.to_string(),
            secret_hash: secret::sha256_hex(&secret),
            description: description.to_string(),
            created_at: now(),
            expires_at: expires_at.map(|e| e.unix_timestamp()),
            revoked_at: None,
        }))? {
            return Err(AuthError::Conflict(format!("robot {name}")));
        }
        for b in &bindings {
            block_on(self.inner.store.insert_binding(&binding_to_row(b)))?;
        }
        self.reload()?;
        let detail = permissions
            .iter()
            .map(|(p, a)| format!("{p}:{}", actions_str(a)))
            .collect::<Vec<_>>()
            .join(" ");
        self.audit_by(by, "robot.add", name, "ok", &detail);
        Ok(secret)
    }

    /// Revoke a robot: its logins and tokens stop working at once.
    pub fn revoke_robot(&self, by: &Principal, name: &str) -> Result<(), AuthError> {
        if !block_on(self.inner.store.revoke_robot(name, now()))? {
            return Err(AuthError::NotFound(format!("active robot {name}")));
        }
        self.reload()?;
        self.audit_by(by, "robot.revoke", name, "ok", "");
        Ok(())
    }

    /// Delete a robot and its permissions.
    pub fn remove_robot(&self, by: &Principal, name: &str) -> Result<(), AuthError> {
        if !block_on(self.inner.store.delete_robot(name))? {
            return Err(AuthError::NotFound(format!("robot {name}")));
        }
        self.reload()?;
        self.audit_by(by, "robot.rm", name, "ok", "");
        Ok(())
    }

    /// Every robot.
    pub fn robots(&self) -> Result<Vec<RobotView>, AuthError> {
        let snap = self.reload()?;
        let t = now();
        let mut out: Vec<RobotView> = snap
            .robots
            .values()
            .map(|r| RobotView {
                name: r.name.clone(),
                username: format!("{ROBOT_PREFIX}{}", r.name),
                description: r.description.clone(),
                created_at: rfc3339(r.created_at),
                expires_at: r.expires_at.map(rfc3339),
                revoked_at: r.revoked_at.map(rfc3339),
                state: if r.revoked_at.is_some() {
                    "revoked"
                } else if r.expires_at.is_some_and(|e| e <= t) {
                    "expired"
                } else {
                    "active"
                }
                .into(),
                permissions: snap
                    .policy
                    .bindings()
                    .filter(|b| b.subject == Subject::Robot(r.name.clone()))
                    .cloned()
                    .collect(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Create an API token for `owner` (a user); returns its id and secret
    /// (shown once).
    pub fn add_api_token(
        &self,
        by: &Principal,
        owner: &str,
        description: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(String, String), AuthError> {
        if block_on(self.inner.store.user(owner))?.is_none() {
            return Err(AuthError::NotFound(format!("user {owner}")));
        }
        if expires_at.is_some_and(|e| e.unix_timestamp() <= now()) {
            return Err(AuthError::Invalid("the expiry is in the past".into()));
        }
        let secret = secret::generate(API_TOKEN_PREFIX);
        let id = uuid::Uuid::new_v4().to_string();
        block_on(self.inner.store.insert_api_token(&ApiTokenRow {
            id: id.clone(),
            owner: owner.to_string(),
            secret_hash: secret::sha256_hex(&secret),
            description: description.chars().take(1024).collect(),
            created_at: now(),
            expires_at: expires_at.map(|e| e.unix_timestamp()),
            revoked_at: None,
        }))?;
        self.reload()?;
        self.audit_by(by, "token.add", owner, "ok", &id);
        Ok((id, secret))
    }

    /// Revoke an API token. `owner`, when given, must own it.
    pub fn revoke_api_token(
        &self,
        by: &Principal,
        id: &str,
        owner: Option<&str>,
    ) -> Result<(), AuthError> {
        let owned = block_on(self.inner.store.api_tokens(owner))?
            .into_iter()
            .any(|t| t.id == id);
        if !owned || !block_on(self.inner.store.revoke_api_token(id, now()))? {
            return Err(AuthError::NotFound(format!("active API token {id}")));
        }
        self.reload()?;
        self.audit_by(by, "token.revoke", id, "ok", "");
        Ok(())
    }

    /// API tokens, of one owner or all.
    pub fn api_tokens(&self, owner: Option<&str>) -> Result<Vec<ApiTokenView>, AuthError> {
        Ok(block_on(self.inner.store.api_tokens(owner))?
            .into_iter()
            .map(|t| ApiTokenView {
                id: t.id,
                owner: t.owner,
                description: t.description,
                created_at: rfc3339(t.created_at),
                expires_at: t.expires_at.map(rfc3339),
                revoked_at: t.revoked_at.map(rfc3339),
            })
            .collect())
    }

    /// Add a binding; returns it with its id.
    pub fn add_binding(&self, by: &Principal, mut b: Binding) -> Result<Binding, AuthError> {
        b.validate()?;
        if let Subject::User(n) | Subject::Robot(n) | Subject::Group(n) = &b.subject {
            validate_name(b.subject.kind(), n)?;
        }
        b.id = uuid::Uuid::new_v4().to_string();
        block_on(self.inner.store.insert_binding(&binding_to_row(&b)))?;
        self.reload()?;
        self.audit_by(
            by,
            "binding.add",
            &b.pattern,
            "ok",
            &format!("{} {}", b.subject, actions_str(&b.actions)),
        );
        Ok(b)
    }

    /// Remove a stored binding.
    pub fn remove_binding(&self, by: &Principal, id: &str) -> Result<(), AuthError> {
        if !block_on(self.inner.store.delete_binding(id))? {
            return Err(AuthError::NotFound(format!("binding {id}")));
        }
        self.reload()?;
        self.audit_by(by, "binding.rm", id, "ok", "");
        Ok(())
    }

    /// Every binding: the configuration's (with an empty id) and the
    /// stored ones.
    pub fn bindings(&self) -> Result<Vec<Binding>, AuthError> {
        Ok(self.reload()?.policy.bindings().cloned().collect())
    }
}

fn actions_str(a: &[Action]) -> String {
    a.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(",")
}

fn binding_to_row(b: &Binding) -> BindingRow {
    BindingRow {
        id: b.id.clone(),
        subject_kind: b.subject.kind().into(),
        subject: b.subject.name().into(),
        pattern: b.pattern.clone(),
        actions: actions_str(&b.actions),
        created_at: now(),
    }
}

pub(crate) fn binding_from_row(r: &BindingRow) -> Result<Binding, PolicyError> {
    Ok(Binding {
        id: r.id.clone(),
        subject: Subject::from_parts(&r.subject_kind, &r.subject)?,
        pattern: r.pattern.clone(),
        actions: r
            .actions
            .split(',')
            .filter(|a| !a.is_empty())
            .map(Action::parse)
            .collect::<Result<_, _>>()?,
    })
}
