//! Replica health and lag (`proxy::replicas`): the pure arithmetic and
//! choice policies with synthetic states, then one real primary + streaming
//! replica watched by a running monitor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgtest::{Cluster, ClusterOptions};
use proxy::replicas::{
    evaluate, format_lsn, lag_bytes, may_serve, parse_lsn, Balancing, Health, LsnHistory,
    Observation, ReadSplitSettings, ReplicaSet, ReplicaState,
};
use proxy::server::ServerTarget;
use proxy::server_auth::ServerSecret;

// ---------------------------------------------------------------- LSNs

#[test]
fn lsn_parsing() {
    assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
    assert_eq!(parse_lsn("0/0"), Some(0));
    assert_eq!(parse_lsn("0/3000148"), Some(0x300_0148));
    assert_eq!(parse_lsn("ffffffff/FFFFFFFF"), Some(u64::MAX));
    assert_eq!(parse_lsn(" 1/2\n"), Some((1 << 32) | 2));
    for bad in [
        "",
        "16",
        "16/",
        "/1",
        "g/1",
        "1/-2",
        "+1/2",
        "123456789/0",
        "0/123456789",
        "1/2/3",
        "1 /2",
    ] {
        assert_eq!(parse_lsn(bad), None, "{bad:?}");
    }
    for lsn in [0, 0x16_B374_D848, u64::MAX, 1 << 32] {
        assert_eq!(parse_lsn(&format_lsn(lsn)), Some(lsn));
    }
    assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
}

#[test]
fn lag_never_negative() {
    assert_eq!(lag_bytes(100, 40), 60);
    assert_eq!(lag_bytes(40, 100), 0);
    assert_eq!(lag_bytes(7, 7), 0);
    let crossing = parse_lsn("1/0").unwrap();
    let before = parse_lsn("0/FFFFFF00").unwrap();
    assert_eq!(lag_bytes(crossing, before), 0x100);
}

// ---------------------------------------------------------------- history

#[test]
fn history_finds_the_newest_covered_sample() {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut h = LsnHistory::new(Duration::from_secs(60));
    assert_eq!(h.caught_up_to(u64::MAX), None);
    h.record(at(0), 100);
    h.record(at(100), 200);
    h.record(at(200), 200);
    h.record(at(300), 350);
    assert_eq!(h.latest(), Some((at(300), 350)));
    assert_eq!(h.caught_up_to(99), None);
    assert_eq!(h.caught_up_to(100), Some(at(0)));
    assert_eq!(h.caught_up_to(250), Some(at(200)));
    assert_eq!(h.caught_up_to(350), Some(at(300)));
    assert_eq!(h.caught_up_to(1000), Some(at(300)));
    // A sample older than the newest is ignored.
    h.record(at(250), 999);
    assert_eq!(h.latest(), Some((at(300), 350)));
    assert_eq!(h.len(), 4);
}

#[test]
fn history_prunes_but_keeps_the_newest() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let mut h = LsnHistory::new(Duration::from_secs(10));
    for s in 0..=30 {
        h.record(at(s), s * 10);
    }
    // Samples from 20 s to 30 s remain.
    assert_eq!(h.len(), 11);
    assert_eq!(h.caught_up_to(195), None);
    assert_eq!(h.caught_up_to(200), Some(at(20)));
    // Long silence: older samples go, the newest stays.
    h.record(at(1000), 300);
    assert_eq!(h.len(), 1);
    assert_eq!(h.caught_up_to(300), Some(at(1000)));
}

#[test]
fn history_restarts_when_the_primary_goes_back() {
    let t0 = Instant::now();
    let mut h = LsnHistory::default();
    h.record(t0, 500);
    h.record(t0 + Duration::from_secs(1), 600);
    // A new primary (restored from a backup) with a lower position.
    h.record(t0 + Duration::from_secs(2), 50);
    assert_eq!(h.len(), 1);
    assert_eq!(h.caught_up_to(550), Some(t0 + Duration::from_secs(2)));
}

// ---------------------------------------------------------------- evaluate

fn settings() -> ReadSplitSettings {
    ReadSplitSettings {
        interval: Duration::from_millis(200),
        max_lag_bytes: 1000,
        max_lag: Duration::from_secs(5),
        balancing: Balancing::RoundRobin,
        read_your_writes_window: None,
    }
}

