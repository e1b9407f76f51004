//! The `pgcoalesce` binary itself: started with a config file, it serves
//! clients, and the admin console's SHUTDOWN makes the process drain and
//! exit (as SIGTERM does).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgtest::{Cluster, ClusterOptions};

/// Kills the proxy if the test fails before it exits.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free right now (the binary binds it a moment later).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe port")
        .port()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let started = Instant::now();
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                return client;
            }
            Err(_) if started.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the proxy did not come up: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_shutdown_ends_the_process() {
    let pg = Cluster::start(&ClusterOptions::default()).expect("postgres");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pgcoalesce.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}\n\
             admin_users: [admin]\n\
             users:\n  - name: postgres\n    auth: trust\n    server_password: postgres\n\
             \x20 - name: admin\n    auth: md5\n    password: secret\n\
             databases:\n  - name: postgres\n    host: 127.0.0.1\n    port: {}\n",
            pg.port()
        ),
    )
    .expect("config file");
    let mut proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_pgcoalesce"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the binary"),
    );

    let app = connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await;
    let one: i32 = app
        .query_one("SELECT 1", &[])
        .await
        .expect("query through the binary")
        .get(0);
    assert_eq!(one, 1);

    let console = connect(&format!(
        "postgres://admin:secret@127.0.0.1:{port}/pgcoalesce_admin"
    ))
    .await;
    console
        .simple_query("SHUTDOWN")
        .await
        .expect("SHUTDOWN is answered");

    let started = Instant::now();
    let status = loop {
        if let Some(status) = proxy.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the process is still running after SHUTDOWN"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    // The idle application client was closed by the drain.
    assert!(app.query_one("SELECT 1", &[]).await.is_err());
}

/// The config file with `admin_users` as given; the listen address comes
/// from the command line.
fn sighup_config(pg_port: u16, admins: &str) -> String {
    format!(
        "listen: 127.0.0.1:1\n\
         admin_users: [{admins}]\n\
         users:\n  - name: postgres\n    auth: trust\n    server_password: postgres\n\
         \x20 - name: admin\n    auth: md5\n    password: secret\n\
         databases:\n  - name: postgres\n    host: 127.0.0.1\n    port: {pg_port}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_and_keeps_clients() {
    let pg = Cluster::start(&ClusterOptions::default()).expect("postgres");
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("pgcoalesce.yaml");
    std::fs::write(&config, sighup_config(pg.port(), "")).expect("config file");
    let proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_pgcoalesce"))
            .arg("--config")
            .arg(&config)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the binary"),
    );
    let app = connect(&format!("postgres://postgres@127.0.0.1:{port}/postgres")).await;
    let console_url = format!("postgres://admin:secret@127.0.0.1:{port}/pgcoalesce_admin");
    let refused = tokio_postgres::connect(&console_url, tokio_postgres::NoTls).await;
    assert!(refused.is_err(), "admin is not an admin user yet");

    std::fs::write(&config, sighup_config(pg.port(), "admin")).expect("edit config");
    let hup = Command::new("kill")
        .args(["-HUP", &proxy.0.id().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(hup.success());

    // The reload is asynchronous: poll until the console lets admin in.
    let started = Instant::now();
    let console = loop {
        match tokio_postgres::connect(&console_url, tokio_postgres::NoTls).await {
            Ok((client, conn)) => {
                tokio::spawn(conn);
                break client;
            }
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "SIGHUP did not apply the new admin_users: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let version = console.simple_query("SHOW VERSION").await;
    assert!(version.is_ok(), "{version:?}");
    // The application client was not dropped, and the --listen flag still
    // wins over the file's address.
    let one: i32 = app
        .query_one("SELECT 1", &[])
        .await
        .expect("the client survived SIGHUP")
        .get(0);
    assert_eq!(one, 1);
}
