//! Integration tests for `pgtest::Cluster` against the real PostgreSQL binaries.

use std::time::Duration;

use pgtest::{Cluster, ClusterOptions, Error, HbaAuth};

#[test]
fn trust_primary_runs_queries() {
    let pg = Cluster::start(&ClusterOptions::default()).expect("start");
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(pg.data_dir().join("PG_VERSION").exists());
    assert_eq!(pg.psql("postgres", "SELECT 40 + 2").unwrap(), "42");
    // Several statements, several result lines.
    let out = pg
        .psql(
            "postgres",
            "CREATE TABLE t(x int); INSERT INTO t VALUES (1),(2); SELECT x FROM t ORDER BY x;",
        )
        .unwrap();
    assert_eq!(out, "1\n2");
    // Configured settings are in force.
    assert_eq!(pg.psql("postgres", "SHOW wal_level").unwrap(), "replica");
    assert_eq!(pg.psql("postgres", "SHOW max_connections").unwrap(), "200");
    // Trust on TCP: no password needed.
    assert_eq!(
        pg.psql_tcp("postgres", None, "postgres", "SELECT 1")
            .unwrap(),
        "1"
    );
    // Errors carry psql's stderr.
    let err = pg
        .psql("postgres", "SELECT * FROM no_such_table")
        .unwrap_err();
    assert!(
        err.stderr().unwrap_or("").contains("no_such_table"),
        "{err}"
    );

    pg.set_setting("work_mem", "8MB").unwrap();
    pg.wait_for("postgres", "SHOW work_mem", "8MB", Duration::from_secs(5))
        .unwrap();
    pg.create_database("app").unwrap();
    assert_eq!(pg.psql("app", "SELECT current_database()").unwrap(), "app");
}

#[test]
fn scram_primary_checks_passwords() {
    let opts = ClusterOptions {
        auth: HbaAuth::ScramSha256,
        settings: vec![("fsync".into(), "on".into())],
        ..ClusterOptions::default()
    };
    let pg = Cluster::start(&opts).expect("start");
    assert_eq!(pg.psql("postgres", "SHOW fsync").unwrap(), "on");
    pg.create_role("alice", Some("s3cret'pw"), false).unwrap();
    let verifier = pg
        .psql(
            "postgres",
            "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'alice'",
        )
        .unwrap();
    assert_eq!(verifier, "SCRAM-SHA-256$");

    let who = pg
        .psql_tcp(
            "alice",
            Some("s3cret'pw"),
            "postgres",
            "SELECT current_user",
        )
        .unwrap();
    assert_eq!(who, "alice");

    let err = pg
        .psql_tcp("alice", Some("wrong"), "postgres", "SELECT 1")
        .unwrap_err();
    assert!(
        matches!(&err, Error::Command { stderr, .. } if stderr.contains("password authentication failed")),
        "{err}"
    );
    assert!(pg.psql_tcp("alice", None, "postgres", "SELECT 1").is_err());

    // The superuser got the default password.
    assert_eq!(
        pg.psql_tcp("postgres", Some("postgres"), "postgres", "SELECT 1")
            .unwrap(),
        "1"
    );
    assert!(pg
        .superuser_url("db")
        .starts_with("postgres://postgres:postgres@127.0.0.1:"));
}

#[test]
fn md5_primary_stores_md5_verifiers() {
    let pg = Cluster::start(&ClusterOptions::with_auth(HbaAuth::Md5)).expect("start");
    pg.create_role("bob", Some("pw"), false).unwrap();
    let verifier = pg
        .psql(
            "postgres",
            "SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'bob'",
        )
        .unwrap();
    assert_eq!(verifier, "md5");
    assert_eq!(
        pg.psql_tcp("bob", Some("pw"), "postgres", "SELECT 1")
            .unwrap(),
        "1"
    );
    assert!(pg
        .psql_tcp("bob", Some("nope"), "postgres", "SELECT 1")
        .is_err());
}

