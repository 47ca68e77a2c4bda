use super::*;

const HOUR: u64 = 3600 * MICROS_PER_SECOND;
const T0: u64 = 1_700_000_000 * MICROS_PER_SECOND;

fn record(key: &str, amount: &str) -> Record {
    Record { key: key.into(), amount: Amount::parse(amount).unwrap() }
}

fn commit(id: &str, at_us: u64, reads: &[(&str, u64)], records: &[Record]) -> Commit {
    Commit {
        id: id.into(),
        at_us,
        reads: reads.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        records: records.to_vec(),
    }
}

/// The sum and count over the hour before `at`, as `transaction` sees it.
fn hour(store: &StateStore, key: &str, at: u64, transaction: &str) -> (String, u64) {
    let total = store.window(key, at - HOUR, HOUR, transaction).unwrap();
    (total.sum.to_string(), total.count)
}

#[tokio::test]
async fn a_window_counts_events_younger_than_it_and_never_the_transaction_being_decided() {
    let store = StateStore::in_memory().unwrap();
    store.commit(commit("a", T0, &[], &[record("k", "1.5")])).await.unwrap();
    store.commit(commit("b", T0 + 10, &[], &[record("k", "2")])).await.unwrap();
    assert_eq!(hour(&store, "k", T0 + HOUR - 1, "x"), ("3.5".into(), 2));
    assert_eq!(hour(&store, "k", T0 + HOUR, "x"), ("2".into(), 1), "an event exactly a window old has left it");
    assert_eq!(hour(&store, "k", T0 + 20, "a"), ("2".into(), 1), "a transaction's own record is left out");
    assert_eq!(hour(&store, "other", T0 + 20, "x"), ("0".into(), 0));
}

#[tokio::test]
async fn a_transaction_is_recorded_once_per_key_and_a_changed_read_is_a_conflict() {
    let store = StateStore::in_memory().unwrap();
    let first = store.commit(commit("t", T0, &[("k", 0)], &[record("k", "1"), record("j", "1")])).await.unwrap();
    assert_eq!(first, Committed::Applied { new: vec!["k".into(), "j".into()] });
    let again = store.commit(commit("t", T0 + 5, &[], &[record("k", "1")])).await.unwrap();
    assert_eq!(again, Committed::Applied { new: vec![] }, "the signing stage adds nothing");
    assert_eq!(hour(&store, "k", T0 + 10, "x"), ("1".into(), 1));
    let stale = store.commit(commit("u", T0 + 6, &[("k", 0)], &[record("k", "1")])).await.unwrap();
    assert_eq!(stale, Committed::Conflict, "k changed since it was read at version 0");
    assert_eq!(hour(&store, "k", T0 + 10, "x"), ("1".into(), 1), "a conflict writes nothing");
}

#[tokio::test]
async fn a_revert_takes_back_only_what_the_decision_added() {
    let store = StateStore::in_memory().unwrap();
    store.commit(commit("t", T0, &[], &[record("k", "1")])).await.unwrap();
    let version = store.window("k", 0, HOUR, "x").unwrap().version;
    store.revert("t", &[record("k", "1"), record("j", "4")], &["k".into()]).await.unwrap();
    let after = store.window("k", 0, HOUR, "x").unwrap();
    assert_eq!((after.count, after.version > version), (0, true), "gone, and readers of it conflict");
    let again = store.commit(commit("t", T0, &[], &[record("k", "1")])).await.unwrap();
    assert_eq!(again, Committed::Applied { new: vec!["k".into()] }, "it may be recorded again");
}

#[tokio::test]
async fn request_ids_remember_the_identity_they_first_came_with() {
    let store = StateStore::in_memory().unwrap();
    assert_eq!(store.remember("r", None, [1; 32], T0).await.unwrap(), Seen::First);
    assert_eq!(store.remember("r", None, [1; 32], T0).await.unwrap(), Seen::Same);
    assert_eq!(store.remember("r", None, [2; 32], T0).await.unwrap(), Seen::Different);
}

#[tokio::test]
async fn a_tx_id_is_bound_to_the_identity_of_its_first_decision_whatever_the_request_id() {
    let store = StateStore::in_memory().unwrap();
    assert_eq!(store.remember("T", Some("T"), [1; 32], T0).await.unwrap(), Seen::First);
    assert_eq!(store.remember("T-1", Some("T"), [1; 32], T0).await.unwrap(), Seen::First, "same content");
    assert_eq!(store.remember("T-2", Some("T"), [2; 32], T0).await.unwrap(), Seen::TxIdReused);
    assert_eq!(
        store.remember("T-2", Some("U"), [2; 32], T0).await.unwrap(),
        Seen::First,
        "the refused request bound nothing: T-2 is free for another transaction"
    );
    assert_eq!(store.remember("T", Some("T"), [1; 32], T0).await.unwrap(), Seen::Same);
}