fn seen(in_recovery: bool, replay: Option<u64>, age: Option<f64>) -> Observation {
    Observation {
        in_recovery,
        replay_lsn: replay,
        replay_age: age,
    }
}

#[test]
fn observation_from_a_row() {
    let row = |a: Option<&str>, b: Option<&str>, c: Option<&str>| {
        vec![
            a.map(String::from),
            b.map(String::from),
            c.map(String::from),
        ]
    };
    assert_eq!(
        Observation::from_row(&row(Some("t"), Some("0/3000148"), Some("1.25"))),
        Ok(seen(true, Some(0x300_0148), Some(1.25)))
    );
    assert_eq!(
        Observation::from_row(&row(Some("f"), None, None)),
        Ok(seen(false, None, None))
    );
    assert_eq!(
        Observation::from_row(&row(Some("t"), Some("junk"), Some("NaN"))),
        Ok(seen(true, None, None))
    );
    assert!(Observation::from_row(&row(None, None, None)).is_err());
    assert!(Observation::from_row(&[]).is_err());
}

#[test]
fn evaluate_a_healthy_caught_up_replica() {
    let now = Instant::now();
    let mut h = LsnHistory::default();
    let sampled = now - Duration::from_millis(50);
    h.record(sampled, 5000);
    // Last transaction long ago, but nothing newer on the primary.
    let health = evaluate(
        Ok(&seen(true, Some(5000), Some(3600.0))),
        &h,
        now,
        &settings(),
    );
    assert_eq!(
        health,
        Health {
            up: true,
            reachable: true,
            lag_bytes: Some(0),
            lag_seconds: Some(0.0),
            caught_up_to: Some(sampled),
            reason: None,
        }
    );
    // Sampled after the primary: "ahead" is 0 lag.
    let health = evaluate(Ok(&seen(true, Some(5100), Some(0.1))), &h, now, &settings());
    assert!(health.up);
    assert_eq!(health.lag_bytes, Some(0));
}

#[test]
fn evaluate_down_cases() {
    let now = Instant::now();
    let mut h = LsnHistory::default();
    h.record(now - Duration::from_secs(30), 1000);
    h.record(now - Duration::from_millis(10), 5000);
    let s = settings();

    let down = evaluate(Err("connection refused"), &h, now, &s);
    assert!(!down.up && !down.reachable);
    assert!(down
        .reason
        .as_deref()
        .unwrap()
        .contains("connection refused"));

    let promoted = evaluate(Ok(&seen(false, Some(5000), None)), &h, now, &s);
    assert!(!promoted.up && promoted.reachable);
    assert!(promoted
        .reason
        .as_deref()
        .unwrap()
        .contains("not in recovery"));

    let no_primary = evaluate(
        Ok(&seen(true, Some(5000), Some(0.0))),
        &LsnHistory::default(),
        now,
        &s,
    );
    assert!(!no_primary.up);
    assert_eq!(no_primary.lag_bytes, None);

    let no_replay = evaluate(Ok(&seen(true, None, None)), &h, now, &s);
    assert!(!no_replay.up);

    // 4000 bytes behind, bound 1000.
    let far = evaluate(Ok(&seen(true, Some(1000), Some(0.5))), &h, now, &s);
    assert!(!far.up);
    assert_eq!(far.lag_bytes, Some(4000));
    assert!(far.reason.as_deref().unwrap().contains("max_lag_bytes"));
    assert_eq!(far.caught_up_to, Some(now - Duration::from_secs(30)));
}

