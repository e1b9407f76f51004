//! The SCRAM exchanges against RFC 7677's example and against each other.

use pgwire::api::auth::sasl::scram::gen_salted_password;

use super::*;

const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";

/// (ClientKey, StoredKey, ServerKey) of `password` with RFC 7677's salt.
fn keys(password: &str, iterations: u32) -> (Key, Key, Key) {
    let salt = STANDARD.decode(SALT_B64).unwrap();
    let salted = gen_salted_password(password, &salt, iterations as usize);
    let (client_key, server_key) = keys_from_salted_password(&salted);
    (client_key, stored_key(&client_key), server_key)
}

fn salt() -> Vec<u8> {
    STANDARD.decode(SALT_B64).unwrap()
}

/// A client (with `secret`) against the server side holding `password`'s
/// verifier; returns what each side ended with.
fn exchange(
    secret: &ClientSecret<'_>,
    password: &str,
) -> (Result<Key, ScramError>, Result<(), ScramError>) {
    let (_, stored, server_key) = keys(password, 4096);
    let (first, client) = ClientExchange::start();
    let (server_first, server) = ServerExchange::start(first.as_bytes(), &salt(), 4096).unwrap();
    let (client_final, finished) = match client.finish(server_first.as_bytes(), secret) {
        Ok(done) => done,
        Err(e) => return (Err(e.clone()), Err(e)),
    };
    match server.finish(client_final.as_bytes(), &stored, &server_key) {
        Ok((server_final, client_key)) => {
            (Ok(client_key), finished.verify(server_final.as_bytes()))
        }
        Err(e) => (Err(e.clone()), Err(e)),
    }
}

