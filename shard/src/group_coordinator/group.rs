//! One consumer group's membership: Kafka's classic group protocol as a pure state machine.
//!
//! Every method takes the current time and returns what it answers now plus the answers it
//! owes to requests parked earlier (a JoinGroup waits for the rebalance to finish, a
//! SyncGroup waits for the leader's assignment). No I/O and no clock here, so the tests
//! below drive time by hand; `GroupCoordinator` holds the parked requests and the timer.
//!
//! States (Kafka's names): `Empty` (no members) -> `PreparingRebalance` (collecting
//! JoinGroups) -> `CompletingRebalance` (waiting for the leader's SyncGroup) -> `Stable`.
//! Any membership change goes back to `PreparingRebalance`; `Dead` is a deleted group.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::ResponseError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka reports in ListGroups and DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The group settings of the broker config.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.max.size`: members plus ids handed out but not yet used (KIP-394).
    pub max_size: usize,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members, so a group starting up does not rebalance once per member.
    pub initial_rebalance_delay_ms: i64,
}

/// A JoinGroup as the state machine sees it.
#[derive(Debug, Clone)]
pub struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// One member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup answer. `error` set: only `member_id` (MEMBER_ID_REQUIRED) is meaningful.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
    /// A static leader rejoining a stable group: it must not compute a new assignment.
    pub skip_assignment: bool,
}

impl JoinResult {
    pub fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
            skip_assignment: false,
        }
    }
}

/// A SyncGroup answer: the member's assignment.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// What a request gets: an answer now, or an answer later through a `Delivery` (the
/// coordinator parks the request under the member id).
#[derive(Debug, PartialEq)]
pub enum Reply<T> {
    Now(T),
    Later { member_id: String },
}

/// An answer owed to a parked request.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    Join(String, JoinResult),
    Sync(String, Result<SyncResult, ResponseError>),
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// What the offsets log keeps of a group after each rebalance (Kafka's group metadata
/// record), so a restarted broker knows its members and their assignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Metadata for the group's protocol only (as Kafka stores it).
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug)]
struct Member {
    id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    last_heard_ms: i64,
    awaiting_join: bool,
    awaiting_sync: bool,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn update(&mut self, args: &JoinArgs) {
        self.client_id = args.client_id.clone();
        self.client_host = args.client_host.clone();
        self.session_timeout_ms = i64::from(args.session_timeout_ms);
        self.rebalance_timeout_ms = i64::from(args.rebalance_timeout_ms);
        self.protocol_type = args.protocol_type.clone();
        self.protocols = args.protocols.clone();
    }
}

#[derive(Debug)]
pub struct Group {
    id: String,
    limits: GroupLimits,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id of the static members.
    instances: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they expire.
    pending: HashMap<String, i64>,
    /// PreparingRebalance ends at this time even if members are missing.
    join_deadline_ms: i64,
    /// The first rebalance of an empty group does not end before this (initial delay).
    initial_delay_until_ms: Option<i64>,
    /// When the initial delay started; it grows up to the rebalance timeout.
    initial_delay_started_ms: i64,
    /// CompletingRebalance ends (members without a SyncGroup are removed) at this time.
    sync_deadline_ms: i64,
}

impl Group {
    pub fn new(id: &str, limits: GroupLimits) -> Group {
        Group {
            id: id.to_string(),
            limits,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            pending: HashMap::new(),
            join_deadline_ms: 0,
            initial_delay_until_ms: None,
            initial_delay_started_ms: 0,
            sync_deadline_ms: 0,
        }
    }