#[test]
fn evaluate_time_lag() {
    let now = Instant::now();
    let s = settings();
    let mut h = LsnHistory::default();
    h.record(now - Duration::from_secs(20), 4500);
    h.record(now - Duration::from_millis(10), 5000);
    // 500 bytes behind (within bytes) and its last transaction is 8 s old,
    // while what it has replayed was current on the primary 20 s ago.
    let slow = evaluate(Ok(&seen(true, Some(4600), Some(8.0))), &h, now, &s);
    assert!(!slow.up);
    assert_eq!(slow.lag_seconds, Some(8.0));
    assert!(slow.reason.as_deref().unwrap().contains("max_lag"));
    // Within max_lag.
    let fine = evaluate(Ok(&seen(true, Some(4600), Some(1.5))), &h, now, &s);
    assert!(fine.up);
    assert_eq!(fine.lag_seconds, Some(1.5));
    // Unknown age (no transaction replayed since it started): bytes decide.
    let unknown = evaluate(Ok(&seen(true, Some(4600), None)), &h, now, &s);
    assert!(unknown.up);
    assert_eq!(unknown.lag_seconds, None);

    // Old last transaction, but the primary only wrote non-transaction WAL
    // since: the replica has what the primary had 1 s ago.
    let mut h = LsnHistory::default();
    h.record(now - Duration::from_secs(1), 4600);
    h.record(now - Duration::from_millis(10), 4700);
    let idle = evaluate(Ok(&seen(true, Some(4600), Some(60.0))), &h, now, &s);
    assert!(idle.up, "{idle:?}");
    assert_eq!(idle.lag_bytes, Some(100));
    assert_eq!(idle.caught_up_to, Some(now - Duration::from_secs(1)));
}

// ---------------------------------------------------------------- choose

/// A replica that is up and has replayed everything up to `caught_up_to`.
fn up(name: &str, weight: u32, caught_up_to: Option<Instant>) -> ReplicaState {
    let mut state = ReplicaState::new(name, 5432, weight);
    state.up = true;
    state.reachable = true;
    state.lag_bytes = Some(0);
    state.lag_seconds = Some(0.0);
    state.caught_up_to = caught_up_to;
    state.reason = None;
    state
}

fn down(name: &str) -> ReplicaState {
    ReplicaState::new(name, 5432, 1)
}

/// Host names of `n` choices (each dropped at once).
fn picks(set: &ReplicaSet, last_write: Option<Instant>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match set.choose(last_write) {
            Some(choice) => choice.host.clone(),
            None => "primary".to_string(),
        })
        .collect()
}

#[test]
fn may_serve_rules() {
    let now = Instant::now();
    let t = |ms: u64| now - Duration::from_millis(ms);
    let replica = up("r", 1, Some(t(100)));
    assert!(may_serve(&replica, None, now, None));
    assert!(may_serve(&replica, Some(t(150)), now, None));
    assert!(may_serve(&replica, Some(t(100)), now, None));
    assert!(!may_serve(&replica, Some(t(50)), now, None));
    // The window bounds how long the write keeps reads off the replica.
    assert!(!may_serve(
        &replica,
        Some(t(50)),
        now,
        Some(Duration::from_millis(60))
    ));
    assert!(may_serve(
        &replica,
        Some(t(50)),
        now,
        Some(Duration::from_millis(40))
    ));
    assert!(may_serve(&replica, Some(now), now, Some(Duration::ZERO)));
    // Never caught up to anything known: only non-writers.
    let unknown = up("r", 1, None);
    assert!(may_serve(&unknown, None, now, None));
    assert!(!may_serve(&unknown, Some(t(10_000)), now, None));
    // Down is down, window or not.
    assert!(!may_serve(&down("r"), None, now, Some(Duration::ZERO)));
}

#[test]
fn weighted_round_robin_interleaves() {
    let set = ReplicaSet::with_states(
        vec![up("a", 1, None), up("b", 2, None), up("c", 1, None)],
        settings(),
    );
    let got = picks(&set, None, 8);
    assert_eq!(got, ["b", "a", "c", "b", "b", "a", "c", "b"]);
    let states = set.states();
    assert_eq!(
        states.iter().map(|s| s.queries_routed).collect::<Vec<_>>(),
        [2, 4, 2]
    );
    assert!(states.iter().all(|s| s.in_flight == 0));
}

