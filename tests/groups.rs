//! Consumer groups against the real binary with raw Kafka requests: FindCoordinator,
//! JoinGroup (KIP-394 member id), SyncGroup, Heartbeat, OffsetCommit/OffsetFetch (single and
//! multi-group), ListGroups, DescribeGroups, LeaveGroup, DeleteGroups; committed offsets
//! survive a clean restart and SIGKILL.

mod common;

use bytes::Bytes;
use common::{topic_name, Broker, Client};
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, FindCoordinatorResponse,
    GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::time::{Duration, Instant};

const TOPIC: &str = "orders";

fn group(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn s(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn join(client: &mut Client, group_id: &str, member_id: &str, version: i16) -> JoinGroupResponse {
    let request = JoinGroupRequest::default()
        .with_group_id(group(group_id))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(20_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"subscription"))]);
    client.send(&request, version)
}

fn commit(
    client: &mut Client,
    group_id: &str,
    member: &str,
    generation: i32,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let request = OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(Some(s("meta")))
                    })
                    .collect(),
            )]);
    let response = client.send(&request, 7);
    response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

/// FindCoordinator for `key` until it answers, then waits until the coordinator serves
/// the group: the first lookup asks the controller for `__consumer_offsets` (answering
/// COORDINATOR_NOT_AVAILABLE meanwhile, as Kafka does) and the new partitions then load
/// (COORDINATOR_LOAD_IN_PROGRESS). Clients retry both.
fn find_coordinator(client: &mut Client, key: &str) -> FindCoordinatorResponse {
    let deadline = Instant::now() + Duration::from_secs(30);
    let retry = |code: i16| {
        let again = code == ResponseError::CoordinatorNotAvailable.code()
            || code == ResponseError::CoordinatorLoadInProgress.code();
        if again && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        again && Instant::now() < deadline
    };
    loop {
        let found = client.send(&FindCoordinatorRequest::default().with_key(s(key)), 3);
        if retry(found.error_code) {
            continue;
        }
        while let Err(code) = try_fetch(client, key) {
            if !retry(code) {
                break;
            }
        }
        return found;
    }
}

/// Committed offsets of partitions 0..4 of TOPIC (OffsetFetch v7), once the group's
/// coordinator serves it (after a restart its partition may still be loading).
fn fetch(client: &mut Client, group_id: &str) -> Vec<i64> {
    find_coordinator(client, group_id);
    try_fetch(client, group_id).unwrap_or_else(|e| panic!("OffsetFetch failed with error {e}"))
}

fn try_fetch(client: &mut Client, group_id: &str) -> Result<Vec<i64>, i16> {
    let request = OffsetFetchRequest::default()
        .with_group_id(group(group_id))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partition_indexes(vec![0, 1, 2, 3])]));
    let response = client.send(&request, 7);
    if response.error_code != 0 {
        return Err(response.error_code);
    }
    Ok(response.topics[0]
        .partitions
        .iter()
        .map(|p| {
            assert_eq!(p.error_code, 0);
            p.committed_offset
        })
        .collect())
}