#[tokio::test]
async fn pruning_keeps_the_longest_window_in_use_and_forgets_the_rest() {
    let settings = StateSettings { retention: Duration::from_secs(3600), ..StateSettings::default() };
    let store = StateStore::open(settings).unwrap();
    store.commit(commit("old", T0, &[], &[record("k", "1")])).await.unwrap();
    store.commit(commit("new", T0 + 2 * HOUR, &[], &[record("k", "2")])).await.unwrap();
    store.remember("r", None, [1; 32], T0).await.unwrap();
    store.prune(T0 + 2 * HOUR + 1).await.unwrap();
    // Retention (1h) and the request-id ttl (48h) keep the marks; the old event is gone.
    assert_eq!(store.window("k", 0, 10 * HOUR, "x").unwrap().count, 1);
    assert_eq!(store.remember("r", None, [2; 32], T0).await.unwrap(), Seen::Different);

    store.commit(commit("new2", T0 + 3 * HOUR, &[], &[record("w", "1")])).await.unwrap();
    store.window("w", 0, 5 * HOUR, "x").unwrap(); // a policy reads a 5h window: kept from now on
    store.prune(T0 + 7 * HOUR).await.unwrap();
    assert_eq!(store.window("w", 0, 5 * HOUR, "x").unwrap().count, 1, "within the longest window read");
    store.prune(T0 + 60 * HOUR).await.unwrap();
    let w = store.window("w", 0, 5 * HOUR, "x").unwrap();
    assert_eq!((w.count, w.version), (0, 0), "an idle key forgets its events and its version");
    assert_eq!(store.remember("r", None, [2; 32], T0).await.unwrap(), Seen::First, "past the request-id ttl");
}

#[tokio::test]
async fn the_embedded_store_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let settings =
        StateSettings { backend: Backend::Embedded { dir: dir.path().join("state") }, ..StateSettings::default() };
    let store = StateStore::open(settings.clone()).unwrap();
    store.commit(commit("t", T0, &[], &[record("k", "7")])).await.unwrap();
    store.window("k", 0, 40 * 24 * HOUR, "x").unwrap();
    store.prune(T0).await.unwrap();
    drop(store);
    let reopened = StateStore::open(settings).unwrap();
    assert_eq!(hour(&reopened, "k", T0 + 1, "x"), ("7".into(), 1));
    assert_eq!(reopened.horizon_us(), 40 * 24 * HOUR, "the longest window read is remembered");
}

#[test]
fn windows_are_a_number_and_a_unit() {
    let cases = [("90s", Some(90)), ("15m", Some(900)), ("24h", Some(86_400)), ("7d", Some(604_800))];
    for (text, seconds) in cases {
        assert_eq!(parse_window(text).ok().map(|d| d.as_secs()), seconds, "{text}");
    }
    for bad in ["", "h", "24", "1.5h", "-1h", "0s", "1w", "24 h", "401d", "99999999999999999999d"] {
        assert!(parse_window(bad).is_err(), "{bad:?}");
    }
}

fn status(event: &str, tx: &str, last_updated_ms: u64, release: bool) -> StatusUpdate {
    StatusUpdate {
        event_id: event.into(),
        tx_id: tx.into(),
        last_updated_ms,
        json: format!("{{\"event\":\"{event}\"}}"),
        release,
        at_us: T0 + 100,
    }
}

