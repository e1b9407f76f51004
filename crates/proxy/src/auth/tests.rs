//! Credentials from Postgres's stored hashes, and the exchanges run with
//! them.

use super::*;
use crate::server_auth::md5_hash;

/// A verifier of Postgres's shape with SHA-256-sized keys (made-up values).
const VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
    WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
    wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

#[test]
fn stored_hashes_become_credentials() {
    let hash = md5_hash("app", "secret");
    match Credential::from_stored(&format!("md5{hash}")) {
        Some(Credential::Md5Hash { hash: h }) => assert_eq!(h, hash),
        _ => panic!("an md5 hash"),
    }
    assert!(matches!(
        Credential::from_stored(VERIFIER),
        Some(Credential::Scram(_))
    ));
    for unusable in [
        "secret",
        "",
        "md5",
        "md5abc",
        &format!("md5{}", hash.to_uppercase()),
        &format!("md5{hash}0"),
        "SCRAM-SHA-256$4096:c2FsdA==$AAAA:AAAA",
        "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$\
         WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
         wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
    ] {
        assert!(
            Credential::from_stored(unusable).is_none(),
            "{unusable:?} accepted"
        );
    }
}

/// The salt of an AuthenticationMD5Password request.
fn md5_salt(request: Option<Frame>) -> [u8; 4] {
    let request = request.expect("an md5 request");
    match inspect::auth_request(request.body()) {
        Some(inspect::AuthRequest::Md5Password { salt }) => salt,
        other => panic!("expected an md5 request, got {other:?}"),
    }
}

/// The md5 exchange against a stored hash: the salt from the request, the
/// answer libpq would send, and the hash handed on for the server login.
#[test]
fn md5_hash_logins_check_the_answer_and_hand_the_hash_on() {
    let hash = md5_hash("app", "secret");
    let cred = Credential::Md5Hash { hash: hash.clone() };
    for (password, ok) in [("secret", true), ("wrong", false)] {
        let (mut auth, request) = ClientAuth::start("app", &cred, None).expect("md5 starts");
        let salt = md5_salt(request);
        let answer = build::password_message(md5_password("app", password, salt).as_bytes());
        match auth.step(answer.body()) {
            Ok(AuthStep::Done { finals, secret }) => {
                assert!(ok, "{password} accepted");
                assert!(finals.is_empty());
                assert_eq!(secret, Some(ServerSecret::Md5Hash(hash.clone())));
            }
            Ok(AuthStep::Continue(_)) => panic!("md5 is one round"),
            Err(e) => {
                assert!(!ok, "{password} refused: {e}");
                assert_eq!(e.code, SqlState::INVALID_PASSWORD);
            }
        }
    }
}

/// A configured md5 password proves nothing the proxy may reuse upstream.
#[test]
fn configured_md5_logins_hand_nothing_on() {
    let cred = Credential::Md5 {
        password: "secret".into(),
    };
    let (mut auth, request) = ClientAuth::start("app", &cred, None).expect("md5 starts");
    let salt = md5_salt(request);
    let answer = build::password_message(md5_password("app", "secret", salt).as_bytes());
    assert!(matches!(
        auth.step(answer.body()),
        Ok(AuthStep::Done { secret: None, .. })
    ));
}

/// A self-signed certificate for common name `cn` (the chain is the
/// handshake's business; here only the name counts).
fn certificate(cn: &str) -> rustls::pki_types::CertificateDer<'static> {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.self_signed(&key).expect("certificate").der().clone()
}

/// cert: the certificate's common name must be the user's; no password
/// is asked, and a refusal is 28000 whatever the reason.
#[test]
fn cert_logins_need_a_certificate_for_the_user() {
    let mine = certificate("app");
    let (auth, request) = ClientAuth::start("app", &Credential::Cert, Some(&mine))
        .unwrap_or_else(|e| panic!("the user's own certificate: {e}"));
    assert!(request.is_none(), "a password was asked");
    assert!(matches!(auth, ClientAuth::Done));
    let other = certificate("someone-else");
    let unnamed = {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.self_signed(&key).expect("certificate").der().clone()
    };
    for (cert, why) in [
        (None, "no client certificate"),
        (Some(&other), "\"someone-else\""),
        (Some(&unnamed), "no common name"),
    ] {
        let Err(e) = ClientAuth::start("app", &Credential::Cert, cert) else {
            panic!("accepted: {why}");
        };
        assert_eq!(e.code, SqlState::INVALID_AUTHORIZATION);
        assert_eq!(
            e.message,
            "certificate authentication failed for user \"app\""
        );
        assert!(e.detail.as_deref().is_some_and(|d| d.contains(why)), "{e}");
    }
}
