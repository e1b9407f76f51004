//! psql and pgbench, the real command line tools, through the proxy.

mod common;

use common::{run, Env, Setup};

fn psql(env: &Env, script: &str) -> (bool, String, String) {
    let url = env.url();
    run(
        "psql",
        &["-X", "-A", "-t", "-v", "ON_ERROR_STOP=0", &url],
        Some(script),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_multi_statement_copy_and_errors() {
    let env = Env::start(Setup::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let csv_in = dir.path().join("in.csv");
    let csv_out = dir.path().join("out.csv");
    std::fs::write(&csv_in, "1,one\n2,two\n3,three\n").unwrap();
    let script = format!(
        "CREATE TABLE items (id int PRIMARY KEY, name text);\n\
         SELECT 'multi-a'; SELECT 'multi-b'; SELECT 'multi-c';\n\
         \\copy items FROM '{}' WITH (FORMAT csv)\n\
         SELECT count(*) || ' rows' FROM items;\n\
         SELECT * FROM no_such_table;\n\
         SELECT 'after error ' || max(name) FROM items;\n\
         \\copy (SELECT id, upper(name) FROM items ORDER BY id) TO '{}' WITH (FORMAT csv)\n",
        csv_in.display(),
        csv_out.display()
    );
    let env_ref = &env;
    let (_, out, err) = tokio::task::block_in_place(|| psql(env_ref, &script));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"multi-a"), "stdout: {out}\nstderr: {err}");
    assert!(lines.contains(&"multi-b"));
    assert!(lines.contains(&"multi-c"));
    assert!(lines.contains(&"3 rows"), "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("relation \"no_such_table\" does not exist"),
        "stderr: {err}"
    );
    assert!(lines.contains(&"after error two"), "stdout: {out}");
    assert_eq!(
        std::fs::read_to_string(&csv_out).unwrap(),
        "1,ONE\n2,TWO\n3,THREE\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_single_query_string_with_several_statements() {
    let env = Env::start(Setup::default()).await;
    let url = env.url();
    // -c sends the whole string as one simple Query message.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        run(
            "psql",
            &[
                "-X",
                "-A",
                "-t",
                &url,
                "-c",
                "CREATE TABLE z(x int); INSERT INTO z VALUES (1),(2); SELECT sum(x) FROM z",
            ],
            None,
        )
    });
    assert!(ok, "stderr: {err}");
    assert_eq!(out.lines().last(), Some("3"), "stdout: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_in_every_protocol_mode_with_no_failures() {
    let env = Env::start(Setup {
        pool_size: 4,
        ..Setup::default()
    })
    .await;
    let url = env.url();
    let direct = env.direct_url();
    tokio::task::block_in_place(|| {
        let (ok, _, err) = run("pgbench", &["-i", "-s", "1", "-q", &direct], None);
        assert!(ok, "pgbench -i: {err}");
        // -i through the proxy too (DDL, COPY, VACUUM in transaction mode).
        let (ok, _, err) = run("pgbench", &["-i", "-s", "1", "-q", &url], None);
        assert!(ok, "pgbench -i through the proxy: {err}");
        // One thread per client: pgbench prepares statements with a blocking
        // PQprepare, so a thread serving several clients would stall a client
        // holding a pooled connection mid-transaction behind another waiting
        // for one (with any transaction pooler, not just this one).
        for mode in ["simple", "extended", "prepared"] {
            let (ok, out, err) = run(
                "pgbench",
                &["-n", "-M", mode, "-c", "8", "-j", "8", "-T", "2", &url],
                None,
            );
            assert!(ok, "pgbench -M {mode}: {err}\n{out}");
            assert!(
                out.contains("number of failed transactions: 0 (0.000%)"),
                "pgbench -M {mode}:\n{out}"
            );
            let processed = out
                .lines()
                .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
                .and_then(|n| n.split('/').next())
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            assert!(
                processed > 100,
                "pgbench -M {mode} processed {processed}:\n{out}"
            );
        }
    });
}
