//! Start-up refuses what it cannot serve safely, with a message that says what to fix.

mod common;

use common::{serve_expecting_exit, Broker};

#[test]
fn a_data_dir_that_is_a_file_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let (status, stderr) = serve_expecting_exit(&["--data-dir", file.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("not-a-dir"), "{stderr}");
}

#[test]
fn a_bad_topic_config_file_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let partition = dir.path().join("data").join("orders-0");
    std::fs::create_dir_all(&partition).unwrap();
    std::fs::write(partition.join("spate-topic.config"), "no.such.config=1\n").unwrap();
    let data = dir.path().join("data");
    let (status, stderr) = serve_expecting_exit(&["--data-dir", data.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("spate-topic.config"), "{stderr}");
}

#[test]
fn a_second_broker_on_the_same_data_is_refused() {
    let broker = Broker::start(1, &[]);
    let data = broker.data_dir();
    let (status, stderr) = serve_expecting_exit(&["--data-dir", data.to_str().unwrap()]);
    assert!(!status.success());
    assert!(stderr.contains("in use"), "{stderr}");
    // The first one is unharmed.
    let mut client = broker.client();
    client.create_topic("still-here", 1);
}

/// Each partition keeps a file open: start-up lifts the soft open-files limit to the hard
/// one, so a low default (often 1,024) does not cap the broker near that many partitions.
#[test]
fn start_up_raises_the_open_files_soft_limit() {
    let dir = tempfile::tempdir().unwrap();
    // A bad topic config stops start-up right after the limit is raised.
    let partition = dir.path().join("data").join("orders-0");
    std::fs::create_dir_all(&partition).unwrap();
    std::fs::write(partition.join("spate-topic.config"), "no.such.config=1\n").unwrap();
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -Sn 64 && exec "$0" serve --data-dir "$1" --listen 127.0.0.1:1"#)
        .arg(env!("CARGO_BIN_EXE_spate"))
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "info")
        .output()
        .expect("cannot run sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("raised the open files limit (RLIMIT_NOFILE) from 64"),
        "{stderr}"
    );
}