/// A failed transaction's records stop counting — all but an origin token's binding — and its
/// readers conflict; the same delivery again, or an older status, changes nothing.
#[tokio::test]
async fn a_releasing_status_takes_a_transaction_out_of_its_windows_once() {
    let store = StateStore::in_memory().unwrap();
    let binding = format!("{}j-1", crate::origin::JTI_KEY_PREFIX);
    let records = [record("k", "6"), record("n", "1"), record(&binding, "0")];
    store.commit(commit("t", T0, &[], &records)).await.unwrap();
    store.commit(commit("u", T0 + 1, &[], &[record("k", "1")])).await.unwrap();
    let version = store.window("k", 0, HOUR, "x").unwrap().version;
    let applied = store.apply_status(status("e-1", "t", 2_000, true)).await.unwrap();
    assert_eq!(applied, StatusApplied::Applied { released: vec!["k".into(), "n".into()] });
    let after = store.window("k", 0, HOUR, "x").unwrap();
    assert_eq!((after.sum.to_string(), after.count, after.version > version), ("1".into(), 1, true));
    assert_eq!(hour(&store, &binding, T0 + 10, "x").1, 1, "the token stays used");
    assert_eq!(store.apply_status(status("e-1", "t", 3_000, true)).await.unwrap(), StatusApplied::Duplicate);
    assert_eq!(store.apply_status(status("e-0", "t", 1_000, true)).await.unwrap(), StatusApplied::Stale);
    let again = store.commit(commit("t", T0 + 5, &[], &records)).await.unwrap();
    assert_eq!(again, Committed::Applied { new: vec![] }, "a released transaction never counts again");
    assert_eq!(store.release("t").await.unwrap(), Vec::<String>::new(), "nothing left to release");
    let seen = store.remember("r-9", Some("t"), [7; 32], T0 + 200).await.unwrap();
    assert_eq!(seen, Seen::TxEnded, "a released transaction is refused whatever it says");
    let kept = store.apply_status(status("e-2", "u", 5_000, false)).await.unwrap();
    assert_eq!(kept, StatusApplied::Applied { released: vec![] }, "a status that releases nothing");
    assert_eq!(hour(&store, "k", T0 + 10, "x").1, 1);
}

#[tokio::test]
async fn documents_are_compare_and_set_and_a_deleted_one_never_takes_a_stale_write() {
    let store = StateStore::in_memory().unwrap();
    assert_eq!(store.document::<String>("k", "a").await.unwrap(), (0, None));
    assert!(store.put_document("k", "a", Some(&"one"), 0, 0).await.unwrap());
    assert!(!store.put_document("k", "a", Some(&"again"), 0, 0).await.unwrap(), "created once");
    assert_eq!(store.document::<String>("k", "a").await.unwrap(), (1, Some("one".into())));
    assert!(store.put_document("k", "a", None::<&String>, 1, 0).await.unwrap(), "deleted at its revision");
    assert_eq!(store.document::<String>("k", "a").await.unwrap(), (2, None), "a tombstone keeps counting");
    assert!(!store.put_document("k", "a", Some(&"stale"), 1, 0).await.unwrap(), "a writer that read it before");
    assert!(!store.put_document("k", "a", Some(&"new"), 0, 0).await.unwrap(), "nor as new over the tombstone");
    assert!(store.put_document("k", "a", Some(&"new"), 2, 0).await.unwrap());
    assert_eq!(store.documents::<String>("k").await.unwrap(), vec!["new".to_string()]);
}

#[tokio::test]
async fn an_expiring_document_is_gone_at_its_time_and_is_never_listed() {
    let store = StateStore::in_memory().unwrap();
    let now = now_us();
    assert!(store.put_document("k", "past", Some(&"x"), 0, now - 1).await.unwrap());
    assert!(store.put_document("k", "future", Some(&"y"), 0, now + HOUR).await.unwrap());
    assert_eq!(store.document::<String>("k", "past").await.unwrap().1, None, "expired");
    assert_eq!(store.document::<String>("k", "future").await.unwrap().1, Some("y".into()));
    assert!(
        store.documents::<String>("k").await.unwrap().is_empty(),
        "sessions and ceremonies are looked up, not listed"
    );
    assert!(store.documents::<String>("other").await.unwrap().is_empty());
}

/// A window read from running totals agrees with summing the events one by one, through commits
/// out of time order, reverts, releases and pruning, for every window start and excluded
/// transaction (a deterministic pseudo-random history).
#[tokio::test(flavor = "multi_thread")]
async fn windows_read_from_running_totals_equal_the_sum_of_their_events() {
    let copies = windows_agree_with_a_model(StateStore::in_memory().unwrap(), true).await;
    assert_eq!(copies, 0, "the embedded store has no replica's copy");
}

/// The same history against a real `redis-server` (Debian's package; `.ci/run` installs it),
/// whose running totals are kept by its scripts.
#[tokio::test(flavor = "multi_thread")]
async fn windows_read_from_redis_running_totals_equal_the_sum_of_their_events() {
    let (store, _redis) = redis_store().await;
    // Redis prunes a key's old events when the key is written, not on `prune`.
    let copies = windows_agree_with_a_model(store, false).await;
    assert!(copies > 100, "the replica's copy answered {copies} reads: the history did not exercise it");
}

