//! `nfsha events` with no `[agent] event_log` (issue 18 item 4): it used to stop with "No
//! event log configured"; now it asks the running agent for its in-memory ring, and says
//! what to do when neither a file nor an agent is there.

mod common;

use common::Agent;
use std::process::Command;

#[test]
fn events_without_an_event_log_come_from_the_agents_memory() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &[]);
    // The same agent, seen through a config without event_log.
    let bare = dir.path().join("no-event-log.toml");
    std::fs::write(
        &bare,
        format!(
            "[agent]\ncontrol_socket = {:?}\nlisten = \"off\"\n",
            agent.files.socket.display().to_string()
        ),
    )
    .unwrap();
    let events = |cfg: &std::path::Path| {
        Command::new(common::nfsha_bin())
            .env_remove("NFSHA_CONFIG")
            .arg("--config")
            .arg(cfg)
            .args(["events", "--json", "--since", "10m"])
            .output()
            .unwrap()
    };
    let out = events(&bare);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"].to_string())
        .collect();
    assert!(
        kinds.iter().any(|k| k.contains("agent_started")),
        "the ring holds the start event: {kinds:?}"
    );

    // Neither a file nor an agent: an error that says what to do.
    drop(agent);
    let out = events(&bare);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("start the agent") && err.contains("event_log"),
        "{err}"
    );
}
