//! Transaction pooling seen from tokio-postgres: prepared statements across
//! pooled connections, types in binary and text, session state isolation,
//! cancel, and clients that vanish mid-transaction.

mod common;

use std::time::{Duration, Instant};

use common::{Env, Setup};
use tokio_postgres::types::Type;

fn small_pool(size: usize) -> Setup {
    Setup {
        pool_size: size,
        ..Setup::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_survive_1000_transactions_on_2_connections() {
    let env = Env::start(small_pool(2)).await;
    let setup = env.direct().await;
    setup
        .batch_execute("CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)")
        .await
        .unwrap();
    setup
        .execute(
            "INSERT INTO counters SELECT g, 0 FROM generate_series(0, 7) g",
            &[],
        )
        .await
        .unwrap();

    let mut tasks = Vec::new();
    for id in 0..8i32 {
        let url = env.url();
        tasks.push(tokio::spawn(async move {
            let mut client = common::connect(&url).await;
            // Named statements, prepared once per client, used on whichever
            // server connection each transaction gets.
            let bump = client
                .prepare("UPDATE counters SET n = n + 1 WHERE id = $1 RETURNING n")
                .await
                .unwrap();
            let read = client
                .prepare_typed("SELECT n FROM counters WHERE id = $1", &[Type::INT4])
                .await
                .unwrap();
            for i in 1..=125i64 {
                let tx = client.transaction().await.unwrap();
                let n: i64 = tx.query_one(&bump, &[&id]).await.unwrap().get(0);
                assert_eq!(n, i, "client {id} saw another client's counter");
                tx.commit().await.unwrap();
                let again: i64 = client.query_one(&read, &[&id]).await.unwrap().get(0);
                assert_eq!(again, i);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total: i64 = setup
        .query_one("SELECT sum(n)::bigint FROM counters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 1000);
    // The proxy never opened more than the pool's two server connections.
    let servers: i64 = setup
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(servers <= 2, "{servers} server connections for a pool of 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_round_trip_in_binary_and_text() {
    let env = Env::start(small_pool(2)).await;
    let client = env.client().await;
    // Binary results: tokio-postgres's typed query.
    let row = client
        .query_one(
            "SELECT 42::int4, 9000000000::int8, 1.5::numeric::text, 'héllo'::text, '\\xdeadbeef'::bytea, \
             '{\"a\": [1, 2]}'::jsonb, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid, \
             '2024-01-02 03:04:05+00'::timestamptz, ARRAY[1, 2, 3]::int4[], NULL::text",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, i64>(1), 9_000_000_000);
    assert_eq!(row.get::<_, String>(2), "1.5");
    assert_eq!(row.get::<_, String>(3), "héllo");
    assert_eq!(row.get::<_, Vec<u8>>(4), vec![0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(
        row.get::<_, serde_json::Value>(5),
        serde_json::json!({"a": [1, 2]})
    );
    assert_eq!(
        row.get::<_, uuid::Uuid>(6).to_string(),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    );
    let ts: std::time::SystemTime = row.get(7);
    assert_eq!(
        ts.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
        1_704_164_645
    );
    assert_eq!(row.get::<_, Vec<i32>>(8), vec![1, 2, 3]);
    assert_eq!(row.get::<_, Option<String>>(9), None);

    // Binary parameters going in.
    let row = client
        .query_one(
            "SELECT $1::int4 + 1, $2::bytea, $3::jsonb -> 'k', $4::uuid::text",
            &[
                &41i32,
                &vec![1u8, 0, 2],
                &serde_json::json!({"k": "v"}),
                &uuid::Uuid::nil(),
            ],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![1, 0, 2]);
    assert_eq!(row.get::<_, serde_json::Value>(2), serde_json::json!("v"));
    assert_eq!(
        row.get::<_, String>(3),
        "00000000-0000-0000-0000-000000000000"
    );

    // Text results: the simple protocol.
    let msgs = client
        .simple_query(
            "SELECT 1.5::numeric, '\\xff'::bytea, '{1,NULL}'::int[], NULL::int, now() IS NOT NULL",
        )
        .await
        .unwrap();
    let row = msgs
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("a row");
    assert_eq!(row.get(0), Some("1.5"));
    assert_eq!(row.get(1), Some("\\xff"));
    assert_eq!(row.get(2), Some("{1,NULL}"));
    assert_eq!(row.get(3), None);
    assert_eq!(row.get(4), Some("t"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_results_stream_through() {
    let env = Env::start(small_pool(1)).await;
    let client = env.client().await;
    let rows = client
        .query(
            "SELECT g, repeat('x', 1000) FROM generate_series(1, 50000) g",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 50_000);
    // Every row arrives whole and in order (rows are copied through in bulk).
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, i32>(0), i as i32 + 1);
        assert_eq!(row.get::<_, &str>(1).len(), 1000);
    }
    // The single server connection went back to the pool afterwards.
    let other = env.client().await;
    assert_eq!(
        other
            .query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_by_one_client_is_invisible_to_another_on_the_same_connection() {
    let env = Env::start(small_pool(1)).await;
    let a = env.client().await;
    let b = env.client().await;
    a.batch_execute("SET application_name = 'client-a'")
        .await
        .unwrap();
    a.batch_execute("SET TIME ZONE 'Asia/Tokyo'").await.unwrap();
    b.batch_execute("SET application_name = 'client-b'")
        .await
        .unwrap();
    // One server connection serves both, in turns.
    for _ in 0..3 {
        let an: String = a
            .query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get(0);
        let bn: String = b
            .query_one("SHOW application_name", &[])
            .await
            .unwrap()
            .get(0);
        let atz: String = a.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
        let btz: String = b.query_one("SHOW TimeZone", &[]).await.unwrap().get(0);
        assert_eq!(an, "client-a");
        assert_eq!(bn, "client-b");
        assert_eq!(atz, "Asia/Tokyo");
        assert_ne!(btz, "Asia/Tokyo");
    }
    // An untracked parameter pins its client instead of leaking.
    a.batch_execute("SET statement_timeout = '1234ms'")
        .await
        .unwrap();
    drop(a);
    let c = env.client().await;
    let st: String = c
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(st, "0", "statement_timeout leaked from another client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_killed_mid_transaction_leaves_no_transaction_or_lock() {
    let env = Env::start(small_pool(1)).await;
    let setup = env.direct().await;
    setup
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'before')",
        )
        .await
        .unwrap();
    {
        let a = env.client().await;
        a.batch_execute(
            "BEGIN; UPDATE t SET v = 'uncommitted' WHERE id = 1; SELECT pg_advisory_xact_lock(7)",
        )
        .await
        .unwrap();
        // `a` vanishes here with its transaction open.
    }
    let b = env.client().await;
    let started = Instant::now();
    let status: String = b
        .query_one("SELECT v FROM t WHERE id = 1 FOR UPDATE NOWAIT", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        status, "before",
        "the vanished client's update was committed"
    );
    let locked: bool = b
        .query_one("SELECT pg_try_advisory_xact_lock(7)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(locked, "the vanished client's lock is still held");
    let stuck: i64 = setup
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stuck, 0, "a server connection was left idle in transaction");
    // A plain BEGIN works: no transaction block was left open on this server.
    b.batch_execute("BEGIN; SELECT 1; COMMIT").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_advisory_lock_and_listen_pin_the_client() {
    let env = Env::start(small_pool(2)).await;
    let a = env.client().await;
    a.batch_execute("SELECT pg_advisory_lock(99)")
        .await
        .unwrap();
    // The lock lives on a's server connection, which a keeps: a can unlock it
    // in a later transaction.
    for _ in 0..5 {
        let b = env.client().await;
        let got: bool = b
            .query_one("SELECT pg_try_advisory_lock(99)", &[])
            .await
            .unwrap()
            .get(0);
        assert!(!got, "another client got the lock a holds");
    }
    let unlocked: bool = a
        .query_one("SELECT pg_advisory_unlock(99)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(unlocked, "a's lock was not on a's connection any more");
    drop(a);

    // LISTEN then a NOTIFY from someone else reaches the listener.
    let (listener, mut conn) = tokio_postgres::connect(&env.url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut stream = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = stream.next().await {
            if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = m {
                let _ = tx.send(format!("{}:{}", n.channel(), n.payload()));
            }
        }
    });
    listener.batch_execute("LISTEN news").await.unwrap();
    let other = env.client().await;
    other.batch_execute("NOTIFY news, 'hello'").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("notification within 5 s")
        .expect("a notification");
    assert_eq!(got, "news:hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_sleep_is_cancelled_within_a_second() {
    let env = Env::start(small_pool(2)).await;
    let client = env.client().await;
    let token = client.cancel_token();
    let sleeper = tokio::spawn(async move {
        let started = Instant::now();
        let r = client.batch_execute("SELECT pg_sleep(10)").await;
        (r, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancelled_at = Instant::now();
    token
        .cancel_query(tokio_postgres::NoTls)
        .await
        .expect("send cancel");
    let (result, _) = sleeper.await.unwrap();
    let err = result.expect_err("pg_sleep(10) should have been cancelled");
    assert_eq!(
        err.as_db_error().map(|e| e.code().clone()),
        Some(tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        cancelled_at.elapsed()
    );
}

/// Shutdown lets a client finish the transaction it is in, while a client
/// with nothing under way is closed with 57P01 at once; what was committed
/// stays committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_open_transactions_finish_and_closes_idle_clients() {
    let Env { pg, proxy } = Env::start(Setup::default()).await;
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        common::USER,
        common::PASSWORD,
        proxy.addr().port(),
        common::DB
    );
    let direct = common::connect(&pg.url(common::USER, Some(common::PASSWORD), common::DB)).await;
    direct
        .batch_execute("CREATE TABLE drained (id int PRIMARY KEY)")
        .await
        .expect("table");
    let busy = common::connect(&url).await;
    let idle = common::connect(&url).await;
    busy.batch_execute("BEGIN; INSERT INTO drained VALUES (1)")
        .await
        .expect("open a transaction");
    idle.simple_query("SELECT 1")
        .await
        .expect("idle client works");

    let shutdown = tokio::spawn(proxy.shutdown(Duration::from_secs(20)));
    // The idle client is told and closed.
    let started = Instant::now();
    while !idle.is_closed() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the idle client was not closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(idle.simple_query("SELECT 1").await.is_err());
    // The busy one finishes its transaction, then is closed too.
    assert!(!busy.is_closed(), "a client mid-transaction is not cut off");
    busy.batch_execute("INSERT INTO drained VALUES (2); COMMIT")
        .await
        .expect("the open transaction commits during shutdown");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(15), shutdown)
            .await
            .expect("shutdown returns once the clients are gone")
            .expect("shutdown task"),
        0
    );
    assert!(busy.is_closed(), "closed once idle");
    let n: i64 = direct
        .query_one("SELECT count(*) FROM drained", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 2, "the transaction finished during shutdown committed");
}