#[test]
fn a_member_joins_syncs_commits_and_its_offsets_survive_restarts() {
    let mut broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic(TOPIC, 4);

    let found = find_coordinator(&mut client, "g1");
    assert_eq!(found.error_code, 0);
    assert_eq!(found.port, i32::from(broker.port));
    let found = client.send(
        &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g1"), s("g2")]),
        4,
    );
    assert_eq!(found.coordinators.len(), 2);
    assert!(found
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.port == i32::from(broker.port)));

    // KIP-394: the first JoinGroup gets an id to come back with.
    let first = join(&mut client, "g1", "", 5);
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    assert_eq!(
        join(&mut client, "g1", "made-up", 5).error_code,
        ResponseError::UnknownMemberId.code()
    );
    let joined = join(&mut client, "g1", &member, 5);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader.as_str(), member);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1);

    let synced = client.send(
        &SyncGroupRequest::default()
            .with_group_id(group("g1"))
            .with_generation_id(1)
            .with_member_id(s(&member))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&member))
                .with_assignment(Bytes::from_static(b"all four"))]),
        3,
    );
    assert_eq!(synced.error_code, 0);
    assert_eq!(&synced.assignment[..], b"all four");

    let heartbeat = |client: &mut Client, member: &str, generation: i32| {
        client
            .send(
                &HeartbeatRequest::default()
                    .with_group_id(group("g1"))
                    .with_generation_id(generation)
                    .with_member_id(s(member)),
                3,
            )
            .error_code
    };
    assert_eq!(heartbeat(&mut client, &member, 1), 0);
    assert_eq!(
        heartbeat(&mut client, &member, 9),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(
        heartbeat(&mut client, "nobody", 1),
        ResponseError::UnknownMemberId.code()
    );

    assert_eq!(
        commit(
            &mut client,
            "g1",
            &member,
            1,
            &[(0, 5), (1, 6), (2, 7), (3, 8)]
        ),
        vec![0; 4]
    );
    assert_eq!(
        commit(&mut client, "g1", &member, 2, &[(0, 1)]),
        vec![ResponseError::IllegalGeneration.code()]
    );
    assert_eq!(
        commit(&mut client, "g1", "", -1, &[(0, 1)]),
        vec![ResponseError::UnknownMemberId.code()],
        "only members commit to a group with members"
    );
    assert_eq!(
        commit(&mut client, "g1", &member, 1, &[(9, 1)]),
        vec![ResponseError::UnknownTopicOrPartition.code()]
    );
    assert_eq!(fetch(&mut client, "g1"), vec![5, 6, 7, 8]);
    assert_eq!(fetch(&mut client, "never-committed"), vec![-1; 4]);

    // OffsetFetch v8: several groups at once.
    let multi = client.send(
        &OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group("g1"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic_name(TOPIC))
                    .with_partition_indexes(vec![3])])),
            OffsetFetchRequestGroup::default().with_group_id(group("other")),
        ]),
        8,
    );
    assert_eq!(multi.groups.len(), 2);
    assert_eq!(multi.groups[0].topics[0].partitions[0].committed_offset, 8);
    assert!(multi.groups[1].topics.is_empty());

    let listed = client.send(&ListGroupsRequest::default(), 4);
    let g1 = listed
        .groups
        .iter()
        .find(|g| g.group_id.as_str() == "g1")
        .unwrap();
    assert_eq!(g1.group_state.as_str(), "Stable");
    let described = client.send(
        &DescribeGroupsRequest::default().with_groups(vec![group("g1"), group("unknown")]),
        5,
    );
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].protocol_data.as_str(), "range");
    assert_eq!(described.groups[0].members.len(), 1);
    assert_eq!(
        described.groups[0].members[0].client_id.as_str(),
        "spate-tests"
    );
    assert_eq!(
        described.groups[0].members[0].client_host.as_str(),
        "/127.0.0.1"
    );
    assert_eq!(
        &described.groups[0].members[0].member_assignment[..],
        b"all four"
    );
    assert_eq!(described.groups[1].group_state.as_str(), "Dead");
    let described = client.send(
        &DescribeGroupsRequest::default().with_groups(vec![group("unknown")]),
        6,
    );
    assert_eq!(
        described.groups[0].error_code,
        ResponseError::GroupIdNotFound.code()
    );

    let refused = client.send(
        &DeleteGroupsRequest::default().with_groups_names(vec![group("g1")]),
        2,
    );
    assert_eq!(
        refused.results[0].error_code,
        ResponseError::NonEmptyGroup.code()
    );
    let left = client.send(
        &LeaveGroupRequest::default()
            .with_group_id(group("g1"))
            .with_members(vec![MemberIdentity::default().with_member_id(s(&member))]),
        3,
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members[0].error_code, 0);

    // A second group stays stable through the restart.
    let pending = join(&mut client, "g2", "", 5).member_id.to_string();
    let stayer = join(&mut client, "g2", &pending, 5);
    assert_eq!(stayer.error_code, 0);
    let synced = client.send(
        &SyncGroupRequest::default()
            .with_group_id(group("g2"))
            .with_generation_id(stayer.generation_id)
            .with_member_id(s(&pending))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&pending))
                .with_assignment(Bytes::from_static(b"mine"))]),
        3,
    );
    assert_eq!(synced.error_code, 0);

    broker.terminate();
    broker.launch();
    let mut client = broker.client();
    assert_eq!(
        fetch(&mut client, "g1"),
        vec![5, 6, 7, 8],
        "after a clean restart"
    );
    // The member carries on in its generation without rejoining.
    find_coordinator(&mut client, "g2");
    let beat = HeartbeatRequest::default()
        .with_group_id(group("g2"))
        .with_generation_id(stayer.generation_id)
        .with_member_id(s(&pending));
    assert_eq!(
        client.send(&beat, 3).error_code,
        0,
        "the membership survived the restart"
    );
    // An empty group takes commits from outside group management (generation -1).
    assert_eq!(commit(&mut client, "g1", "", -1, &[(0, 50)]), vec![0]);

    broker.stop(libc::SIGKILL);
    broker.launch();
    let mut client = broker.client();
    assert_eq!(fetch(&mut client, "g1"), vec![50, 6, 7, 8], "after SIGKILL");
    find_coordinator(&mut client, "ghost");

    let deleted = client.send(
        &DeleteGroupsRequest::default().with_groups_names(vec![group("g1"), group("ghost")]),
        2,
    );
    assert_eq!(deleted.results[0].error_code, 0);
    assert_eq!(
        deleted.results[1].error_code,
        ResponseError::GroupIdNotFound.code()
    );
    assert_eq!(fetch(&mut client, "g1"), vec![-1; 4]);
    broker.terminate();
    broker.launch();
    let mut client = broker.client();
    assert_eq!(
        fetch(&mut client, "g1"),
        vec![-1; 4],
        "the deletion is durable"
    );
}

