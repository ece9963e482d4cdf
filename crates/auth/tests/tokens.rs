//! Token attacks and credential lifecycles against a real data directory.

use auth::token::{Keys, TokenKind};
use auth::{AccessControl, Action, AuthError, Binding, Principal, Scope, Settings, Subject};
use base64::Engine;
use std::time::Duration;

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn unb64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn setup() -> (tempfile::TempDir, AccessControl) {
    let dir = tempfile::tempdir().unwrap();
    let ac = AccessControl::open(
        dir.path(),
        Settings {
            bindings: vec![Binding {
                id: String::new(),
                subject: Subject::User("alice".into()),
                pattern: "team-a/**".into(),
                actions: vec![Action::Pull, Action::Push],
            }],
            ..Settings::default()
        },
    )
    .unwrap();
    ac.add_user(&Principal::unrestricted(), "alice", "alice-password", &[])
        .unwrap();
    (dir, ac)
}

fn access_token(ac: &AccessControl, scope: &str) -> String {
    let alice = ac.login("alice", "alice-password", None).unwrap();
    ac.issue(&alice, &[Scope::parse(scope).unwrap()], false)
        .unwrap()
        .token
}

#[test]
fn issued_tokens_carry_the_intersection_of_request_and_rights() {
    let (_d, ac) = setup();
    let alice = ac.login("alice", "alice-password", None).unwrap();
    let t = ac
        .issue(
            &alice,
            &Scope::parse_all([
                "repository:team-a/app:pull,push,delete repository:team-b/app:pull",
            ]),
            true,
        )
        .unwrap();
    assert_eq!(t.expires_in, 300);
    assert!(t.refresh_token.is_some());
    let p = ac.bearer(&t.token, None).unwrap();
    assert!(p.may("team-a/app", Action::Pull) && p.may("team-a/app", Action::Push));
    assert!(
        !p.may("team-a/app", Action::Delete),
        "not granted: alice may not delete"
    );
    assert!(!p.may("team-b/app", Action::Pull));
    assert!(!p.may("team-a/other", Action::Pull), "not in the token");
    assert!(p.identity_may("team-a/other", Action::Pull));
    // The refresh token logs in again, but is no access token.
    let r = t.refresh_token.unwrap();
    assert!(ac.refresh(&r, None).is_ok());
    assert!(matches!(ac.bearer(&r, None), Err(AuthError::BadToken)));
    assert!(matches!(
        ac.refresh(&t.token, None),
        Err(AuthError::BadToken)
    ));
}

#[test]
fn forged_tokens_are_refused() {
    let (_d, ac) = setup();
    let token = access_token(&ac, "repository:team-a/app:pull");
    assert!(ac.bearer(&token, None).is_ok());
    let parts: Vec<&str> = token.split('.').collect();

    // A modified signature.
    let mut sig = unb64(parts[2]);
    sig[0] ^= 1;
    let forged = format!("{}.{}.{}", parts[0], parts[1], b64(&sig));
    assert!(matches!(ac.bearer(&forged, None), Err(AuthError::BadToken)));

    // A modified access claim (signature kept).
    let mut claims: serde_json::Value = serde_json::from_slice(&unb64(parts[1])).unwrap();
    claims["access"][0]["name"] = "team-b/app".into();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    );
    assert!(matches!(ac.bearer(&forged, None), Err(AuthError::BadToken)));

    // alg: none, without a signature.
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let forged = format!("{header}.{}.", parts[1]);
    assert!(matches!(ac.bearer(&forged, None), Err(AuthError::BadToken)));

    // HS256 signed with the public key's bytes (key confusion).
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let forged = format!("{header}.{}.{}", parts[1], b64(&[0u8; 32]));
    assert!(matches!(ac.bearer(&forged, None), Err(AuthError::BadToken)));

    // Garbage.
    assert!(ac.bearer("not-a-token", None).is_err());
    assert!(ac.bearer("ddk_not-a-real-api-token", None).is_err());
}

