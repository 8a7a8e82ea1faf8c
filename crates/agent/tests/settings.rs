//! Settings as a service meets them: a wrong value in the code stops
//! `start()` with the setting's name; nothing is clamped behind its back.

use firewatch_agent::{Agent, Error};

#[test]
fn an_invalid_builder_value_fails_start_naming_the_setting() {
    let e = Agent::builder()
        .cpu_hz(0)
        .enabled(false)
        .start()
        .err()
        .expect("cpu_hz(0) is refused");
    assert!(
        matches!(
            e,
            Error::InvalidSetting {
                setting: "cpu_hz",
                ..
            }
        ),
        "{e}"
    );
    let e = Agent::builder()
        .rss_threshold_percent(Some(250))
        .enabled(false)
        .start()
        .err()
        .expect("250% is refused");
    assert!(e.to_string().contains("rss_threshold_percent"), "{e}");
    // Valid values start (a disabled agent: no thread, no signal handler).
    Agent::builder()
        .cpu_hz(4000)
        .enabled(false)
        .start()
        .unwrap();
}