#[test]
fn oldest_versions_encode_and_bad_session_timeouts_are_refused() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    client.create_topic(TOPIC, 4);
    assert_eq!(find_coordinator(&mut client, "g0").error_code, 0);
    let mut bad = JoinGroupRequest::default()
        .with_group_id(group("g0"))
        .with_session_timeout_ms(1)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default().with_name(s("range"))
        ]);
    assert_eq!(
        client.send(&bad, 0).error_code,
        ResponseError::InvalidSessionTimeout.code()
    );
    bad.protocols.clear();
    bad.session_timeout_ms = 10_000;
    assert_eq!(
        client.send(&bad, 0).error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
    // v0 has no KIP-394 round trip: the member joins at once (after the initial delay).
    let joined = join(&mut client, "g0", "", 0);
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.generation_id, 1);
    let member = joined.member_id.to_string();
    let synced = client.send(
        &SyncGroupRequest::default()
            .with_group_id(group("g0"))
            .with_generation_id(1)
            .with_member_id(s(&member)),
        0,
    );
    assert_eq!(synced.error_code, 0);
    let request = OffsetCommitRequest::default()
        .with_group_id(group("g0"))
        .with_generation_id_or_member_epoch(1)
        .with_member_id(s(&member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(TOPIC))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_committed_offset(3),
                OffsetCommitRequestPartition::default()
                    .with_partition_index(1)
                    .with_committed_offset(4)
                    .with_committed_metadata(Some(StrBytes::from_string("x".repeat(5000)))),
            ])]);
    let response = client.send(&request, 2);
    let errors: Vec<i16> = response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(
        errors,
        vec![0, ResponseError::OffsetMetadataTooLarge.code()]
    );
    let fetched = client.send(
        &OffsetFetchRequest::default()
            .with_group_id(group("g0"))
            .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partition_indexes(vec![0, 1])])),
        1,
    );
    let offsets: Vec<i64> = fetched.topics[0]
        .partitions
        .iter()
        .map(|p| p.committed_offset)
        .collect();
    assert_eq!(offsets, vec![3, -1]);
    let left = client.send(
        &LeaveGroupRequest::default()
            .with_group_id(group("g0"))
            .with_member_id(s(&member)),
        0,
    );
    assert_eq!(left.error_code, 0);
    let listed = client.send(&ListGroupsRequest::default(), 0);
    assert!(listed.groups.iter().any(|g| g.group_id.as_str() == "g0"));
}

#[test]
fn shutdown_does_not_wait_for_a_join_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let profile = common::write_profile(dir.path(), "group.initial.rebalance.delay.ms: 600000\n");
    let mut broker = Broker::start(2, &["--config", profile.to_str().unwrap()]);
    let mut clients: Vec<Client> = (0..4).map(|_| broker.client()).collect();
    for i in 0..clients.len() {
        let found = find_coordinator(&mut clients[0], &format!("waiting-{i}"));
        assert_eq!(found.error_code, 0);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        // Several groups, so some are coordinated by the other shard than the connection's.
        let request = JoinGroupRequest::default()
            .with_group_id(group(&format!("waiting-{i}")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(600_000)
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default().with_name(s("range"))
            ]);
        // v3: no MEMBER_ID_REQUIRED round trip; the join waits out the initial delay.
        let (_, frame) = client.frame(&request, 3);
        client.send_raw(&frame);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A clean exit well before the 10-minute rebalance would end (terminate() fails the
    // test if the broker has not exited within PATIENCE).
    broker.terminate();
}

#[test]
fn a_static_member_takes_its_place_back_without_a_rebalance() {
    let broker = Broker::start(1, &[]);
    let mut client = broker.client();
    assert_eq!(find_coordinator(&mut client, "static").error_code, 0);
    let static_join = |client: &mut Client| {
        let request = JoinGroupRequest::default()
            .with_group_id(group("static"))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(20_000)
            .with_group_instance_id(Some(s("instance-1")))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(Bytes::from_static(b"subscription"))]);
        client.send(&request, 9)
    };
    // A static member needs no MEMBER_ID_REQUIRED round trip.
    let first = static_join(&mut client);
    assert_eq!(first.error_code, 0);
    let old = first.member_id.to_string();
    let synced = client.send(
        &SyncGroupRequest::default()
            .with_group_id(group("static"))
            .with_generation_id(first.generation_id)
            .with_member_id(s(&old))
            .with_group_instance_id(Some(s("instance-1")))
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(s(&old))
                .with_assignment(Bytes::from_static(b"kept"))]),
        5,
    );
    assert_eq!(synced.error_code, 0);

    // Restarted with the same instance id: answered at once, same generation, and as the
    // leader it is told to keep the current assignment.
    let again = static_join(&mut client);
    assert_eq!(again.error_code, 0);
    assert_eq!(again.generation_id, first.generation_id);
    assert_ne!(again.member_id.as_str(), old);
    assert!(again.skip_assignment);
    let fenced = client.send(
        &HeartbeatRequest::default()
            .with_group_id(group("static"))
            .with_generation_id(first.generation_id)
            .with_member_id(s(&old))
            .with_group_instance_id(Some(s("instance-1"))),
        4,
    );
    assert_eq!(fenced.error_code, ResponseError::FencedInstanceId.code());
    let synced = client.send(
        &SyncGroupRequest::default()
            .with_group_id(group("static"))
            .with_generation_id(again.generation_id)
            .with_member_id(again.member_id.clone())
            .with_group_instance_id(Some(s("instance-1"))),
        5,
    );
    assert_eq!(&synced.assignment[..], b"kept");

    // An admin removes it by instance id alone (LeaveGroup v3+).
    let left = client.send(
        &LeaveGroupRequest::default()
            .with_group_id(group("static"))
            .with_members(vec![
                MemberIdentity::default().with_group_instance_id(Some(s("instance-1"))),
                MemberIdentity::default().with_group_instance_id(Some(s("nobody"))),
            ]),
        5,
    );
    let errors: Vec<i16> = left.members.iter().map(|m| m.error_code).collect();
    assert_eq!(errors, vec![0, ResponseError::UnknownMemberId.code()]);
    let described = client.send(
        &DescribeGroupsRequest::default().with_groups(vec![group("static")]),
        5,
    );
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
}