/// A key that expired (or a Redis that lost its data) starts its version from the clock: it never
/// shows again a version a replica's copy may hold with other events.
#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_key_never_repeats_a_version() {
    let (store, redis) = redis_store().await;
    let store = std::sync::Arc::new(store);
    let version = |store: &std::sync::Arc<StateStore>| {
        let reader = store.clone();
        tokio::task::spawn_blocking(move || reader.window("k", 0, HOUR, "none").unwrap().version)
    };
    store.commit(commit("t1", T0, &[], &[record("k", "1")])).await.unwrap();
    let first = version(&store).await.unwrap();
    assert!(first > 1, "started from the clock: {first}");
    redis.flush_all();
    store.commit(commit("t2", T0, &[], &[record("k", "1")])).await.unwrap();
    assert!(version(&store).await.unwrap() > first, "a later clock, not 1 again");
}

/// Only a decision, which checks what it read, may be answered from the replica's copy: a plain
/// read (replay, shadow evaluation) always asks Redis, so it sees what another writer changed.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_checked_read_may_come_from_the_copy() {
    let (store, redis) = redis_store().await;
    let store = std::sync::Arc::new(store);
    store.commit(commit("t1", T0, &[], &[record("k", "1")])).await.unwrap();
    let read = |copy: bool| {
        let reader = store.clone();
        tokio::task::spawn_blocking(move || {
            let total =
                if copy { reader.window_or_copy("k", 0, HOUR, "none") } else { reader.window("k", 0, HOUR, "none") };
            total.unwrap()
        })
    };
    let first = read(true).await.unwrap();
    assert_eq!((first.count, first.copy), (1, false), "the first read asks Redis, and keeps a copy");
    let second = read(true).await.unwrap();
    assert_eq!((second.count, second.copy), (1, true), "the next comes from the copy");
    redis.flush_all();
    let plain = read(false).await.unwrap();
    assert_eq!((plain.count, plain.copy), (0, false), "a plain read sees it");
    let stale = read(true).await.unwrap();
    assert_eq!((stale.count, stale.copy), (1, true), "the copy does not: a decision checks what it read");
    assert!(!store.unchanged(&[("k".into(), stale.version)]).await.unwrap(), "and the check sees the change");
}

struct KilledRedis(std::process::Child, u16);

impl KilledRedis {
    /// Everything lost behind the store's back, as a restart without persistence would.
    fn flush_all(&self) {
        let flushed = std::process::Command::new("redis-cli").args(["-p", &self.1.to_string(), "flushall"]).status();
        assert!(flushed.unwrap().success());
    }
}

impl Drop for KilledRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store on a fresh `redis-server` (Debian's package; `.ci/run` installs it).
async fn redis_store() -> (StateStore, KilledRedis) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let redis = KilledRedis(
        std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(std::env::temp_dir())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (.ci/run installs it)"),
        port,
    );
    let url = format!("redis://127.0.0.1:{port}");
    let backend = Backend::Redis { url, prefix: "model".into() };
    let store = StateStore::open(StateSettings { backend, ..StateSettings::default() }).unwrap();
    while store.probe().await.is_err() {
        tokio::task::yield_now().await;
    }
    (store, redis)
}

