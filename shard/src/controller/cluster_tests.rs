//! Tests of the controller quorum and the broker link over real loopback sockets: three
//! voters in one process on their own threads, failover, a voter restarted from its
//! directory, fencing after missed heartbeats (through a proxy the test cuts), a single-node
//! in-process voter across restarts, glommio executors awaiting the link, and bad input.

use std::collections::BTreeMap;
use std::io::{Read, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::foreign_await::foreign;
use futures_lite::future::block_on;
use kafka_protocol::ResponseError;
use tempfile::TempDir;

use super::broker_link::BrokerLink;
use super::commands::{Command, CommandOutcome};
use super::image::{ClusterImage, NO_LEADER};
use super::node::{ClusterError, ClusterNode};
use super::settings::{BrokerSettings, ClusterSettings, ControllerSettings, VoterAddress};

const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` until it returns `Some`, failing the test after a minute (a hang guard, not a
/// timing assertion).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn controller(dir: &Path, node: i32) -> ControllerSettings {
    let mut c = ControllerSettings::new(dir.join(format!("node-{node}")).join("spate-metadata"));
    c.broker_session_timeout = Duration::from_millis(1500);
    c.election_timeout = Duration::from_millis(300);
    c.snapshot_after_entries = 8;
    c
}

fn broker(node: i32) -> BrokerSettings {
    let mut b = BrokerSettings::new("127.0.0.1".into(), 9000 + node as u16);
    b.heartbeat_interval = Duration::from_millis(100);
    // Also bounds the shutdown fence of the last node of a test, which has no quorum left.
    b.request_timeout = Duration::from_secs(10);
    b
}

fn settings(node: i32, voters: &[VoterAddress], dir: &Path) -> ClusterSettings {
    ClusterSettings {
        node_id: node,
        voters: voters.to_vec(),
        controller: Some(controller(dir, node)),
        broker: Some(broker(node)),
        max_frame_bytes: 1 << 20,
    }
}

fn voters(ids: &[i32]) -> Vec<VoterAddress> {
    ids.iter()
        .map(|&node_id| VoterAddress {
            node_id,
            addr: format!("127.0.0.1:{}", free_port()),
        })
        .collect()
}

fn submit(link: &BrokerLink, command: Command) -> CommandOutcome {
    block_on(link.submit(command)).expect("the controller answers")
}

fn create_topic(link: &BrokerLink, name: &str, partitions: u32, rf: u16) -> CommandOutcome {
    block_on(link.create_topic(name.into(), partitions, rf, BTreeMap::new()))
        .expect("the controller answers")
}

fn active(nodes: &[Option<ClusterNode>]) -> Option<usize> {
    nodes.iter().position(|n| {
        n.as_ref()
            .and_then(|n| n.controller())
            .is_some_and(|c| c.is_active())
    })
}

fn all_unfenced(image: &ClusterImage, ids: &[i32]) -> bool {
    ids.iter()
        .all(|id| image.brokers.get(id).is_some_and(|b| !b.fenced))
}

fn set_config(n: usize) -> Command {
    Command::AlterTopicConfig {
        topic: "t".into(),
        changes: [("retention.ms".to_string(), Some(n.to_string()))].into(),
        replace: false,
    }
}

#[test]
fn three_voters_elect_commit_fail_over_and_a_restarted_voter_catches_up() {
    let dir = TempDir::new().unwrap();
    let voters = voters(&[1, 2, 3]);
    let mut nodes: Vec<Option<ClusterNode>> = (1..=3)
        .map(|id| Some(ClusterNode::start(settings(id, &voters, dir.path())).unwrap()))
        .collect();
    let leader = wait_for("an active controller", || active(&nodes));
    let link = |nodes: &[Option<ClusterNode>], i: usize| {
        nodes[i].as_ref().unwrap().broker().unwrap().clone()
    };
    wait_for("three registered brokers", || {
        let image = nodes[leader].as_ref()?.controller()?.image();
        all_unfenced(&image, &[1, 2, 3]).then_some(())
    });

    // A command from any broker is committed on every voter and reaches every broker.
    let from = (leader + 1) % 3;
    assert_eq!(
        create_topic(&link(&nodes, from), "t", 3, 3),
        CommandOutcome::Applied
    );
    for n in nodes.iter().flatten() {
        let voter = n.controller().unwrap();
        wait_for("the topic on every voter", || {
            voter.image().topics.get("t").map(|_| ())
        });
        wait_for("the topic at every broker", || {
            n.broker().unwrap().latest().topics.get("t").map(|_| ())
        });
    }
    let t = &nodes[0]
        .as_ref()
        .unwrap()
        .controller()
        .unwrap()
        .image()
        .topics["t"];
    assert_eq!(t.partitions.len(), 3);
    let mut leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
    leaders.sort();
    assert_eq!(
        leaders,
        vec![1, 2, 3],
        "one preferred leader per broker: {t:?}"
    );

    // Kill (shut down) the active controller; another takes over and keeps committing.
    let old = leader as i32 + 1;
    nodes[leader].take().unwrap().shutdown();
    let leader = wait_for("a new active controller", || active(&nodes));
    assert_ne!(leader as i32 + 1, old);
    let survivor = link(&nodes, leader);
    let image = wait_for("the old leader's broker fenced", || {
        let image = nodes[leader].as_ref()?.controller()?.image();
        image.brokers[&old].fenced.then_some(image)
    });
    for p in &image.topics["t"].partitions {
        assert_ne!(p.leader, old, "its leaderships moved: {p:?}");
        assert!(p.leader != NO_LEADER && !p.isr.contains(&old), "{p:?}");
    }
    assert_eq!(create_topic(&survivor, "u", 2, 2), CommandOutcome::Applied);
    // Enough entries that the leader snapshots and purges its log.
    for n in 0..20 {
        assert_eq!(submit(&survivor, set_config(n)), CommandOutcome::Applied);
    }
    // RF 3 is no longer possible with two unfenced brokers.
    match create_topic(&survivor, "v", 1, 3) {
        CommandOutcome::Refused(r) => {
            assert_eq!(r.error(), ResponseError::InvalidReplicationFactor)
        }
        other => panic!("{other:?}"),
    }

    // The old leader restarts from its directory and catches up; its broker rejoins.
    let restarted = ClusterNode::start(settings(old, &voters, dir.path())).unwrap();
    let voter = restarted.controller().unwrap().clone();
    wait_for("the restarted voter to catch up", || {
        let image = voter.image();
        (image.topics.contains_key("u")
            && image.topics["t"]
                .config
                .get("retention.ms")
                .map(String::as_str)
                == Some("19")
            && all_unfenced(&image, &[1, 2, 3]))
        .then_some(())
    });
    let link = restarted.broker().unwrap().clone();
    wait_for("the restarted broker's image", || {
        link.latest().topics.contains_key("u").then_some(())
    });
    nodes[old as usize - 1] = Some(restarted);
    // And the cluster of three still commits.
    let leader = wait_for("an active controller", || active(&nodes));
    assert_eq!(submit(&link, set_config(100)), CommandOutcome::Applied);
    wait_for("the last change everywhere", || {
        nodes
            .iter()
            .flatten()
            .all(|n| {
                n.controller().unwrap().image().topics["t"]
                    .config
                    .get("retention.ms")
                    .map(String::as_str)
                    == Some("100")
            })
            .then_some(())
    });
    assert!(nodes[leader].is_some());
}

/// A TCP proxy the test can cut: while cut, it closes every connection and refuses new ones.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::<TcpStream>::new()));
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if cut2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut open = open2.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for s in self.open.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
    }
}

#[test]
fn a_silent_broker_is_fenced_and_unfenced_when_it_returns() {
    let dir = TempDir::new().unwrap();
    let voters = voters(&[1]);
    // Node 1: controller only. Node 2: broker only, reaching node 1 through the proxy.
    let mut s1 = settings(1, &voters, dir.path());
    s1.broker = None;
    let controller_node = ClusterNode::start(s1).unwrap();
    let proxy = Proxy::start(voters[0].addr.clone());
    let via_proxy = vec![VoterAddress {
        node_id: 1,
        addr: format!("127.0.0.1:{}", proxy.port),
    }];
    let mut s2 = settings(2, &via_proxy, dir.path());
    s2.controller = None;
    let broker_node = ClusterNode::start(s2).unwrap();
    let link = broker_node.broker().unwrap().clone();
    let voter = controller_node.controller().unwrap().clone();

    wait_for("registration", || {
        all_unfenced(&link.latest(), &[2]).then_some(())
    });
    assert_eq!(create_topic(&link, "t", 2, 1), CommandOutcome::Applied);
    let epoch = link.latest().brokers[&2].epoch;

    // Cut the broker off: it misses its heartbeats and is fenced; its partitions go offline.
    proxy.set_cut(true);
    let image = wait_for("the broker fenced", || {
        let image = voter.image();
        image.brokers[&2].fenced.then_some(image)
    });
    assert!(image.topics["t"]
        .partitions
        .iter()
        .all(|p| p.leader == NO_LEADER));

    // It comes back: the next heartbeat unfences it, same epoch, and it leads again.
    let mut watch = link.watch();
    proxy.set_cut(false);
    let image = wait_for("the broker unfenced", || {
        let image = voter.image();
        (!image.brokers[&2].fenced).then_some(image)
    });
    assert_eq!(image.brokers[&2].epoch, epoch);
    assert!(image.topics["t"].partitions.iter().all(|p| p.leader == 2));
    let seen = wait_for("the broker's own image", || {
        let image = block_on(watch.changed())?;
        (!image.brokers[&2].fenced).then_some(image)
    });
    assert!(seen.topics["t"].partitions.iter().all(|p| p.leader == 2));

    // A controlled shutdown fences it at once (no session timeout).
    broker_node.shutdown();
    wait_for("the broker fenced at shutdown", || {
        voter.image().brokers[&2].fenced.then_some(())
    });
}

fn single(dir: &Path) -> ClusterSettings {
    settings(7, &[], dir)
}

#[test]
fn a_single_node_runs_its_own_voter_in_process_and_survives_restart() {
    let dir = TempDir::new().unwrap();
    let node = ClusterNode::start(single(dir.path())).unwrap();
    assert!(
        node.controller_addr().is_none(),
        "no listener without voters"
    );
    let link = node.broker().unwrap().clone();
    wait_for("registration", || {
        all_unfenced(&link.latest(), &[7]).then_some(())
    });
    assert_eq!(create_topic(&link, "t", 2, 1), CommandOutcome::Applied);
    match create_topic(&link, "t", 1, 1) {
        CommandOutcome::Refused(r) => assert_eq!(r.error(), ResponseError::TopicAlreadyExists),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        block_on(link.create_partitions("t".into(), 3)).unwrap(),
        CommandOutcome::Applied
    );
    let before = wait_for("the image", || {
        let image = link.latest();
        (image.topics.get("t").map(|t| t.partitions.len()) == Some(3)).then_some(image)
    });
    assert!(!before.cluster_id.is_empty());
    node.shutdown();

    let node = ClusterNode::start(single(dir.path())).unwrap();
    let link = node.broker().unwrap().clone();
    let after = wait_for("the image after restart", || {
        let image = link.latest();
        let t = image.topics.get("t")?;
        (all_unfenced(&image, &[7]) && t.partitions.iter().all(|p| p.leader == 7))
            .then_some(image.clone())
    });
    assert_eq!(after.cluster_id, before.cluster_id);
    assert_eq!(after.topics["t"].id, before.topics["t"].id);
    assert!(
        after.brokers[&7].epoch > before.brokers[&7].epoch,
        "a new incarnation"
    );
    for (p, q) in after.topics["t"]
        .partitions
        .iter()
        .zip(&before.topics["t"].partitions)
    {
        assert!(
            p.leader_epoch > q.leader_epoch,
            "leadership passed through the shutdown fence"
        );
    }
}

#[test]
fn glommio_executors_await_the_link() {
    let dir = TempDir::new().unwrap();
    let node = ClusterNode::start(single(dir.path())).unwrap();
    let link = node.broker().unwrap().clone();
    wait_for("registration", || {
        all_unfenced(&link.latest(), &[7]).then_some(())
    });
    let outcome = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .io_memory(512 << 10)
        .spawn(move || async move {
            let mut watch = link.watch();
            let outcome = foreign(link.create_topic("g".into(), 1, 1, BTreeMap::new()))
                .await
                .unwrap();
            // The image with the topic arrives through the watch.
            while !link.latest().topics.contains_key("g") {
                foreign(watch.changed()).await.unwrap();
            }
            outcome
        })
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(outcome, CommandOutcome::Applied);
}

#[test]
fn bad_frames_close_the_connection_and_the_controller_keeps_serving() {
    let dir = TempDir::new().unwrap();
    let voters = voters(&[1]);
    let node = ClusterNode::start(settings(1, &voters, dir.path())).unwrap();
    let link = node.broker().unwrap().clone();
    wait_for("registration", || {
        all_unfenced(&link.latest(), &[1]).then_some(())
    });
    let addr = node.controller_addr().unwrap();
    for frame in [
        // A length far past socket.request.max.bytes: refused before reading.
        vec![0x7f, 0xff, 0xff, 0xff],
        // Not JSON.
        [&5u32.to_be_bytes()[..], b"hello"].concat(),
        // JSON, but no request.
        [&2u32.to_be_bytes()[..], b"{}"].concat(),
    ] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(&frame).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "closed without an answer");
    }
    assert_eq!(create_topic(&link, "t", 1, 1), CommandOutcome::Applied);
}

#[test]
fn bad_settings_and_damaged_metadata_fail_start_up_with_an_error() {
    let dir = TempDir::new().unwrap();
    let mut s = single(dir.path());
    s.controller = None;
    assert!(matches!(
        ClusterNode::start(s),
        Err(ClusterError::Config(_))
    ));
    let v = voters(&[1, 2]);
    assert!(matches!(
        ClusterNode::start(settings(3, &v, dir.path())),
        Err(ClusterError::Config(_))
    ));

    let node = ClusterNode::start(single(dir.path())).unwrap();
    let link = node.broker().unwrap().clone();
    wait_for("registration", || {
        all_unfenced(&link.latest(), &[7]).then_some(())
    });
    node.shutdown();
    let vote = dir.path().join("node-7/spate-metadata/vote.json");
    std::fs::write(&vote, b"{\"leader_id\":").unwrap();
    match ClusterNode::start(single(dir.path())) {
        Err(ClusterError::Metadata(e)) => assert!(e.to_string().contains("vote.json"), "{e}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("started with a damaged vote file"),
    }
}