#[test]
fn offset_delete_refuses_subscribed_topics_and_deletes_the_rest() {
    use kafka_protocol::messages::offset_delete_request::{
        OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
    };
    use kafka_protocol::messages::OffsetDeleteRequest;

    let broker = Broker::start(2, &[]);
    let mut client = broker.client();
    client.create_topic(TOPIC, 4);
    client.create_topic("other", 1);
    assert_eq!(find_coordinator(&mut client, "od").error_code, 0);
    // The consumer protocol's subscription: version, topics, user data (null).
    let mut subscription = vec![0u8, 0, 0, 0, 0, 1];
    subscription.extend((TOPIC.len() as i16).to_be_bytes());
    subscription.extend(TOPIC.as_bytes());
    subscription.extend((-1i32).to_be_bytes());
    let request = JoinGroupRequest::default()
        .with_group_id(group("od"))
        .with_session_timeout_ms(10_000)
        .with_rebalance_timeout_ms(20_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from(subscription))]);
    let joined = client.send(&request, 3);
    assert_eq!(joined.error_code, 0);
    let member = joined.member_id.to_string();
    client.send(
        &SyncGroupRequest::default()
            .with_group_id(group("od"))
            .with_generation_id(joined.generation_id)
            .with_member_id(s(&member)),
        3,
    );
    assert_eq!(
        commit(&mut client, "od", &member, joined.generation_id, &[(0, 7)]),
        vec![0]
    );
    let other = OffsetCommitRequest::default()
        .with_group_id(group("od"))
        .with_generation_id_or_member_epoch(joined.generation_id)
        .with_member_id(s(&member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("other"))
            .with_partitions(vec![
                OffsetCommitRequestPartition::default().with_committed_offset(3)
            ])]);
    assert_eq!(client.send(&other, 7).topics[0].partitions[0].error_code, 0);

    let delete = |group_id: &str| {
        OffsetDeleteRequest::default()
            .with_group_id(group(group_id))
            .with_topics(vec![
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![OffsetDeleteRequestPartition::default()]),
                OffsetDeleteRequestTopic::default()
                    .with_name(topic_name("other"))
                    .with_partitions(vec![OffsetDeleteRequestPartition::default()]),
            ])
    };
    let response = client.send(&delete("od"), 0);
    assert_eq!(response.error_code, 0);
    let errors: Vec<i16> = response
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    assert_eq!(
        errors,
        vec![ResponseError::GroupSubscribedToTopic.code(), 0],
        "the subscribed topic keeps its offset, the other loses it"
    );
    assert_eq!(fetch(&mut client, "od")[0], 7);
    let all = OffsetFetchRequest::default()
        .with_group_id(group("od"))
        .with_topics(None);
    let all = client.send(&all, 7);
    let held: Vec<&str> = all.topics.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        held,
        vec![TOPIC],
        "only the subscribed topic's offset is left"
    );
    let response = client.send(&delete("no-such-group"), 0);
    assert_eq!(response.error_code, ResponseError::GroupIdNotFound.code());
}