fn sign_with_server_key(dir: &std::path::Path, edit: impl FnOnce(&mut auth::Claims)) -> String {
    let keys = Keys::from_pkcs8(&std::fs::read(dir.join("auth/token-key.p8")).unwrap()).unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut claims = auth::Claims {
        iss: "drydock".into(),
        sub: "alice".into(),
        aud: "drydock".into(),
        exp: now + 300,
        nbf: now - 1,
        iat: now,
        jti: "x".into(),
        typ: TokenKind::Access,
        access: vec![auth::token::AccessEntry {
            kind: "repository".into(),
            name: "team-a/app".into(),
            actions: vec!["pull".into()],
        }],
        generation: None,
        csrf: None,
    };
    edit(&mut claims);
    keys.sign(&claims).unwrap()
}

#[test]
fn expired_and_foreign_service_tokens_are_refused() {
    let (d, ac) = setup();
    let ok = sign_with_server_key(d.path(), |_| {});
    assert!(ac.bearer(&ok, None).is_ok(), "the control token is valid");
    let expired = sign_with_server_key(d.path(), |c| {
        c.exp -= 3600;
        c.iat -= 3600;
        c.nbf -= 3600;
    });
    assert!(matches!(
        ac.bearer(&expired, None),
        Err(AuthError::BadToken)
    ));
    let other_service = sign_with_server_key(d.path(), |c| c.aud = "another-registry".into());
    assert!(matches!(
        ac.bearer(&other_service, None),
        Err(AuthError::BadToken)
    ));
    let other_issuer = sign_with_server_key(d.path(), |c| c.iss = "someone-else".into());
    assert!(ac.bearer(&other_issuer, None).is_err());
    let session_as_access = sign_with_server_key(d.path(), |c| c.typ = TokenKind::Session);
    assert!(ac.bearer(&session_as_access, None).is_err());
    let unknown_user = sign_with_server_key(d.path(), |c| c.sub = "mallory".into());
    assert!(ac.bearer(&unknown_user, None).is_err());

    // A token signed by another key (another drydock) is refused.
    let other = tempfile::tempdir().unwrap();
    let _ = Keys::load_or_create(&other.path().join("auth/token-key.p8")).unwrap();
    let foreign = sign_with_server_key(other.path(), |_| {});
    assert!(ac.bearer(&foreign, None).is_err());
}

#[test]
fn robots_revoked_or_expired_stop_at_once() {
    let (_d, ac) = setup();
    let op = Principal::unrestricted();
    let secret = ac
        .add_robot(
            &op,
            "ci",
            "",
            None,
            &[("team-a/app".into(), vec![Action::Pull, Action::Push])],
        )
        .unwrap();
    let robot = ac.login("robot$ci", &secret, None).unwrap();
    assert!(robot.may("team-a/app", Action::Push) && !robot.may("team-a/x", Action::Push));
    let token = ac
        .issue(
            &robot,
            &Scope::parse_all(["repository:team-a/app:push"]),
            false,
        )
        .unwrap()
        .token;
    assert!(ac.bearer(&token, None).is_ok());
    ac.revoke_robot(&op, "ci").unwrap();
    assert!(matches!(ac.bearer(&token, None), Err(AuthError::BadToken)));
    assert!(ac.login("robot$ci", &secret, None).is_err());

    let expiring = ac
        .add_robot(
            &op,
            "short",
            "",
            Some(time::OffsetDateTime::now_utc() + time::Duration::seconds(2)),
            &[("team-a/app".into(), vec![Action::Pull])],
        )
        .unwrap();
    let p = ac.login("robot$short", &expiring, None).unwrap();
    let token = ac
        .issue(&p, &Scope::parse_all(["repository:team-a/app:pull"]), false)
        .unwrap()
        .token;
    std::thread::sleep(Duration::from_millis(2100));
    assert!(ac.login("robot$short", &expiring, None).is_err());
    assert!(ac.bearer(&token, None).is_err());
}