#[test]
fn server_side_follows_rfc_7677() {
    let (client_key, stored, server_key) = keys("pencil", 4096);
    let (server_first, server) = ServerExchange::start_with_nonce(
        b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
        &salt(),
        4096,
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
    )
    .unwrap();
    assert_eq!(
        server_first,
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let (server_final, recovered) = server
        .finish(
            b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
              p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            &stored,
            &server_key,
        )
        .unwrap();
    assert_eq!(
        server_final,
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    );
    assert_eq!(recovered, client_key);
}

#[test]
fn a_password_logs_in_and_the_recovered_key_logs_in_again() {
    let (client_key, _, server_key) = keys("pencil", 4096);
    let (recovered, server_checked) = exchange(&ClientSecret::Password("pencil"), "pencil");
    assert_eq!(recovered, Ok(client_key));
    assert_eq!(server_checked, Ok(()));

    // The proxy's own login with the ClientKey it recovered: no password.
    let keys = ScramKeys {
        client_key,
        server_key: server_key.to_vec(),
        salt: salt(),
        iterations: 4096,
    };
    let (again, server_checked) = exchange(&ClientSecret::Keys(&keys), "pencil");
    assert_eq!(again, Ok(client_key));
    assert_eq!(server_checked, Ok(()));
    assert!(!format!("{keys:?}").contains(&format!("{:?}", client_key[0..4].to_vec())));
}

#[test]
fn a_wrong_password_is_a_wrong_proof() {
    let (recovered, _) = exchange(&ClientSecret::Password("pencil2"), "pencil");
    assert_eq!(recovered, Err(ScramError::WrongProof));
}

#[test]
fn keys_only_work_with_their_own_salt_and_count() {
    let (client_key, _, server_key) = keys("pencil", 4096);
    let mut keys = ScramKeys {
        client_key,
        server_key: server_key.to_vec(),
        salt: b"another salt".to_vec(),
        iterations: 4096,
    };
    let (recovered, _) = exchange(&ClientSecret::Keys(&keys), "pencil");
    assert_eq!(recovered, Err(ScramError::OtherSalt));
    keys.salt = salt();
    keys.iterations = 4097;
    let (recovered, _) = exchange(&ClientSecret::Keys(&keys), "pencil");
    assert_eq!(recovered, Err(ScramError::OtherSalt));
}

#[test]
fn the_client_side_checks_the_server() {
    let (first, client) = ClientExchange::start_with_nonce("abc");
    assert_eq!(first, "n,,n=,r=abc");
    // A server that did not extend the nonce.
    let err = client
        .finish(b"r=abd123,s=c2FsdA==,i=4096", &ClientSecret::Password("x"))
        .err();
    assert!(matches!(err, Some(ScramError::Malformed(_))), "{err:?}");

    let (_, client) = ClientExchange::start_with_nonce("abc");
    let (final_msg, finished) = client
        .finish(b"r=abc123,s=c2FsdA==,i=4096", &ClientSecret::Password("x"))
        .unwrap();
    assert!(final_msg.starts_with("c=biws,r=abc123,p="), "{final_msg}");
    // A signature the server could only make with the verifier.
    let forged = format!("v={}", STANDARD.encode([7u8; KEY_LEN]));
    assert_eq!(
        finished.verify(forged.as_bytes()),
        Err(ScramError::ServerSignature)
    );
    let (_, client) = ClientExchange::start_with_nonce("abc");
    let (_, finished) = client
        .finish(b"r=abc123,s=c2FsdA==,i=4096", &ClientSecret::Password("x"))
        .unwrap();
    assert_eq!(
        finished.verify(b"e=invalid-proof"),
        Err(ScramError::Server("invalid-proof".into()))
    );
    for bad in [
        &b"r=abc123,s=c2FsdA==,i=0"[..],
        b"r=abc123,s=c2FsdA==",
        b"r=abc123,s=*,i=1",
        b"\xff",
    ] {
        let (_, client) = ClientExchange::start_with_nonce("abc");
        let err = client.finish(bad, &ClientSecret::Password("x")).err();
        assert!(
            matches!(err, Some(ScramError::Malformed(_))),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn client_first_messages_postgres_refuses_are_refused() {
    let start = |m: &[u8]| ServerExchange::start(m, &salt(), 4096).err();
    assert_eq!(
        start(b"p=tls-server-end-point,,n=,r=abc"),
        Some(ScramError::ChannelBinding)
    );
    for bad in [
        &b"n,a=bob,n=,r=abc"[..],
        b"x,,n=,r=abc",
        b"n,,m=ext,n=,r=abc",
        b"n,,n=,r=",
        b"n,,n=",
        b"n,,r=abc",
        b"n",
        b"\xff,,n=,r=abc",
    ] {
        assert!(
            matches!(start(bad), Some(ScramError::Malformed(_))),
            "{:?} accepted",
            String::from_utf8_lossy(bad)
        );
    }
    // "y,,": the client could bind but thinks the server cannot; fine,
    // and its final message must then repeat "y,," (c=eSws).
    let (_, stored, server_key) = keys("pencil", 4096);
    let (server_first, server) =
        ServerExchange::start_with_nonce(b"y,,n=,r=abc", &salt(), 4096, "xyz").unwrap();
    assert!(server_first.starts_with("r=abcxyz,"));
    let err = server
        .finish(b"c=biws,r=abcxyz,p=AAAA", &stored, &server_key)
        .err();
    assert_eq!(
        err,
        Some(ScramError::Malformed("unexpected channel binding data"))
    );
}

#[test]
fn client_final_messages_are_checked_before_the_proof() {
    let (_, stored, server_key) = keys("pencil", 4096);
    let proof = STANDARD.encode([0u8; KEY_LEN]);
    for (msg, why) in [
        ("c=biws,r=abcxyz".to_owned(), "no proof"),
        (format!("c=biws,r=abcxyZ,p={proof}"), "nonce does not match"),
        (
            format!("c=eSws,r=abcxyz,p={proof}"),
            "unexpected channel binding data",
        ),
        ("c=biws,r=abcxyz,p=AAAA".to_owned(), "invalid proof"),
        ("c=biws,r=abcxyz,p=***".to_owned(), "invalid proof"),
    ] {
        let (_, server) =
            ServerExchange::start_with_nonce(b"n,,n=,r=abc", &salt(), 4096, "xyz").unwrap();
        let err = server.finish(msg.as_bytes(), &stored, &server_key).err();
        assert_eq!(err, Some(ScramError::Malformed(why)), "{msg}");
    }
    // A well-formed proof made without the password.
    let (_, server) =
        ServerExchange::start_with_nonce(b"n,,n=,r=abc", &salt(), 4096, "xyz").unwrap();
    let msg = format!("c=biws,r=abcxyz,p={proof}");
    let err = server.finish(msg.as_bytes(), &stored, &server_key).err();
    assert_eq!(err, Some(ScramError::WrongProof));
}

proptest::proptest! {
    /// Whatever a client sends, the server side answers with an error or
    /// goes on; it never panics, and bytes made up without the password
    /// never pass.
    #[test]
    fn arbitrary_client_messages_never_panic_or_pass(
        first in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        nonce in "[!-+--~]{1,24}",
        tail in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
    ) {
        let (_, stored, server_key) = keys("pencil", 4096);
        let _ = ServerExchange::start(&first, &salt(), 4096);
        let client_first = format!("n,,n=,r={nonce}");
        let (_, server) = ServerExchange::start_with_nonce(
            client_first.as_bytes(), &salt(), 4096, "xyz",
        ).unwrap();
        let mut client_final = format!("c=biws,r={nonce}xyz,p=").into_bytes();
        client_final.extend_from_slice(&tail);
        let result = server.finish(&client_final, &stored, &server_key);
        proptest::prop_assert!(result.is_err());
    }
}