#[test]
fn round_robin_skips_down_and_behind_replicas() {
    let now = Instant::now();
    let old = now - Duration::from_secs(2);
    let set = ReplicaSet::with_states(
        vec![up("a", 1, Some(now)), down("b"), up("c", 1, Some(old))],
        settings(),
    );
    assert_eq!(picks(&set, None, 4), ["a", "c", "a", "c"]);
    // A write 1 s ago: only "a" has replayed it.
    let wrote = now - Duration::from_secs(1);
    assert_eq!(picks(&set, Some(wrote), 3), ["a", "a", "a"]);
    // A write newer than every replica: the primary.
    assert_eq!(picks(&set, Some(Instant::now()), 1), ["primary"]);
    set.mark_down(0);
    assert_eq!(picks(&set, Some(wrote), 1), ["primary"]);
    assert_eq!(picks(&set, None, 2), ["c", "c"]);
    let states = set.states();
    assert!(!states[0].up);
    assert!(states[0].reason.as_deref().unwrap().contains("marked down"));
    // Out of range is ignored.
    set.mark_down(99);
    // All down: the primary.
    set.mark_down(2);
    assert_eq!(picks(&set, None, 1), ["primary"]);
    // A successful check brings it back.
    let health = Health {
        up: true,
        reachable: true,
        lag_bytes: Some(0),
        lag_seconds: Some(0.0),
        caught_up_to: Some(Instant::now()),
        reason: None,
    };
    set.set_state(2, health);
    assert_eq!(picks(&set, Some(wrote), 1), ["c"]);
}

#[test]
fn read_your_writes_window_lets_reads_go_anywhere_after_it() {
    let now = Instant::now();
    let mut s = settings();
    s.read_your_writes_window = Some(Duration::from_millis(500));
    let set = ReplicaSet::with_states(vec![up("a", 1, Some(now - Duration::from_secs(5)))], s);
    assert_eq!(picks(&set, Some(now - Duration::from_secs(1)), 1), ["a"]);
    assert_eq!(picks(&set, Some(Instant::now()), 1), ["primary"]);
}

#[test]
fn least_outstanding_follows_reads_in_flight() {
    let mut s = settings();
    s.balancing = Balancing::LeastOutstanding;
    let set = ReplicaSet::with_states(vec![up("a", 1, None), up("b", 1, None)], s.clone());
    // Nothing in flight: ties alternate.
    assert_eq!(picks(&set, None, 4), ["a", "b", "a", "b"]);
    let first = set.choose(None).unwrap();
    // The first is busy: the other until it is as busy.
    let second = set.choose(None).unwrap();
    assert_ne!(first.host, second.host);
    // A tie again: either, by round robin.
    let third = set.choose(None).unwrap();
    let in_flight = |set: &ReplicaSet| set.states().iter().map(|s| s.in_flight).collect::<Vec<_>>();
    let mut counts = in_flight(&set);
    counts.sort();
    assert_eq!(counts, [1, 2]);
    let idle = if third.host == first.host {
        &second.host
    } else {
        &first.host
    };
    assert_eq!(picks(&set, None, 2), [idle.clone(), idle.clone()]);
    // Reads finishing free their replica.
    let busy = third.index;
    drop(third);
    assert_eq!(in_flight(&set), [1, 1]);
    let same = if first.index == busy { first } else { second };
    drop(same);
    let free = busy;
    assert_eq!(set.states()[free].in_flight, 0);
    assert_eq!(set.choose(None).map(|c| c.index), Some(free));

    // Weight 3 takes three reads in flight per one on weight 1.
    let set = ReplicaSet::with_states(vec![up("a", 1, None), up("big", 3, None)], s);
    let held: Vec<_> = (0..8).map(|_| set.choose(None).unwrap()).collect();
    let on_big = held.iter().filter(|c| c.host == "big").count();
    assert_eq!(on_big, 6, "{held:?}");
    drop(held);
    assert!(set.states().iter().all(|s| s.in_flight == 0));
}

#[tokio::test]
async fn checked_returns_at_once_without_a_monitor() {
    let set = ReplicaSet::with_states(vec![down("a")], settings());
    tokio::time::timeout(Duration::from_secs(1), set.checked())
        .await
        .expect("checked() without a monitor returns");
}

// ---------------------------------------------------------------- real servers