/// Returns how many reads the Redis replica's copy answered (every one checked all the same).
async fn windows_agree_with_a_model(store: StateStore, prunes: bool) -> usize {
    let store = std::sync::Arc::new(store);
    let mut copies = 0;
    // The model: (key, at, transaction) → amount in units.
    let mut model: std::collections::BTreeMap<(String, u64, String), u128> = Default::default();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = move |bound: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % bound
    };
    for step in 0..400u64 {
        let key = ["a", "b"][next(2) as usize];
        let id = format!("t{}", next(60));
        match next(10) {
            0 => {
                // A revert names the records as committed (Redis finds an event by its amount).
                let mine = model.iter().filter(|((_, _, t), _)| *t == id);
                let records: Vec<Record> =
                    mine.map(|((k, _, _), units)| record(k, &Amount::from_units(*units).to_string())).collect();
                let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
                store.revert(&id, &records, &keys).await.unwrap();
                model.retain(|(_, _, t), _| *t != id);
            }
            1 => {
                store.release(&id).await.unwrap();
                model.retain(|(_, _, t), _| *t != id);
            }
            _ => {
                // Times wander back and forth: a slow decision commits after a later one.
                let at = T0 + step * 1000 - next(5000);
                let units = next(1_000_000) as u128 + 1;
                let amount = Amount::from_units(units).to_string();
                // Half the commits carry the version of a read, as a decision's do (Redis then
                // moves its replica's copy of the key along instead of dropping it).
                let reads = if next(2) == 0 {
                    let reader = store.clone();
                    let read = tokio::task::spawn_blocking(move || reader.window(key, at - HOUR, HOUR, "none"));
                    vec![(key, read.await.unwrap().unwrap().version)]
                } else {
                    Vec::new()
                };
                if let Committed::Applied { new } =
                    store.commit(commit(&id, at, &reads, &[record(key, &amount)])).await.unwrap()
                    && !new.is_empty()
                {
                    model.insert((key.to_string(), at, id.clone()), units);
                }
            }
        }
        if prunes && step == 300 {
            store.prune(T0 + 150 * 1000 + store.horizon_us()).await.unwrap();
            model.retain(|(_, at, _), _| *at >= T0 + 150 * 1000);
        }
        for (since, exclude) in [(T0, "none"), (T0 + step * 500, id.as_str()), (T0 + step * 1000 - 2000, "t1")] {
            for key in ["a", "b"] {
                let expected: Vec<u128> = model
                    .iter()
                    .filter(|((k, at, t), _)| k == key && *at > since && t != exclude)
                    .map(|(_, units)| *units)
                    .collect();
                let (reader, exclude_id) = (store.clone(), exclude.to_string());
                // Blocking, as on the evaluation threads (the Redis backend waits on the runtime).
                let total =
                    tokio::task::spawn_blocking(move || reader.window_or_copy(key, since, HOUR * 1000, &exclude_id))
                        .await
                        .unwrap()
                        .unwrap();
                assert_eq!(
                    (total.sum, total.count),
                    (Amount::from_units(expected.iter().sum()), expected.len() as u64),
                    "step {step}, key {key}, since {since}, excluding {exclude}"
                );
                copies += usize::from(total.copy);
            }
        }
    }
    if !prunes {
        // A write a horizon later prunes the key's older events with their totals.
        let late = T0 + store.horizon_us() + 200 * 1000;
        store.commit(commit("late", late, &[], &[record("a", "1")])).await.unwrap();
        model.retain(|(k, at, _), _| k != "a" || *at >= late - store.horizon_us());
        let expected: u128 = model.iter().filter(|((k, _, _), _)| k == "a").map(|(_, u)| *u).sum();
        let count = model.keys().filter(|(k, _, _)| k == "a").count() as u64 + 1;
        let reader = store.clone();
        let total =
            tokio::task::spawn_blocking(move || reader.window("a", 0, u64::MAX / 2, "x")).await.unwrap().unwrap();
        assert_eq!(
            (total.sum, total.count),
            (Amount::from_units(expected + Amount::parse("1").unwrap().units()), count)
        );
    }
    copies
}

/// A state file written before the running totals existed (events and marks only) opens with
/// its windows intact: the totals are built once, at start.
#[tokio::test]
async fn a_file_from_before_the_running_totals_gets_them_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state");
    std::fs::create_dir_all(&path).unwrap();
    {
        let db = redb::Database::create(path.join("cosigner-guard.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let events: redb::TableDefinition<(&str, u64, &str), u128> = redb::TableDefinition::new("events");
            let recorded: redb::TableDefinition<(&str, &str), u64> = redb::TableDefinition::new("recorded");
            let (mut events, mut recorded) = (txn.open_table(events).unwrap(), txn.open_table(recorded).unwrap());
            for (i, key) in ["a", "a", "b", "a"].iter().enumerate() {
                let id = format!("t{i}");
                events.insert((*key, T0 + i as u64, id.as_str()), Amount::parse("1.5").unwrap().units()).unwrap();
                recorded.insert((id.as_str(), *key), T0 + i as u64).unwrap();
            }
        }
        txn.commit().unwrap();
    }
    let settings = StateSettings { backend: Backend::Embedded { dir: path }, ..StateSettings::default() };
    let store = StateStore::open(settings).unwrap();
    assert_eq!(hour(&store, "a", T0 + 10, "x"), ("4.5".into(), 3));
    assert_eq!(hour(&store, "a", T0 + 10, "t1"), ("3".into(), 2), "its own event excluded");
    assert_eq!(hour(&store, "b", T0 + 10, "x"), ("1.5".into(), 1));
    store.commit(commit("t9", T0 + 5, &[], &[record("a", "1")])).await.unwrap();
    assert_eq!(hour(&store, "a", T0 + 10, "x"), ("5.5".into(), 4), "and keeps counting");
}
