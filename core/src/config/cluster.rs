//! The cluster keys, as in Kafka's KRaft mode: the node's roles (`process.roles`), its
//! listeners (`listeners`, with the controller's named by `controller.listener.names`), and
//! the controller quorum (`controller.quorum.voters`); plus the checks across them that Kafka
//! makes at start-up, so a node that could never join its cluster stops with a message
//! instead of waiting forever.

use std::fmt;

/// What a node runs (`process.roles`): the glommio shards serving clients (broker), a Raft
/// voter holding the cluster metadata (controller), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

impl Default for ProcessRoles {
    /// Both: a single node is its own cluster.
    fn default() -> Self {
        ProcessRoles {
            broker: true,
            controller: true,
        }
    }
}

impl ProcessRoles {
    /// From role names (`broker`, `controller`), each at most once, at least one.
    pub(super) fn from_names<'a>(
        names: impl IntoIterator<Item = &'a str>,
    ) -> Result<ProcessRoles, String> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for name in names {
            let slot = match name.trim() {
                "broker" => &mut roles.broker,
                "controller" => &mut roles.controller,
                other => return Err(format!("unknown role {other:?}")),
            };
            if *slot {
                return Err(format!("role {:?} is listed twice", name.trim()));
            }
            *slot = true;
        }
        if !roles.broker && !roles.controller {
            return Err("no role".into());
        }
        Ok(roles)
    }
}

impl fmt::Display for ProcessRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.broker, self.controller) {
            (true, true) => f.write_str("[broker, controller]"),
            (true, false) => f.write_str("[broker]"),
            (false, _) => f.write_str("[controller]"),
        }
    }
}

/// One entry of `controller.quorum.voters`: a controller's node id and the address of its
/// controller listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub id: i32,
    pub host: String,
    pub port: u16,
}

/// Parses `controller.quorum.voters`: `ID@HOST:PORT` entries separated by commas (an IPv6
/// host in brackets). Empty text is no voters.
pub(super) fn parse_voters(text: &str) -> Result<Vec<QuorumVoter>, String> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        if entry.is_empty() {
            if text.trim().is_empty() {
                break;
            }
            return Err("an entry is empty".into());
        }
        let bad = |why: &str| format!("entry {entry:?} {why}");
        let (id, address) = entry
            .split_once('@')
            .ok_or_else(|| bad("is not ID@HOST:PORT"))?;
        let id: i32 = id
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| bad("has no node id (an integer >= 0) before '@'"))?;
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("has no :PORT"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("has no port from 1 to 65535"))?;
        if voters.iter().any(|v| v.id == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        voters.push(QuorumVoter {
            id,
            host: host.to_string(),
            port,
        });
    }
    Ok(voters)
}

/// One entry of `listeners`: its name (upper case, as Kafka normalizes it) and `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Listener {
    pub name: String,
    pub address: String,
}

/// The name of the client listener; every listener Spate serves speaks plaintext.
pub(super) const CLIENT_LISTENER: &str = "PLAINTEXT";

/// Parses `listeners`: `NAME://HOST:PORT` entries separated by commas; a lone `HOST:PORT`
/// is the PLAINTEXT listener. An empty host means every interface, as in Kafka. Which name
/// means what is settled once `controller.listener.names` is known ([`resolve_listeners`]).
pub(super) fn parse_listeners(text: &str) -> Result<Vec<Listener>, String> {
    let mut listeners: Vec<Listener> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let bad = |why: &str| format!("entry {entry:?} {why}");
        let (name, address) = match entry.split_once("://") {
            Some((name, address)) => (name.to_ascii_uppercase(), address),
            None => (CLIENT_LISTENER.to_string(), entry),
        };
        if name.is_empty() {
            return Err(bad("has no listener name before ://"));
        }
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| bad("is not NAME://HOST:PORT"))?;
        port.parse::<u16>()
            .map_err(|_| bad("has no port from 0 to 65535"))?;
        if listeners.iter().any(|l| l.name == name) {
            return Err(format!("listener name {name} is used twice"));
        }
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        listeners.push(Listener {
            name,
            address: format!("{host}:{port}"),
        });
    }
    Ok(listeners)
}

/// Parses `controller.listener.names`: listener names separated by commas, at least one.
pub(super) fn parse_listener_names(text: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = text
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .collect();
    if names.iter().any(String::is_empty) {
        return Err("a listener name is empty".into());
    }
    if names.iter().any(|n| n == CLIENT_LISTENER) {
        return Err(format!(
            "{CLIENT_LISTENER} is the client listener; name the controller's another way \
             (Kafka's usual name is CONTROLLER)"
        ));
    }
    Ok(names)
}

