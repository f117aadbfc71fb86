//! Where `nfsha agent` logs (issue 18, item 3): no ANSI colour when stderr is not a
//! terminal or `NO_COLOR` is set, and one copy of each line when `JOURNAL_STREAM` is set
//! (journald when it names stderr and journald answers; stderr otherwise — never both).

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run an agent with no mounts, stderr into `log`, until it logged its start; then stop
/// it with SIGTERM and return what it wrote.
fn agent_log(dir: &Path, env: &[(&str, String)], log: &Path) -> String {
    let config = dir.join("nfsha.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nlisten = \"off\"\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n",
            dir.join("agent.sock").display(),
            dir.join("state").display()
        ),
    )
    .unwrap();
    let err = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(log)
        .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nfsha"));
    cmd.arg("--config")
        .arg(&config)
        .arg("agent")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while !text.contains("agent started") {
        assert!(
            Instant::now() < deadline,
            "the agent did not log its start within 20 s: {text:?}"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "agent exited: {text:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        text.clear();
        std::fs::File::open(log)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
    }
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    child.wait().unwrap();
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn a_redirected_log_has_no_colour_and_no_color_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let text = agent_log(dir.path(), &[], &dir.path().join("plain.log"));
    assert!(!text.contains('\x1b'), "escape codes in a file: {text:?}");
    assert_eq!(text.matches("agent_started").count(), 1, "{text}");
    let text = agent_log(
        dir.path(),
        &[("NO_COLOR", "1".into())],
        &dir.path().join("nocolor.log"),
    );
    assert!(!text.contains('\x1b'), "{text:?}");
}

#[test]
fn with_journal_stream_each_line_is_written_once() {
    let dir = tempfile::tempdir().unwrap();
    // JOURNAL_STREAM inherited but stderr redirected elsewhere: stderr only, once.
    let log = dir.path().join("other.log");
    let text = agent_log(dir.path(), &[("JOURNAL_STREAM", "1:1".into())], &log);
    assert_eq!(text.matches("agent_started").count(), 1, "{text}");
    // JOURNAL_STREAM names stderr and no journald answers (the test host has none):
    // the lines go to stderr instead — once, not once per layer. (Under a real journald
    // they go to journald only; `observability::tests` checks that choice.)
    if Path::new("/run/systemd/journal/socket").exists() {
        eprintln!("a journald runs here: the fallback case cannot be shown");
        return;
    }
    let log = dir.path().join("stream.log");
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let text = agent_log(dir.path(), &[("JOURNAL_STREAM", stream)], &log);
    assert_eq!(text.matches("agent_started").count(), 1, "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}