    /// A group as a snapshot left it: stable with its members (each gets a fresh session
    /// to show it is still alive), or empty.
    pub fn restore(id: &str, limits: GroupLimits, snapshot: GroupSnapshot, now: i64) -> Group {
        let mut group = Group::new(id, limits);
        group.generation = snapshot.generation;
        group.protocol_type = snapshot.protocol_type;
        group.protocol = snapshot.protocol;
        group.leader = snapshot.leader;
        let protocol = group.protocol.clone().unwrap_or_default();
        for m in snapshot.members {
            if let Some(instance) = &m.instance_id {
                group
                    .instances
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout_ms: i64::from(m.session_timeout_ms),
                    rebalance_timeout_ms: i64::from(m.rebalance_timeout_ms),
                    protocol_type: group.protocol_type.clone().unwrap_or_default(),
                    protocols: vec![(protocol.clone(), m.metadata)],
                    assignment: m.assignment,
                    last_heard_ms: now,
                    awaiting_join: false,
                    awaiting_sync: false,
                },
            );
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    pub fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupSnapshot {
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms as i32,
                    rebalance_timeout_ms: m.rebalance_timeout_ms as i32,
                    metadata: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// No members, none on the way (KIP-394 ids handed out), nothing going on.
    pub fn is_idle(&self) -> bool {
        self.state == GroupState::Empty && self.members.is_empty() && self.pending.is_empty()
    }

    pub fn has_member(&self, member_id: &str) -> bool {
        self.members.contains_key(member_id)
    }

    /// Marks the group deleted: requests still holding it get COORDINATOR_NOT_AVAILABLE.
    pub fn mark_dead(&mut self) {
        self.state = GroupState::Dead;
    }

    pub fn describe_members(&self) -> Vec<MemberDescription> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| MemberDescription {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m.metadata_for(&protocol),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    /// Every member's metadata for the chosen protocol (the consumer protocol's
    /// subscription, for OffsetDelete).
    pub fn member_metadata(&self) -> Vec<Bytes> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| m.metadata_for(&protocol))
            .collect()
    }

    pub fn join(&mut self, args: JoinArgs, now: i64) -> (Reply<JoinResult>, Vec<Delivery>) {
        let mut out = Vec::new();
        let reply = self.join_inner(args, now, &mut out);
        (reply, out)
    }

    fn join_inner(
        &mut self,
        args: JoinArgs,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> Reply<JoinResult> {
        let fail = |e| Reply::Now(JoinResult::error(e, &args.member_id));
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if !self.session_timeout_ok(args.session_timeout_ms) {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if !self.supports(&args) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if args.member_id.is_empty() {
            return self.join_new(args, now, out);
        }
        if self.pending.remove(&args.member_id).is_some() {
            let id = args.member_id.clone();
            return self.add_member(id, args, now, out);
        }
        if let Some(instance) = &args.instance_id {
            if let Some(known) = self.instances.get(instance) {
                if *known != args.member_id {
                    return fail(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(&args.member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        let id = args.member_id.clone();
        match self.state {
            GroupState::PreparingRebalance => {
                let member = self.members.get_mut(&id).expect("checked above");
                member.update(&args);
                member.awaiting_join = true;
                self.maybe_complete_join(now, out);
                Reply::Later { member_id: id }
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let member = &self.members[&id];
                let unchanged = member.protocols == args.protocols;
                let leader = self.leader.as_deref() == Some(id.as_str());
                // A follower rejoining with what it had (a lost response) gets the current
                // generation back; a leader or a changed subscription starts a rebalance.
                if unchanged && (self.state == GroupState::CompletingRebalance || !leader) {
                    let member = self.members.get_mut(&id).expect("checked above");
                    member.update(&args);
                    member.last_heard_ms = now;
                    return Reply::Now(self.join_result(&id, false));
                }
                let member = self.members.get_mut(&id).expect("checked above");
                member.update(&args);
                self.prepare_rebalance(now, out);
                let member = self.members.get_mut(&id).expect("checked above");
                member.awaiting_join = true;
                self.maybe_complete_join(now, out);
                Reply::Later { member_id: id }
            }
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    fn join_new(&mut self, args: JoinArgs, now: i64, out: &mut Vec<Delivery>) -> Reply<JoinResult> {
        if let Some(instance) = args.instance_id.clone() {
            let known = self.instances.get(&instance).cloned();
            if let Some(member) = known.and_then(|id| self.members.remove(&id)) {
                return self.static_rejoin(instance, member, args, now, out);
            }
        }
        if self.members.len() + self.pending.len() >= self.limits_max_size() {
            return Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
        }
        let id = format!("{}-{}", args.client_id, uuid::Uuid::new_v4());
        if args.instance_id.is_none() && args.require_known_member_id {
            self.pending
                .insert(id.clone(), now + i64::from(args.session_timeout_ms));
            return Reply::Now(JoinResult::error(ResponseError::MemberIdRequired, &id));
        }
        self.add_member(id, args, now, out)
    }

    /// A static member (known group.instance.id) joining with no member id: it replaces its
    /// old member id. In a stable group with unchanged metadata nothing else happens (no
    /// rebalance: the point of static membership); the old id is fenced.
    fn static_rejoin(
        &mut self,
        instance: String,
        mut member: Member,
        args: JoinArgs,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> Reply<JoinResult> {
        let old_id = member.id.clone();
        let new_id = format!("{}-{}", args.client_id, uuid::Uuid::new_v4());
        if member.awaiting_join {
            out.push(Delivery::Join(
                old_id.clone(),
                JoinResult::error(ResponseError::FencedInstanceId, &old_id),
            ));
        }
        if member.awaiting_sync {
            out.push(Delivery::Sync(
                old_id.clone(),
                Err(ResponseError::FencedInstanceId),
            ));
        }
        let unchanged = member.protocols == args.protocols;
        member.id = new_id.clone();
        member.update(&args);
        member.last_heard_ms = now;
        member.awaiting_join = false;
        member.awaiting_sync = false;
        self.members.insert(new_id.clone(), member);
        self.instances.insert(instance, new_id.clone());
        let was_leader = self.leader.as_deref() == Some(old_id.as_str());
        if was_leader {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            GroupState::Stable if unchanged => Reply::Now(self.join_result(&new_id, was_leader)),
            GroupState::PreparingRebalance => {
                self.members
                    .get_mut(&new_id)
                    .expect("inserted")
                    .awaiting_join = true;
                self.maybe_complete_join(now, out);
                Reply::Later { member_id: new_id }
            }
            _ => {
                self.prepare_rebalance(now, out);
                self.members
                    .get_mut(&new_id)
                    .expect("inserted")
                    .awaiting_join = true;
                self.maybe_complete_join(now, out);
                Reply::Later { member_id: new_id }
            }
        }
    }

    fn add_member(
        &mut self,
        id: String,
        args: JoinArgs,
        now: i64,
        out: &mut Vec<Delivery>,
    ) -> Reply<JoinResult> {
        let member = Member {
            id: id.clone(),
            instance_id: args.instance_id.clone(),
            client_id: String::new(),
            client_host: String::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocol_type: String::new(),
            protocols: Vec::new(),
            assignment: Bytes::new(),
            last_heard_ms: now,
            awaiting_join: false,
            awaiting_sync: false,
        };
        let mut member = member;
        member.update(&args);
        let rebalance_timeout = member.rebalance_timeout_ms;
        if let Some(instance) = &args.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        self.members.insert(id.clone(), member);
        match self.state {
            GroupState::PreparingRebalance => {
                // A member arriving during the initial delay extends it, up to the
                // rebalance timeout (Kafka's InitialDelayedJoin).
                if let Some(until) = self.initial_delay_until_ms {
                    let cap = self.initial_delay_started_ms + rebalance_timeout;
                    let extended = (now + self.limits_initial_delay()).min(cap);
                    self.initial_delay_until_ms = Some(until.max(extended));
                }
            }
            _ => self.prepare_rebalance(now, out),
        }
        self.members.get_mut(&id).expect("inserted").awaiting_join = true;
        self.maybe_complete_join(now, out);
        Reply::Later { member_id: id }
    }

    /// Whether a joining member's protocols fit the group: same protocol type, and at
    /// least one protocol every member supports.
    fn supports(&self, args: &JoinArgs) -> bool {
        if args.protocol_type.is_empty() || args.protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| m.id != args.member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(args.protocol_type.as_str()) {
            return false;
        }
        args.protocols.iter().any(|(name, _)| {
            others
                .iter()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn prepare_rebalance(&mut self, now: i64, out: &mut Vec<Delivery>) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being synced is for a generation that will not be stable.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if member.awaiting_sync {
                    member.awaiting_sync = false;
                    out.push(Delivery::Sync(
                        member.id.clone(),
                        Err(ResponseError::RebalanceInProgress),
                    ));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        if self.state == GroupState::Empty {
            self.initial_delay_started_ms = now;
            self.initial_delay_until_ms = Some(now + self.limits_initial_delay().min(timeout));
        } else {
            self.initial_delay_until_ms = None;
        }
        self.join_deadline_ms = now + timeout;
        self.state = GroupState::PreparingRebalance;
    }

    fn maybe_complete_join(&mut self, now: i64, out: &mut Vec<Delivery>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.awaiting_join) && self.pending.is_empty();
        let ready = match self.initial_delay_until_ms {
            Some(until) => now >= until,
            None => all_joined,
        };
        if ready || now >= self.join_deadline_ms {
            self.complete_join(now, out);
        }
    }

    fn complete_join(&mut self, now: i64, out: &mut Vec<Delivery>) {
        // Members that did not rejoin in time are out.
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join)
            .map(|m| m.id.clone())
            .collect();
        for id in missing {
            self.drop_member(&id, out);
        }
        self.initial_delay_until_ms = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return;
        }
        self.protocol = Some(self.select_protocol());
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0);
        self.sync_deadline_ms = now + timeout;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let member = self.members.get_mut(&id).expect("listed");
            member.awaiting_join = false;
            member.last_heard_ms = now;
            member.assignment = Bytes::new();
            let result = self.join_result(&id, false);
            out.push(Delivery::Join(id, result));
        }
    }

    /// Every member votes for its most preferred protocol that all members support.
    fn select_protocol(&self) -> String {
        let first = self.members.values().next().expect("non-empty group");
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                if let Some(v) = votes.iter_mut().find(|(c, _)| *c == name) {
                    v.1 += 1;
                }
            }
        }
        // Ties go to the first member's preference (max_by_key keeps the last maximum,
        // so scan in reverse).
        votes
            .iter()
            .rev()
            .max_by_key(|(_, n)| *n)
            .map(|(c, _)| (*c).clone())
            .unwrap_or_default()
    }

    fn join_result(&self, member_id: &str, skip_assignment: bool) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(member_id);
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if is_leader {
                self.members
                    .values()
                    .map(|m| JoinedMember {
                        member_id: m.id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: m.metadata_for(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment,
        }
    }

    /// Checks that `member_id` (and its instance id) is a current member of `generation`.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(instance) = instance_id {
            if let Some(known) = self.instances.get(instance) {
                if known != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> (Reply<Result<SyncResult, ResponseError>>, Vec<Delivery>) {
        let mut out = Vec::new();
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            return (Reply::Now(Err(e)), out);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|p| Some(p) != self.protocol.as_deref())
        {
            return (
                Reply::Now(Err(ResponseError::InconsistentGroupProtocol)),
                out,
            );
        }
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heard_ms = now;
        match self.state {
            GroupState::CompletingRebalance => {
                self.members
                    .get_mut(member_id)
                    .expect("checked")
                    .awaiting_sync = true;
                if self.leader.as_deref() == Some(member_id) {
                    for (id, assignment) in assignments {
                        if let Some(m) = self.members.get_mut(&id) {
                            m.assignment = assignment;
                        }
                    }
                    self.state = GroupState::Stable;
                    let result = |m: &Member| SyncResult {
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol.clone(),
                        assignment: m.assignment.clone(),
                    };
                    let answers: Vec<(String, SyncResult)> = self
                        .members
                        .values()
                        .filter(|m| m.awaiting_sync)
                        .map(|m| (m.id.clone(), result(m)))
                        .collect();
                    for (id, r) in answers {
                        self.members.get_mut(&id).expect("listed").awaiting_sync = false;
                        out.push(Delivery::Sync(id, Ok(r)));
                    }
                }
                (
                    Reply::Later {
                        member_id: member_id.to_string(),
                    },
                    out,
                )
            }
            GroupState::Stable => {
                let m = &self.members[member_id];
                (
                    Reply::Now(Ok(SyncResult {
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol.clone(),
                        assignment: m.assignment.clone(),
                    })),
                    out,
                )
            }
            GroupState::PreparingRebalance => {
                (Reply::Now(Err(ResponseError::RebalanceInProgress)), out)
            }
            GroupState::Empty | GroupState::Dead => {
                (Reply::Now(Err(ResponseError::UnknownMemberId)), out)
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), ResponseError> {
        self.check_member(member_id, instance_id, generation)?;
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heard_ms = now;
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// Removes members (by member id, or by instance id for a static member). One result
    /// per member, in order.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now: i64,
    ) -> (Vec<Result<(), ResponseError>>, Vec<Delivery>) {
        let mut out = Vec::new();
        let mut results = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let id = match instance_id {
                Some(instance) => match self.instances.get(instance) {
                    Some(known) if !member_id.is_empty() && known != member_id => {
                        results.push(Err(ResponseError::FencedInstanceId));
                        continue;
                    }
                    Some(known) => known.clone(),
                    None => {
                        results.push(Err(ResponseError::UnknownMemberId));
                        continue;
                    }
                },
                None => member_id.clone(),
            };
            if self.pending.remove(&id).is_some() {
                results.push(Ok(()));
                self.maybe_complete_join(now, &mut out);
                continue;
            }
            if !self.members.contains_key(&id) {
                results.push(Err(ResponseError::UnknownMemberId));
                continue;
            }
            self.remove_member(&id, now, &mut out);
            results.push(Ok(()));
        }
        (results, out)
    }

    /// Removes a member and starts the rebalance its departure needs.
    fn remove_member(&mut self, id: &str, now: i64, out: &mut Vec<Delivery>) {
        self.drop_member(id, out);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, out);
                self.maybe_complete_join(now, out);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn drop_member(&mut self, id: &str, out: &mut Vec<Delivery>) {
        let Some(member) = self.members.remove(id) else {
            return;
        };
        if let Some(instance) = &member.instance_id {
            self.instances.remove(instance);
        }
        if member.awaiting_join {
            out.push(Delivery::Join(
                id.to_string(),
                JoinResult::error(ResponseError::UnknownMemberId, id),
            ));
        }
        if member.awaiting_sync {
            out.push(Delivery::Sync(
                id.to_string(),
                Err(ResponseError::UnknownMemberId),
            ));
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Expires members whose session ran out, pending ids never used, and rebalances past
    /// their deadline. Call periodically.
    pub fn tick(&mut self, now: i64) -> Vec<Delivery> {
        let mut out = Vec::new();
        self.pending.retain(|_, expires| *expires > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                !m.awaiting_join && !m.awaiting_sync && now - m.last_heard_ms > m.session_timeout_ms
            })
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "session timed out");
            self.remove_member(&id, now, &mut out);
        }
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now, &mut out),
            GroupState::CompletingRebalance if now >= self.sync_deadline_ms => {
                let silent: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| !m.awaiting_sync)
                    .map(|m| m.id.clone())
                    .collect();
                for id in silent {
                    self.drop_member(&id, &mut out);
                }
                self.prepare_rebalance(now, &mut out);
                self.maybe_complete_join(now, &mut out);
            }
            _ => {}
        }
        out
    }

    /// Validates an OffsetCommit against the membership (Kafka's `validateOffsetCommit`).
    /// Generation -1 with no member id is a commit by a client not using group management
    /// (or an admin), allowed only while the group has no members.
    pub fn check_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if generation < 0 && member_id.is_empty() && instance_id.is_none() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member(member_id, instance_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        // A commit counts as a sign of life, as in Kafka.
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heard_ms = now;
        Ok(())
    }

    fn limits_max_size(&self) -> usize {
        self.limits.max_size
    }

    fn limits_initial_delay(&self) -> i64 {
        self.limits.initial_rebalance_delay_ms
    }

    fn session_timeout_ok(&self, timeout_ms: i32) -> bool {
        (self.limits.min_session_timeout_ms..=self.limits.max_session_timeout_ms)
            .contains(&timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: i64 = 3_000;

    fn limits() -> GroupLimits {
        GroupLimits {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            max_size: 3,
            initial_rebalance_delay_ms: DELAY,
        }
    }

    fn args(member_id: &str, metadata: &'static [u8]) -> JoinArgs {
        JoinArgs {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 60_000,
            protocol_type: "consumer".into(),
            protocols: vec![
                ("cooperative-sticky".into(), Bytes::from_static(metadata)),
                ("range".into(), Bytes::from_static(metadata)),
            ],
            require_known_member_id: true,
        }
    }

    fn static_args(instance: &str, metadata: &'static [u8]) -> JoinArgs {
        JoinArgs {
            instance_id: Some(instance.into()),
            ..args("", metadata)
        }
    }

    /// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id.
    fn join_new(group: &mut Group, now: i64) -> (String, Vec<Delivery>) {
        let (reply, _) = group.join(args("", b"m"), now);
        let Reply::Now(r) = reply else {
            panic!("expected MEMBER_ID_REQUIRED")
        };
        assert_eq!(r.error, Some(ResponseError::MemberIdRequired));
        let (reply, out) = group.join(args(&r.member_id, b"m"), now);
        assert_eq!(
            reply,
            Reply::Later {
                member_id: r.member_id.clone()
            }
        );
        (r.member_id, out)
    }

    fn joins(out: &[Delivery]) -> Vec<&JoinResult> {
        out.iter()
            .filter_map(|d| match d {
                Delivery::Join(_, r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// Two members through the initial delay, the leader's sync: a stable group.
    fn stable_pair(group: &mut Group) -> (String, String) {
        let (a, out) = join_new(group, 0);
        assert!(out.is_empty(), "the initial delay holds the first join");
        let (b, out) = join_new(group, 100);
        assert!(out.is_empty());
        assert!(group.tick(DELAY - 1).is_empty());
        let out = group.tick(DELAY + 100);
        let results = joins(&out);
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(|r| r.generation == 1));
        assert_eq!(group.state(), GroupState::CompletingRebalance);
        assert_eq!(group.protocol(), Some("cooperative-sticky"));
        let leader = group.leader().unwrap().to_string();
        let follower = if leader == a { b.clone() } else { a.clone() };
        for r in &results {
            let expected = if r.member_id == leader { 2 } else { 0 };
            assert_eq!(
                r.members.len(),
                expected,
                "only the leader sees the members"
            );
        }
        let now = DELAY + 200;
        let (reply, out) = group.sync(&follower, None, 1, None, None, vec![], now);
        assert!(matches!(reply, Reply::Later { .. }));
        assert!(out.is_empty());
        let assignments = vec![
            (leader.clone(), Bytes::from_static(b"L")),
            (follower.clone(), Bytes::from_static(b"F")),
        ];
        let (reply, out) = group.sync(&leader, None, 1, None, None, assignments, now);
        assert!(matches!(reply, Reply::Later { .. }));
        assert_eq!(group.state(), GroupState::Stable);
        assert_eq!(out.len(), 2);
        for d in out {
            let Delivery::Sync(id, Ok(r)) = d else {
                panic!("expected assignments")
            };
            let expected: &[u8] = if id == leader { b"L" } else { b"F" };
            assert_eq!(&r.assignment[..], expected);
        }
        (leader, follower)
    }

    /// Random requests from a handful of clients, in any order, with time jumping around:
    /// no panic, and the membership stays consistent with the state.
    #[test]
    fn random_request_sequences_keep_the_group_consistent() {
        let mut seed: u64 = 0x5eed;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let mut group = Group::new("g", limits());
        let mut ids: Vec<String> = vec![String::new(), "bogus".into()];
        let mut now = 0;
        let mut stable = 0;
        for _ in 0..20_000 {
            now += next(3_000) as i64;
            // Mostly well-behaved clients (the leader, the current generation), some not.
            let id = match (next(2), group.leader()) {
                (0, Some(leader)) => leader.to_string(),
                _ => ids[next(ids.len() as u64) as usize].clone(),
            };
            let generation = match next(4) {
                0 => group.generation() + next(3) as i32 - 1,
                _ => group.generation(),
            };
            let instance = (next(3) == 0).then(|| format!("i-{}", next(2)));
            let out = match next(6) {
                0 => {
                    let mut a = args(&id, if next(2) == 0 { b"m" } else { b"n" });
                    a.instance_id = instance;
                    a.require_known_member_id = next(2) == 0;
                    let (reply, out) = group.join(a, now);
                    match reply {
                        Reply::Now(r) => ids.push(r.member_id),
                        Reply::Later { member_id } => ids.push(member_id),
                    }
                    out
                }
                1 => {
                    let assignment = vec![(id.clone(), Bytes::from_static(b"a"))];
                    let inst = instance.as_deref();
                    group
                        .sync(&id, inst, generation, None, None, assignment, now)
                        .1
                }
                2 => {
                    let _ = group.heartbeat(&id, instance.as_deref(), generation, now);
                    Vec::new()
                }
                3 => group.leave(&[(id.clone(), instance)], now).1,
                4 => {
                    let _ = group.check_commit(&id, instance.as_deref(), generation, now);
                    Vec::new()
                }
                _ => group.tick(now),
            };
            for d in out {
                if let Delivery::Join(_, r) = d {
                    assert!(r.error.is_some() || r.generation <= group.generation());
                }
            }
            for (instance, member) in &group.instances {
                assert!(
                    group.members.contains_key(member),
                    "{instance} -> missing {member}"
                );
            }
            match group.state() {
                GroupState::Empty => assert!(group.members.is_empty()),
                GroupState::CompletingRebalance | GroupState::Stable => {
                    stable += usize::from(group.state() == GroupState::Stable);
                    assert!(!group.members.is_empty());
                    assert!(group
                        .leader()
                        .is_some_and(|l| group.members.contains_key(l)));
                }
                _ => {}
            }
            assert!(group.members.len() + group.pending.len() <= limits().max_size);
            if ids.len() > 64 {
                // Keep "" and "bogus"; forget the oldest real id.
                ids.remove(2);
            }
        }
        // The sequence does exercise the whole cycle.
        assert!(stable > 100, "stable only {stable} times");
        assert!(group.generation() > 50, "generation {}", group.generation());
    }

    #[test]
    fn a_restored_snapshot_keeps_members_generation_and_assignments() {
        let mut group = Group::new("g", limits());
        let (leader, follower) = stable_pair(&mut group);
        let snapshot = group.snapshot();
        let now = DELAY + 1_000;
        let mut restored = Group::restore("g", limits(), snapshot.clone(), now);
        assert_eq!(restored.snapshot(), snapshot);
        assert_eq!(restored.state(), GroupState::Stable);
        assert_eq!(restored.heartbeat(&follower, None, 1, now), Ok(()));
        let (reply, _) = restored.sync(&leader, None, 1, None, None, vec![], now);
        assert!(matches!(reply, Reply::Now(Ok(r)) if &r.assignment[..] == b"L"));
        // Members that never come back time out as usual.
        assert!(restored.tick(now + 10_001).is_empty());
        assert!(restored.is_empty());
        assert_eq!(restored.state(), GroupState::Empty);
        assert_eq!(restored.generation(), 2);
    }

    #[test]
    fn two_members_join_sync_and_become_stable() {
        let mut group = Group::new("g", limits());
        let (leader, follower) = stable_pair(&mut group);
        let now = DELAY + 300;
        assert_eq!(group.heartbeat(&leader, None, 1, now), Ok(()));
        // Syncing again in Stable returns the stored assignment at once.
        let (reply, _) = group.sync(&follower, None, 1, None, None, vec![], now);
        assert_eq!(
            reply,
            Reply::Now(Ok(SyncResult {
                protocol_type: Some("consumer".into()),
                protocol_name: Some("cooperative-sticky".into()),
                assignment: Bytes::from_static(b"F"),
            }))
        );
    }

    #[test]
    fn heartbeat_and_sync_reject_strangers_and_old_generations() {
        let mut group = Group::new("g", limits());
        let (leader, _) = stable_pair(&mut group);
        let now = DELAY + 300;
        assert_eq!(
            group.heartbeat("nobody", None, 1, now),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            group.heartbeat(&leader, None, 0, now),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat(&leader, None, 1_000_000, now),
            Err(ResponseError::IllegalGeneration)
        );
        let (reply, _) = group.sync(&leader, None, 7, None, None, vec![], now);
        assert_eq!(reply, Reply::Now(Err(ResponseError::IllegalGeneration)));
        let (reply, _) = group.sync(&leader, None, 1, Some("connect"), None, vec![], now);
        assert_eq!(
            reply,
            Reply::Now(Err(ResponseError::InconsistentGroupProtocol))
        );
    }

    #[test]
    fn an_expired_session_removes_the_member_and_the_survivor_rebalances() {
        let mut group = Group::new("g", limits());
        let (leader, follower) = stable_pair(&mut group);
        let start = DELAY + 200;
        // Only the follower keeps heartbeating.
        let mut now = start;
        while now < start + 10_000 {
            now += 1_000;
            let _ = group.heartbeat(&follower, None, 1, now);
            assert!(group.tick(now).is_empty());
        }
        now += 1_000;
        assert_eq!(
            group.heartbeat(&follower, None, 1, now),
            Ok(()),
            "still stable before the tick sees the expiry"
        );
        let out = group.tick(now);
        assert!(out.is_empty());
        assert!(!group.has_member(&leader));
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        assert_eq!(
            group.heartbeat(&follower, None, 1, now),
            Err(ResponseError::RebalanceInProgress)
        );
        let (reply, out) = group.join(args(&follower, b"m"), now);
        assert!(matches!(reply, Reply::Later { .. }));
        let results = joins(&out);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].generation, 2);
        assert_eq!(results[0].leader, follower, "the survivor leads");
        assert_eq!(results[0].members.len(), 1);
    }

    #[test]
    fn a_member_that_does_not_rejoin_is_dropped_at_the_rebalance_timeout() {
        let mut group = Group::new("g", limits());
        let (leader, follower) = stable_pair(&mut group);
        let now = DELAY + 1_000;
        // The leader's metadata changes: a rebalance.
        let (reply, out) = group.join(args(&leader, b"changed"), now);
        assert!(matches!(reply, Reply::Later { .. }));
        assert!(out.is_empty(), "waits for the follower");
        // The follower stays alive but never rejoins.
        for t in (now..now + 60_000).step_by(5_000) {
            assert_eq!(
                group.heartbeat(&follower, None, 1, t),
                Err(ResponseError::RebalanceInProgress)
            );
            assert!(group.tick(t).is_empty());
        }
        assert!(group.tick(now + 59_999).is_empty());
        let out = group.tick(now + 60_000);
        let results = joins(&out);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].member_id, leader);
        assert!(!group.has_member(&follower));
    }

    #[test]
    fn leaving_rebalances_and_the_last_one_out_empties_the_group() {
        let mut group = Group::new("g", limits());
        let (leader, follower) = stable_pair(&mut group);
        let now = DELAY + 1_000;
        let (results, _) = group.leave(&[("ghost".into(), None)], now);
        assert_eq!(results, vec![Err(ResponseError::UnknownMemberId)]);
        let (results, _) = group.leave(&[(follower.clone(), None)], now);
        assert_eq!(results, vec![Ok(())]);
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        let (results, out) = group.leave(&[(leader.clone(), None)], now);
        assert_eq!(results, vec![Ok(())]);
        assert!(out.is_empty());
        assert_eq!(group.state(), GroupState::Empty);
        assert!(group.is_empty());
    }

    #[test]
    fn commits_are_checked_against_the_membership() {
        let mut group = Group::new("g", limits());
        assert_eq!(group.check_commit("", None, -1, 0), Ok(()), "empty group");
        let (a, _) = join_new(&mut group, 0);
        let out = group.tick(DELAY);
        assert_eq!(joins(&out).len(), 1);
        assert_eq!(
            group.check_commit(&a, None, 1, DELAY),
            Err(ResponseError::RebalanceInProgress),
            "CompletingRebalance"
        );
        assert_eq!(
            group.check_commit("", None, -1, DELAY),
            Err(ResponseError::UnknownMemberId),
            "only members commit to a live group"
        );
        let _ = group.sync(&a, None, 1, None, None, vec![], DELAY);
        assert_eq!(group.state(), GroupState::Stable);
        assert_eq!(group.check_commit(&a, None, 1, DELAY), Ok(()));
        assert_eq!(
            group.check_commit(&a, None, 2, DELAY),
            Err(ResponseError::IllegalGeneration)
        );
    }

    #[test]
    fn a_static_member_rejoins_without_a_rebalance_and_fences_its_old_id() {
        let mut group = Group::new("g", limits());
        let (reply, _) = group.join(static_args("i-1", b"m"), 0);
        let Reply::Later { member_id: old } = reply else {
            panic!("a static member needs no MEMBER_ID_REQUIRED")
        };
        let out = group.tick(DELAY);
        assert_eq!(joins(&out)[0].generation, 1);
        let _ = group.sync(&old, Some("i-1"), 1, None, None, vec![], DELAY);
        assert_eq!(group.state(), GroupState::Stable);
        // Restarted: same instance id, no member id, same metadata.
        let (reply, out) = group.join(static_args("i-1", b"m"), DELAY + 10);
        let Reply::Now(result) = reply else {
            panic!("no rebalance expected")
        };
        assert!(out.is_empty());
        assert_eq!(result.error, None);
        assert_eq!(result.generation, 1);
        assert_ne!(result.member_id, old);
        assert!(result.skip_assignment, "it leads, but keeps the assignment");
        assert_eq!(group.state(), GroupState::Stable);
        assert_eq!(
            group.heartbeat(&old, Some("i-1"), 1, DELAY + 20),
            Err(ResponseError::FencedInstanceId)
        );
        assert_eq!(
            group.heartbeat(&result.member_id, Some("i-1"), 1, DELAY + 20),
            Ok(())
        );
        // Changed metadata: a rebalance after all (here complete at once: one member).
        let (reply, out) = group.join(static_args("i-1", b"other"), DELAY + 30);
        assert!(matches!(reply, Reply::Later { .. }));
        assert_eq!(joins(&out)[0].generation, 2);
    }

    #[test]
    fn limits_and_protocol_checks() {
        let mut group = Group::new("g", limits());
        let mut bad = args("", b"m");
        bad.session_timeout_ms = 10;
        let (reply, _) = group.join(bad, 0);
        assert!(
            matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::InvalidSessionTimeout))
        );
        let mut bad = args("", b"m");
        bad.session_timeout_ms = i32::MAX;
        let (reply, _) = group.join(bad, 0);
        assert!(
            matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::InvalidSessionTimeout))
        );
        let (reply, _) = group.join(args("made-up", b"m"), 0);
        assert!(matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::UnknownMemberId)));
        for _ in 0..3 {
            join_new(&mut group, 0);
        }
        let (reply, _) = group.join(args("", b"m"), 0);
        assert!(
            matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::GroupMaxSizeReached))
        );
        let mut other = args("", b"m");
        other.protocols = vec![("roundrobin-only".into(), Bytes::new())];
        other.require_known_member_id = false;
        let (reply, _) = group.join(other, 0);
        assert!(
            matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::InconsistentGroupProtocol))
        );
    }

    #[test]
    fn unused_member_ids_expire_and_do_not_hold_the_group_full() {
        let mut group = Group::new("g", limits());
        for _ in 0..3 {
            let (reply, _) = group.join(args("", b"m"), 0);
            assert!(
                matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::MemberIdRequired))
            );
        }
        let (reply, _) = group.join(args("", b"m"), 0);
        assert!(
            matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::GroupMaxSizeReached))
        );
        group.tick(10_001);
        let (reply, _) = group.join(args("", b"m"), 10_001);
        assert!(matches!(reply, Reply::Now(r) if r.error == Some(ResponseError::MemberIdRequired)));
    }

    #[test]
    fn a_leader_that_never_syncs_is_dropped_and_the_rest_rebalance() {
        let mut group = Group::new("g", limits());
        let (a, _) = join_new(&mut group, 0);
        let (b, _) = join_new(&mut group, 0);
        let out = group.tick(DELAY);
        assert_eq!(joins(&out).len(), 2);
        let leader = group.leader().unwrap().to_string();
        let follower = if leader == a { b } else { a };
        let (reply, _) = group.sync(&follower, None, 1, None, None, vec![], DELAY);
        assert!(matches!(reply, Reply::Later { .. }));
        let out = group.tick(DELAY + 60_000);
        assert!(!group.has_member(&leader));
        assert!(out.contains(&Delivery::Sync(
            follower.clone(),
            Err(ResponseError::RebalanceInProgress)
        )));
        assert_eq!(group.state(), GroupState::PreparingRebalance);
    }
}
