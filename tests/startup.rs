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