/// The client and controller listeners out of `listeners`: PLAINTEXT serves clients, the
/// first of `controller_names` present serves the controller. Any other listener is an error
/// naming it: Spate serves plaintext only (no SSL or SASL listeners yet).
pub(super) fn resolve_listeners(
    listeners: &[Listener],
    controller_names: &[String],
) -> Result<(Option<String>, Option<String>), String> {
    let mut client = None;
    let mut controller: Option<&Listener> = None;
    for listener in listeners {
        if listener.name == CLIENT_LISTENER {
            client = Some(listener.address.clone());
        } else if controller_names.contains(&listener.name) {
            if let Some(first) = controller {
                return Err(format!(
                    "listeners {} and {} are both controller listeners; Spate serves one",
                    first.name, listener.name
                ));
            }
            controller = Some(listener);
        } else {
            return Err(format!(
                "listener {} is neither PLAINTEXT (clients) nor named in \
                 `controller.listener.names` ({}); Spate serves plaintext only, no SSL or \
                 SASL listeners yet",
                listener.name,
                controller_names.join(",")
            ));
        }
    }
    Ok((client, controller.map(|l| l.address.clone())))
}

/// What the cross-key checks look at.
pub(super) struct ClusterKeys<'a> {
    pub node_id: i32,
    pub roles: ProcessRoles,
    pub voters: &'a [QuorumVoter],
    /// The client listener, when `listeners` was given (else the default serves).
    pub client_listener_given: Option<bool>,
    pub controller_listen: Option<&'a str>,
    pub controller_listener_names: &'a [String],
    pub heartbeat_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub fetch_wait_max_ms: u64,
    pub lag_time_max_ms: u64,
    pub socket_timeout_ms: u64,
}