/// Runs blocking pgtest work off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Waits (checking after each cycle) until `pred` holds for replica 0.
async fn wait_until(
    set: &ReplicaSet,
    limit: Duration,
    what: &str,
    pred: impl Fn(&ReplicaState) -> bool,
) -> ReplicaState {
    let deadline = Instant::now() + limit;
    loop {
        let state = set.states().remove(0);
        if pred(&state) {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "replica not {what} within {limit:?}: {state:?}"
        );
        let _ = tokio::time::timeout(Duration::from_secs(1), set.checked()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_follows_a_real_replica() {
    let test_start = Instant::now();
    let (primary, replica) = blocking(|| {
        let primary = Cluster::start(&ClusterOptions::default()).expect("primary");
        let replica = primary.start_replica().expect("replica");
        (primary, replica)
    })
    .await;
    let primary = Arc::new(primary);
    let replica = Arc::new(replica);
    let interval = Duration::from_millis(200);
    let target = ServerTarget {
        host: primary.host().to_string(),
        port: primary.port(),
        user: "postgres".into(),
        dbname: "postgres".into(),
        secret: ServerSecret::from_password(primary.superuser_password()),
        connect_timeout: Duration::from_secs(5),
        tls: proxy::tls::UpstreamTls::disabled(),
    };
    let set = ReplicaSet::start(
        target,
        vec![(replica.host().to_string(), replica.port(), 1)],
        ReadSplitSettings {
            interval,
            ..ReadSplitSettings::default()
        },
    );

    // Up, with little lag.
    let state = wait_until(&set, Duration::from_secs(10), "up", |s| s.up).await;
    assert!(state.reachable);
    assert!(state.lag_bytes.unwrap() < 1024 * 1024, "{state:?}");
    assert!(state.lag_seconds.unwrap() < 5.0, "{state:?}");
    assert!(state.checked_at.is_some() && state.caught_up_to.is_some());
    assert_eq!(set.choose(None).map(|c| c.port), Some(replica.port()));

    // A write: caught_up_to passes it, and by then the replica has it.
    let p = primary.clone();
    blocking(move || {
        p.psql("postgres", "CREATE TABLE rw_probe (x int)")
            .expect("create")
    })
    .await;
    let wrote = Instant::now();
    let state = wait_until(&set, Duration::from_secs(10), "caught up", |s| {
        s.caught_up_to.is_some_and(|t| t >= wrote)
    })
    .await;
    assert!(state.up, "{state:?}");
    let r = replica.clone();
    let seen = blocking(move || {
        r.psql("postgres", "SELECT to_regclass('rw_probe') IS NOT NULL")
            .expect("query replica")
    })
    .await;
    assert_eq!(
        seen, "t",
        "caught_up_to passed the write before the replica had it"
    );
    assert_eq!(set.choose(Some(wrote)).map(|c| c.index), Some(0));

    // mark_down holds until the next check.
    set.mark_down(0);
    assert!(set.choose(None).is_none());
    wait_until(
        &set,
        Duration::from_secs(5),
        "up again after mark_down",
        |s| s.up,
    )
    .await;

    // Stopped: down within about two intervals, reads go to the primary.
    let r = replica.clone();
    blocking(move || r.stop().expect("stop replica")).await;
    let stopped = Instant::now();
    set.checked().await;
    let state = set.states().remove(0);
    assert!(!state.up && !state.reachable, "{state:?}");
    assert!(
        state
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("unreachable"),
        "{state:?}"
    );
    assert!(
        stopped.elapsed() <= 2 * interval + Duration::from_millis(500),
        "took {:?} to notice",
        stopped.elapsed()
    );
    assert!(set.choose(None).is_none());

    // Started again: up again.
    let r = replica.clone();
    blocking(move || r.start_again().expect("start replica again")).await;
    let state = wait_until(&set, Duration::from_secs(15), "up after restart", |s| s.up).await;
    assert!(state.reachable);
    assert!(set.choose(None).is_some());
    assert!(set.states()[0].queries_routed >= 3);

    // Dropping the set ends the monitor and closes its connections.
    let p = primary.clone();
    let monitor_sessions = move || {
        p.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_current_wal_lsn%'",
        )
        .expect("count sessions")
    };
    let count = monitor_sessions.clone();
    assert_eq!(blocking(count).await, "1");
    drop(set);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = monitor_sessions.clone();
        if blocking(count).await == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "monitor still connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("real replica test took {:?}", test_start.elapsed());
    blocking(move || drop((replica, primary))).await;
}
