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
        .rss_threshold_percent(250)
        .enabled(false)
        .start()
        .err()
        .expect("250% is refused");
    assert!(e.to_string().contains("rss_threshold_percent"), "{e}");
    // Valid values start (a disabled agent: no thread, no signal handler);
    // optional settings take a value or None.
    Agent::builder()
        .cpu_hz(4000)
        .cpu_threshold_percent(None)
        .rss_threshold_percent(Some(95))
        .signal(libc::SIGUSR1)
        .enabled(false)
        .start()
        .unwrap();
}
