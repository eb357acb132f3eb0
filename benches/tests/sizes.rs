//! Frame sizes, ours vs the reference, and a check that the bench fixtures
//! are the same messages on both sides (each decodes the other's bytes).
//! `cargo test -p mars-benches --test sizes -- --nocapture` prints the table.

#[path = "../benches/common/mod.rs"]
mod common;

#[test]
fn fixtures_agree_and_sizes() {
    let mut cases = common::cases();
    cases.push(common::store_1k_case());
    println!(
        "{:<20} {:>8} {:>10} {:>7}",
        "message", "ours", "mesh-core", "ours %"
    );
    for case in &cases {
        case.check();
        let (ours, theirs) = (case.our_bytes().len(), case.ref_bytes().len());
        println!(
            "{:<20} {:>8} {:>10} {:>6.1}%",
            case.name,
            ours,
            theirs,
            100.0 * ours as f64 / theirs as f64
        );
    }
    // The STORE vector: 766 bytes from REF, 556 compact (vectors/README.md).
    let store = cases.iter().find(|c| c.name == "store").unwrap();
    assert_eq!(store.ref_bytes().len(), 766);
    assert_eq!(store.our_bytes().len(), 556);
}