#[test]
fn replica_follows_primary() {
    let primary = Cluster::start(&ClusterOptions::default()).expect("start primary");
    let replica = primary.start_replica().expect("start replica");
    assert_ne!(primary.port(), replica.port());
    assert_ne!(primary.socket_dir(), replica.socket_dir());
    assert_eq!(
        replica
            .psql("postgres", "SELECT pg_is_in_recovery()")
            .unwrap(),
        "t"
    );
    assert_eq!(
        primary
            .psql("postgres", "SELECT pg_is_in_recovery()")
            .unwrap(),
        "f"
    );

    primary
        .psql(
            "postgres",
            "CREATE TABLE replicated(id int); INSERT INTO replicated VALUES (7);",
        )
        .unwrap();
    replica
        .wait_for(
            "postgres",
            "SELECT coalesce(max(id), 0) FROM replicated",
            "7",
            Duration::from_secs(10),
        )
        .expect("table reaches the replica");
    // Read-only there.
    assert!(replica
        .psql("postgres", "INSERT INTO replicated VALUES (8)")
        .is_err());
}

#[test]
fn stop_and_start_again_keeps_data() {
    let pg = Cluster::start(&ClusterOptions::default()).expect("start");
    pg.psql(
        "postgres",
        "CREATE TABLE kept(v text); INSERT INTO kept VALUES ('still here');",
    )
    .unwrap();
    let port = pg.port();
    pg.stop().unwrap();
    assert!(!pg.is_running());
    assert!(pg.psql("postgres", "SELECT 1").is_err());
    pg.start_again().unwrap();
    assert_eq!(pg.port(), port);
    assert_eq!(
        pg.psql("postgres", "SELECT v FROM kept").unwrap(),
        "still here"
    );
    pg.restart().unwrap();
    assert_eq!(
        pg.psql("postgres", "SELECT count(*) FROM kept").unwrap(),
        "1"
    );
}

#[test]
fn concurrent_clusters_get_distinct_ports_and_dirs() {
    let handles: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(|| Cluster::start(&ClusterOptions::default())))
        .collect();
    let clusters: Vec<Cluster> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("start"))
        .collect();
    assert_ne!(clusters[0].port(), clusters[1].port());
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    for c in &clusters {
        assert_eq!(c.psql("postgres", "SELECT 1").unwrap(), "1");
    }
}

#[test]
fn drop_removes_the_directory() {
    let pg = Cluster::start(&ClusterOptions::default()).expect("start");
    let dir = pg.data_dir().parent().unwrap().to_owned();
    assert!(dir.exists());
    drop(pg);
    assert!(!dir.exists());
}

#[test]
fn kept_cluster_survives_drop() {
    let pg = Cluster::start(&ClusterOptions::default()).expect("start");
    let kept = pg.keep();
    assert!(kept.data_dir.join("PG_VERSION").exists());
    assert!(kept
        .url("postgres", None, "postgres")
        .contains(&kept.port.to_string()));
    // Clean up by hand, as a `pgcoalesce dev` user would.
    let stop = std::process::Command::new(if is_root() { "runuser" } else { "sh" })
        .args(stop_args(&kept.data_dir))
        .output()
        .unwrap();
    assert!(stop.status.success(), "{stop:?}");
    std::fs::remove_dir_all(&kept.dir).unwrap();
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn stop_args(data_dir: &std::path::Path) -> Vec<String> {
    let pg_ctl = pgtest::bin_dir().join("pg_ctl").display().to_string();
    let data = data_dir.display().to_string();
    if is_root() {
        vec![
            "-u".into(),
            "postgres".into(),
            "--".into(),
            pg_ctl,
            "stop".into(),
            "-D".into(),
            data,
            "-m".into(),
            "immediate".into(),
            "-w".into(),
        ]
    } else {
        vec![
            "-c".into(),
            format!("\"{pg_ctl}\" stop -D \"{data}\" -m immediate -w"),
        ]
    }
}

#[test]
fn startup_failure_reports_the_log_tail() {
    let opts = ClusterOptions::default().setting("shared_buffers", "not-a-size");
    let err = Cluster::start(&opts).unwrap_err();
    match &err {
        Error::Startup { log_tail, .. } => {
            assert!(log_tail.contains("shared_buffers"), "{err}")
        }
        other => panic!("expected a startup error, got {other}"),
    }
}