#[test]
fn a_password_change_ends_refresh_tokens_and_sessions() {
    let (_d, ac) = setup();
    let alice = ac.login("alice", "alice-password", None).unwrap();
    let refresh = ac.issue(&alice, &[], true).unwrap().refresh_token.unwrap();
    let (cookie, csrf) = ac.start_session(&alice).unwrap();
    let (_, csrf_back) = ac.session(&cookie, None).unwrap();
    assert_eq!(csrf, csrf_back);
    ac.set_password(&Principal::unrestricted(), "alice", "a-new-password")
        .unwrap();
    assert!(ac.refresh(&refresh, None).is_err());
    assert!(ac.session(&cookie, None).is_err());
    assert!(ac.login("alice", "alice-password", None).is_err());
    assert!(ac.login("alice", "a-new-password", None).is_ok());
}

#[test]
fn api_tokens_act_as_their_user_until_revoked() {
    let (_d, ac) = setup();
    let op = Principal::unrestricted();
    let (id, secret) = ac.add_api_token(&op, "alice", "ci script", None).unwrap();
    let p = ac.bearer(&secret, None).unwrap();
    assert_eq!(p.name(), "alice");
    assert!(p.may("team-a/app", Action::Push));
    assert!(ac.api_tokens(None).unwrap().iter().all(|t| t.id == id));
    ac.revoke_api_token(&op, &id, Some("alice")).unwrap();
    assert!(ac.bearer(&secret, None).is_err());
}

#[test]
fn failed_logins_are_rate_limited_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let ac = AccessControl::open(
        dir.path(),
        Settings {
            max_failed_logins: 3,
            ..Settings::default()
        },
    )
    .unwrap();
    ac.add_user(&Principal::unrestricted(), "bob", "bob-password", &[])
        .unwrap();
    let ip = Some("192.0.2.7".parse().unwrap());
    for _ in 0..3 {
        assert!(matches!(
            ac.login("bob", "wrong", ip),
            Err(AuthError::BadCredentials)
        ));
    }
    // Even the right password is refused while limited.
    assert!(matches!(
        ac.login("bob", "bob-password", ip),
        Err(AuthError::RateLimited(_))
    ));
    let log = ac
        .query_audit(&auth::AuditQuery {
            action: Some("login".into()),
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(log.iter().filter(|e| e.outcome == "failed").count(), 3);
    assert_eq!(log.iter().filter(|e| e.outcome == "denied").count(), 1);
    assert!(log.iter().all(|e| e.address == "192.0.2.7"));
    // Nothing in the audit log holds the password.
    assert!(!format!("{log:?}").contains("bob-password"));
}

#[test]
fn first_admin_is_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let ac = AccessControl::open(dir.path(), Settings::default()).unwrap();
    let pw = ac.ensure_admin(None).unwrap().expect("generated");
    assert!(pw.len() >= 20);
    assert!(ac.ensure_admin(None).unwrap().is_none());
    let admin = ac.login("admin", &pw, None).unwrap();
    assert!(admin.is_admin() && admin.may("any/thing", Action::Delete));
    // Reopening (a restart) keeps the key: old tokens stay valid.
    let t = ac.issue(&admin, &[], false).unwrap().token;
    drop(ac);
    let ac = AccessControl::open(dir.path(), Settings::default()).unwrap();
    assert!(ac.bearer(&t, None).is_ok());
    let dir2 = tempfile::tempdir().unwrap();
    let ac2 = AccessControl::open(dir2.path(), Settings::default()).unwrap();
    assert!(ac2.ensure_admin(Some("short")).is_err(), "too short");
    assert!(
        ac2.ensure_admin(Some("a-long-enough-one"))
            .unwrap()
            .is_none()
    );
    assert!(ac2.login("admin", "a-long-enough-one", None).is_ok());
}

