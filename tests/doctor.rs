//! `confab doctor`: on a machine where a call can work (a display, a virtual sound card,
//! a server with STUN and TURN) it says so and exits 0; with no devices and no server it
//! fails and says why.

mod support;

use std::process::Output;

use support::pulse::{Pulse, ToneWriter};
use support::xvfb::Xvfb;

/// The line of `item` in the doctor's report.
fn line<'a>(out: &'a str, item: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(item))
        .unwrap_or_else(|| panic!("no {item} line:\n{out}"))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port (UDP and TCP), for the relay.
fn free_port() -> u16 {
    let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = t.local_addr().unwrap().port();
    std::net::UdpSocket::bind(("127.0.0.1", port)).expect("the same UDP port is free");
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_devices_a_display_and_a_server_with_stun_and_turn_a_call_can_work() {
    let pulse = Pulse::start();
    let _mic = ToneWriter::start(&pulse.fifo, 440.0, 0.5);
    let x = Xvfb::start().await;
    let turn = format!("127.0.0.1:{}", free_port());
    let srv = support::server_with(|c| {
        c.stun_listen = Some("127.0.0.1:0".parse().unwrap());
        c.turn_relay = Some(confab::signaling::TurnRelayConfig {
            listen: turn.parse().unwrap(),
            external_ip: None,
            tls: None,
        });
    })
    .await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["doctor", "--server", &srv.ws_url()])
        .env("DISPLAY", &x.display)
        .envs(pulse.client_env())
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let report = text(&out);
    assert!(out.status.success(), "{report}");
    assert!(report.ends_with("A call can work here.\n"), "{report}");
    assert!(line(&report, "display").starts_with("OK"), "{report}");
    // The virtual sound card: its microphone hears the tone fed into it, its speaker plays.
    let mic = line(&report, "microphones");
    assert!(mic.starts_with("OK") && mic.contains("pulse"), "{report}");
    let speakers = line(&report, "speakers");
    assert!(
        speakers.starts_with("OK") && speakers.contains("played"),
        "{report}"
    );
    assert!(line(&report, "screens").starts_with("OK"), "{report}");
    assert!(!line(&report, "encoder").starts_with("FAIL"), "{report}");
    assert!(line(&report, "server").starts_with("OK"), "{report}");
    // On loopback the STUN server sees this machine's own address.
    let stun = line(&report, "stun");
    assert!(
        stun.starts_with("OK") && stun.contains("no NAT"),
        "{report}"
    );
    let relay = line(&report, "turn");
    assert!(
        relay.starts_with("OK") && relay.contains("credentials accepted"),
        "{report}"
    );
    let _ = srv.shutdown().await;
}

#[tokio::test]
async fn with_no_devices_and_no_server_it_fails_and_says_why() {
    // A port nobody listens on, no display, no sound server, an ALSA card that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["doctor", "--server", &format!("ws://{closed}/ws")])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env("XDG_RUNTIME_DIR", dir.path())
        .env(
            "PULSE_SERVER",
            format!("unix:{}/none", dir.path().display()),
        )
        .env("ALSA_CARD", "confab-no-such-card")
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    let report = text(&out);
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(line(&report, "server").starts_with("FAIL"), "{report}");
    assert!(
        report.contains("that `confab serve` runs there"),
        "{report}"
    );
    for item in ["display", "cameras", "screens"] {
        assert!(line(&report, item).starts_with("WARN"), "{item}: {report}");
    }
    assert!(
        report.ends_with("A call cannot work here until the FAIL lines are fixed.\n"),
        "{report}"
    );
}
