//! The value of `experiment:<region>` an admin writes: any text parses to
//! valid experiments and reasons, never a panic (pricing never stops for a
//! typo), and every kept experiment assigns within its arms.
#![no_main]
use libfuzzer_sys::fuzz_target;
use shared::quote::Ident;
use shared::time::Timestamp;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let region = Ident::new("sf").expect("id");
    let (kept, _refused) = shared::api::parse_experiments(&region, text);
    for e in &kept {
        assert_eq!(e.region(), &region);
        for at in [e.start().0, e.start().0 + 1, e.end().0.saturating_sub(1)] {
            for user in [None, Some("rider-1")] {
                if let Some(a) = e.assign(Timestamp(at), user) {
                    assert!(e.arms().iter().any(|x| x.name == a.arm.name));
                }
            }
        }
        for x in e.arms() {
            assert!(x.version().as_str().starts_with(x.policy.name()));
        }
    }
});
