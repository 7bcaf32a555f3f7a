//! The cluster's PostgreSQL store on a real server: what the SQLite store's
//! tests show for a single origin, for the parts cluster mode adds.

use equilibrium_tests::postgres::Postgres;
use origin::store::pg::PgStore;
use origin::store::{ArmRecord, History};
use shared::experiment::results::{ArmEvent, ArmEventKind};
use shared::quote::Ident;
use shared::time::Timestamp;

fn record(id: &str, experiment: &str, at: u64, kind: ArmEventKind) -> ArmRecord {
    ArmRecord {
        event_id: id.into(),
        experiment: experiment.into(),
        region: "sf".into(),
        policy: "forecast-0123abcd".into(),
        event: ArmEvent {
            arm: Ident::new("treatment").expect("id"),
            at: Timestamp(at),
            kind,
            multiplier: 1.7,
            fare_minor: (kind == ArmEventKind::Completed).then_some(2_345),
            wait_ms: (kind == ArmEventKind::Started).then_some(120_000),
            unit: 7,
        },
    }
}

#[test]
fn arm_events_are_stored_once_and_read_back_in_postgres() {
    let pg = Postgres::start();
    let (mut store, err) = PgStore::open(&pg.url());
    assert!(err.is_none(), "{err:?}");
    let rows = vec![
        record("q_1", "e1", 2_000, ArmEventKind::Quote),
        record("b_1:in_progress", "e1", 3_000, ArmEventKind::Started),
        record("b_1:completed", "e1", 4_000, ArmEventKind::Completed),
    ];
    assert_eq!(store.record_arm_events(&rows).expect("record"), 3);
    assert_eq!(store.record_arm_events(&rows).expect("redelivered"), 0);
    store
        .record_arm_events(&[record("q_2", "e2", 1_000, ArmEventKind::Quote)])
        .expect("another experiment");
    let mut back = store.arm_tallies("sf", "e1", 100).expect("read");
    back.sort_by_key(|t| (t.arm.clone(), t.unit, t.kind));
    let events: Vec<_> = rows.iter().map(|r| r.event.clone()).collect();
    assert_eq!(back, shared::experiment::results::tally(&events));
    assert_eq!(store.arm_tallies("sf", "e1", 1).expect("limited").len(), 1);
    let too_late = record("q_3", "e1", u64::MAX, ArmEventKind::Quote);
    assert!(store.record_arm_events(&[too_late]).is_err());
    assert_eq!(store.arm_tallies("sf", "e1", 100).expect("read").len(), 3);
    // An experiment's early end, once per id, by region.
    store
        .record_experiment_end("sf", "e1", "arm flat: completion", 7_000)
        .expect("end");
    store
        .record_experiment_end("sf", "e1", "again", 8_000)
        .expect("repeat ignored");
    assert_eq!(
        store.experiment_ends("sf").expect("ends"),
        vec![("e1".to_owned(), "arm flat: completion".to_owned())]
    );
    assert!(store.experiment_ends("nyc").expect("none").is_empty());
    // A controller arm's feedback: the arm's bookings that ended in the
    // window, newest first, with their waits; quotes and starts are not
    // outcomes.
    let recent = store
        .recent_arm_outcomes("sf", "e1", 0, 10_000, 10)
        .expect("recent");
    assert_eq!(recent.len(), 1, "{recent:?}");
    assert!(recent[0].1, "the one ended booking completed");
    assert!(store
        .recent_arm_outcomes("sf", "e1", 5_000, 10_000, 10)
        .expect("later")
        .is_empty());
}
