//! `origin check`: an operator checks an admin KV value before putting it,
//! with the parser the edge reads it with.

use std::io::Write as _;
use std::process::{Command, Stdio};

/// Runs `origin check <key>` with `value` on standard input: (exit code,
/// stdout, stderr).
fn check(key: &str, value: &str) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin"))
        .args(["check", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run origin check");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(value.as_bytes())
        .expect("write the value");
    let out = child.wait_with_output().expect("origin check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn good_values_pass_and_say_what_they_hold() {
    let registry = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/regions.json");
    let out = Command::new(env!("CARGO_BIN_EXE_origin"))
        .args(["check", "regions", registry])
        .output()
        .expect("origin check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 regions, 2 named zones"), "{stdout}");
    let (code, stdout, _) = check("caps:sf", r#"{"min":1.0,"max":3.0}"#);
    assert_eq!((code, stdout.trim()), (0, "caps:sf: ok: caps 1.0 to 3.0"));
    assert_eq!(check("emergency_cap", "1.5\n").0, 0);
}

#[test]
fn bad_values_fail_with_the_reason() {
    for (key, value, reason) in [
        ("caps:sf", r#"{"max":2.0}"#, "min"),
        ("emergency_cap", "\"1.5x\"", "not a number"),
        ("emergency:sf", "yes", "neither true nor false"),
        (
            "tariff:sf:standard",
            r#"{"currency":"XYZ","base":1,"per_km":1,"per_minute":1,"booking_fee":1,"minimum_fare":1}"#,
            "ISO 4217",
        ),
        ("regions", r#"{"regions":[]}"#, "no region"),
        ("caps", "{}", "not an admin key"),
    ] {
        let (code, _, stderr) = check(key, value);
        assert_eq!(code, 1, "{key}: {stderr}");
        assert!(stderr.contains(reason), "{key}: {stderr}");
    }
}