/// Kafka's start-up checks across the cluster keys; the message names every key involved.
pub(super) fn check(keys: &ClusterKeys<'_>) -> Result<(), String> {
    let roles = keys.roles;
    let ids = || {
        keys.voters
            .iter()
            .map(|v| v.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = || keys.controller_listener_names.join(",");
    if keys.heartbeat_interval_ms >= keys.session_timeout_ms {
        return Err(format!(
            "`broker.heartbeat.interval.ms` ({}) must be less than `broker.session.timeout.ms` \
             ({}): a broker that heartbeats less often than once per session is fenced while alive",
            keys.heartbeat_interval_ms, keys.session_timeout_ms
        ));
    }
    if keys.fetch_wait_max_ms > keys.lag_time_max_ms {
        return Err(format!(
            "`replica.fetch.wait.max.ms` ({}) must not exceed `replica.lag.time.max.ms` ({}): \
             a follower waiting that long on an idle leader would drop out of the ISR",
            keys.fetch_wait_max_ms, keys.lag_time_max_ms
        ));
    }
    if keys.socket_timeout_ms < keys.fetch_wait_max_ms {
        return Err(format!(
            "`replica.socket.timeout.ms` ({}) must be at least `replica.fetch.wait.max.ms` ({}): \
             Kafka refuses this too, since there the timeout covers the fetch's wait and a \
             shorter one would time out every fetch to an idle leader",
            keys.socket_timeout_ms, keys.fetch_wait_max_ms
        ));
    }
    let in_voters = keys.voters.iter().any(|v| v.id == keys.node_id);
    if roles.controller && !keys.voters.is_empty() {
        if !in_voters {
            return Err(format!(
                "`node.id` {} has the controller role (`process.roles`: {roles}) but is not \
                 among `controller.quorum.voters` ({}): add it, or drop the controller role",
                keys.node_id,
                ids()
            ));
        }
        if keys.controller_listen.is_none() {
            return Err(format!(
                "a controller (`process.roles`: {roles}) needs a listener named in \
                 `controller.listener.names` ({}) in `listeners`, such as \
                 `CONTROLLER://127.0.0.1:9093`, for the other voters and the brokers",
                names()
            ));
        }
    }
    if !roles.controller {
        if keys.voters.is_empty() {
            return Err(format!(
                "a broker-only node (`process.roles`: {roles}) needs \
                 `controller.quorum.voters` to find the controllers"
            ));
        }
        if in_voters {
            return Err(format!(
                "`node.id` {} is among `controller.quorum.voters` ({}) but `process.roles` is \
                 {roles}: a voter must have the controller role",
                keys.node_id,
                ids()
            ));
        }
        if keys.controller_listen.is_some() {
            return Err(format!(
                "a broker-only node (`process.roles`: {roles}) must not have a controller \
                 listener (named in `controller.listener.names`: {}) in `listeners`",
                names()
            ));
        }
    }
    if !roles.broker && keys.voters.is_empty() {
        return Err(format!(
            "a controller-only node (`process.roles`: {roles}) needs \
             `controller.quorum.voters`: with none, no broker could find it"
        ));
    }
    if roles.broker && keys.client_listener_given == Some(false) {
        return Err(format!(
            "a broker (`process.roles`: {roles}) needs a PLAINTEXT listener for clients in \
             `listeners`, such as `PLAINTEXT://127.0.0.1:9092`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_into_id_host_port() {
        assert_eq!(
            parse_voters("1@127.0.0.1:19093, 2@[::1]:29093,3@ctl-3.example:39093").unwrap(),
            vec![
                QuorumVoter {
                    id: 1,
                    host: "127.0.0.1".into(),
                    port: 19093
                },
                QuorumVoter {
                    id: 2,
                    host: "::1".into(),
                    port: 29093
                },
                QuorumVoter {
                    id: 3,
                    host: "ctl-3.example".into(),
                    port: 39093
                },
            ]
        );
        assert_eq!(parse_voters("").unwrap(), vec![]);
        assert_eq!(parse_voters("  ").unwrap(), vec![]);
        for (bad, why) in [
            ("127.0.0.1:19093", "ID@HOST:PORT"),
            ("x@h:1", "node id"),
            ("-1@h:1", "node id"),
            ("1@h", ":PORT"),
            ("1@:9", "no host"),
            ("1@h:0", "port"),
            ("1@h:70000", "port"),
            ("1@a:1,1@b:2", "twice"),
            ("1@a:1,", "empty"),
        ] {
            let msg = parse_voters(bad).unwrap_err();
            assert!(msg.contains(why), "{bad}: {msg}");
        }
    }

    #[test]
    fn roles_are_broker_and_or_controller_once_each() {
        let roles = |names: &[&str]| ProcessRoles::from_names(names.iter().copied());
        assert_eq!(
            roles(&["broker"]).unwrap(),
            ProcessRoles {
                broker: true,
                controller: false
            }
        );
        assert_eq!(
            roles(&["controller", "broker"]).unwrap(),
            ProcessRoles::default()
        );
        assert!(roles(&[]).unwrap_err().contains("no role"));
        assert!(roles(&["broker", "broker"]).unwrap_err().contains("twice"));
        assert!(roles(&["zookeeper"]).unwrap_err().contains("zookeeper"));
    }

    #[test]
    fn listeners_split_into_client_and_controller() {
        let listeners = parse_listeners("PLAINTEXT://127.0.0.1:9092,controller://:9093").unwrap();
        let names = vec!["CONTROLLER".to_string()];
        assert_eq!(
            resolve_listeners(&listeners, &names).unwrap(),
            (
                Some("127.0.0.1:9092".to_string()),
                Some("0.0.0.0:9093".to_string())
            )
        );
        let only_controller = parse_listeners("CONTROLLER://h:1").unwrap();
        assert_eq!(
            resolve_listeners(&only_controller, &names).unwrap(),
            (None, Some("h:1".to_string()))
        );
        let internal = parse_listeners("INTERNAL://h:1").unwrap();
        let msg = resolve_listeners(&internal, &names).unwrap_err();
        assert!(
            msg.contains("INTERNAL") && msg.contains("controller.listener.names"),
            "{msg}"
        );
        let two = parse_listeners("A://h:1,B://h:2").unwrap();
        let msg = resolve_listeners(&two, &["A".into(), "B".into()]).unwrap_err();
        assert!(msg.contains("both controller listeners"), "{msg}");
        assert!(parse_listeners("A://h:1,a://h:2")
            .unwrap_err()
            .contains("twice"));
        assert!(parse_listeners("://h:1").unwrap_err().contains("name"));
        assert!(parse_listeners("h").unwrap_err().contains("HOST:PORT"));
        assert!(parse_listener_names("CONTROLLER,").is_err());
        assert!(parse_listener_names("PLAINTEXT").is_err());
        assert_eq!(
            parse_listener_names("controller, ctl2").unwrap(),
            vec!["CONTROLLER".to_string(), "CTL2".to_string()]
        );
    }
}