/// Verified access tokens are cached (their signature is checked once),
/// but a revocation made by another process on the same data directory
/// (`drydock robot revoke`) refuses a cached token as soon as the server
/// sees the change, and a removed binding applies to it at once.
#[test]
fn cached_tokens_follow_revocations_and_removed_permissions() {
    let (dir, ac) = setup();
    let op = Principal::unrestricted();
    let secret = ac
        .add_robot(
            &op,
            "ci",
            "",
            None,
            &[("team-a/app".into(), vec![Action::Pull, Action::Push])],
        )
        .unwrap();
    let robot = ac.login("robot$ci", &secret, None).unwrap();
    let token = ac
        .issue(
            &robot,
            &Scope::parse_all(["repository:team-a/app:pull"]),
            false,
        )
        .unwrap()
        .token;
    for _ in 0..3 {
        assert!(
            ac.bearer(&token, None)
                .unwrap()
                .may("team-a/app", Action::Pull)
        );
    }
    // A token differing only in its signature's last character is not
    // the cached one.
    let mut edited = token.clone();
    let last = edited.pop().unwrap();
    edited.push(if last == 'A' { 'B' } else { 'A' });
    assert!(matches!(ac.bearer(&edited, None), Err(AuthError::BadToken)));

    // Alice's token loses what her removed binding gave, at once.
    let alice_token = access_token(&ac, "repository:team-b/app:pull");
    assert!(
        !ac.bearer(&alice_token, None)
            .unwrap()
            .may("team-b/app", Action::Pull)
    );
    let b = ac
        .add_binding(
            &op,
            Binding {
                id: String::new(),
                subject: Subject::User("alice".into()),
                pattern: "team-b/**".into(),
                actions: vec![Action::Pull],
            },
        )
        .unwrap();
    let alice_token = access_token(&ac, "repository:team-b/app:pull");
    assert!(
        ac.bearer(&alice_token, None)
            .unwrap()
            .may("team-b/app", Action::Pull)
    );
    ac.remove_binding(&op, &b.id).unwrap();
    assert!(
        !ac.bearer(&alice_token, None)
            .unwrap()
            .may("team-b/app", Action::Pull)
    );

    // The CLI revokes the robot through its own handle on the data
    // directory; the server's handle notices within a second.
    let cli = AccessControl::open(dir.path(), Settings::default()).unwrap();
    // The server's handle looks at the store generation on the first use
    // at least a second after its last look, which came before `start`:
    // the first use a second after `start` must see the revocation,
    // however long the machine took to get there (a bound on wall time
    // here failed on a loaded machine, not on a late check).
    let start = std::time::Instant::now();
    cli.revoke_robot(&op, "ci").unwrap();
    cli.flush();
    std::thread::sleep(Duration::from_millis(1050).saturating_sub(start.elapsed()));
    assert!(
        matches!(ac.bearer(&token, None), Err(AuthError::BadToken)),
        "a revoked robot's cached token still works {:?} after the revocation",
        start.elapsed()
    );
    assert!(ac.bearer(&token, None).is_err());
}

#[test]
fn known_logins_skip_the_slow_path_only_when_verified() {
    let (_d, ac) = setup();
    // Not verified yet: the caller must take the full login.
    assert!(ac.login_known("alice", "alice-password", None).is_none());
    ac.login("alice", "alice-password", None).unwrap();
    let p = ac.login_known("alice", "alice-password", None).unwrap();
    assert_eq!(p.name(), "alice");
    assert!(ac.login_known("alice", "wrong-password", None).is_none());
    assert!(ac.login_known("nobody", "alice-password", None).is_none());
    // A password change forgets the verified login.
    ac.set_password(&Principal::unrestricted(), "alice", "another-password")
        .unwrap();
    assert!(ac.login_known("alice", "alice-password", None).is_none());
    // Robots: a live secret is known good; a revoked one is not.
    let op = Principal::unrestricted();
    let secret = ac
        .add_robot(
            &op,
            "ci",
            "",
            None,
            &[("team-a/app".into(), vec![Action::Pull])],
        )
        .unwrap();
    assert!(ac.login_known("robot$ci", &secret, None).is_some());
    ac.revoke_robot(&op, "ci").unwrap();
    assert!(ac.login_known("robot$ci", &secret, None).is_none());
}
