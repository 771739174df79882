//! Committed offsets: the in-memory table, and the records that make it durable.
//!
//! Every change is appended to a log before it is applied (see `GroupCoordinator`), one
//! record per partition committed or deleted, and replayed in order at start-up: the last
//! record for a key wins, a tombstone removes it. spate-log has no compaction yet, so the
//! log keeps every commit ever made and a restart replays all of them; retention is off for
//! these logs because deleting old segments would lose offsets never committed again.
//!
//! Record value (Spate's own layout, versioned; the record key is unused):
//! `u8 version=0, u8 kind, str group, ...` where `str` is a u16 length and bytes (0xFFFF:
//! null) and `bytes` an i32 length and bytes. Kinds: 1 offset (`str topic, i32 partition,
//! i64 offset, i32 epoch, str metadata, i64 commit time`), 2 offset tombstone (`str topic,
//! i32 partition`), 3 group tombstone, 4 group metadata (`i32 generation, str protocol
//! type, str protocol, str leader, i32 count, count x (str member, str instance, str client,
//! str host, i32 session timeout, i32 rebalance timeout, bytes metadata, bytes
//! assignment)`).

use std::collections::{BTreeMap, HashMap};

use bytes::{Buf, BufMut, Bytes};

use super::group::{GroupSnapshot, MemberSnapshot};

/// One partition's committed position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    pub commit_time_ms: i64,
}

/// A change to the table, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OffsetRecord {
    Commit {
        group: String,
        topic: String,
        partition: i32,
        committed: Committed,
    },
    DeleteOffset {
        group: String,
        topic: String,
        partition: i32,
    },
    DeleteGroup {
        group: String,
    },
    GroupMetadata {
        group: String,
        snapshot: GroupSnapshot,
    },
}

const VERSION: u8 = 0;
const KIND_COMMIT: u8 = 1;
const KIND_DELETE_OFFSET: u8 = 2;
const KIND_DELETE_GROUP: u8 = 3;
const KIND_GROUP_METADATA: u8 = 4;
const NULL_STR: u16 = u16::MAX;

#[derive(Debug, PartialEq)]
pub struct RecordError(&'static str);

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad offsets record: {}", self.0)
    }
}

impl OffsetRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.put_u8(VERSION);
        match self {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                committed,
            } => {
                out.put_u8(KIND_COMMIT);
                put_str(&mut out, Some(group));
                put_str(&mut out, Some(topic));
                out.put_i32(*partition);
                out.put_i64(committed.offset);
                out.put_i32(committed.leader_epoch);
                put_str(&mut out, committed.metadata.as_deref());
                out.put_i64(committed.commit_time_ms);
            }
            OffsetRecord::DeleteOffset {
                group,
                topic,
                partition,
            } => {
                out.put_u8(KIND_DELETE_OFFSET);
                put_str(&mut out, Some(group));
                put_str(&mut out, Some(topic));
                out.put_i32(*partition);
            }
            OffsetRecord::DeleteGroup { group } => {
                out.put_u8(KIND_DELETE_GROUP);
                put_str(&mut out, Some(group));
            }
            OffsetRecord::GroupMetadata { group, snapshot } => {
                out.put_u8(KIND_GROUP_METADATA);
                put_str(&mut out, Some(group));
                out.put_i32(snapshot.generation);
                put_str(&mut out, snapshot.protocol_type.as_deref());
                put_str(&mut out, snapshot.protocol.as_deref());
                put_str(&mut out, snapshot.leader.as_deref());
                out.put_i32(snapshot.members.len() as i32);
                for m in &snapshot.members {
                    put_str(&mut out, Some(&m.member_id));
                    put_str(&mut out, m.instance_id.as_deref());
                    put_str(&mut out, Some(&m.client_id));
                    put_str(&mut out, Some(&m.client_host));
                    out.put_i32(m.session_timeout_ms);
                    out.put_i32(m.rebalance_timeout_ms);
                    put_bytes(&mut out, &m.metadata);
                    put_bytes(&mut out, &m.assignment);
                }
            }
        }
        out
    }

    pub fn decode(mut buf: &[u8]) -> Result<OffsetRecord, RecordError> {
        if get_u8(&mut buf)? != VERSION {
            return Err(RecordError("unknown version"));
        }
        let kind = get_u8(&mut buf)?;
        let group = get_str(&mut buf)?.ok_or(RecordError("null group"))?;
        let record = match kind {
            KIND_COMMIT => {
                let topic = get_str(&mut buf)?.ok_or(RecordError("null topic"))?;
                let partition = get_i32(&mut buf)?;
                let offset = get_i64(&mut buf)?;
                let leader_epoch = get_i32(&mut buf)?;
                let metadata = get_str(&mut buf)?;
                let commit_time_ms = get_i64(&mut buf)?;
                OffsetRecord::Commit {
                    group,
                    topic,
                    partition,
                    committed: Committed {
                        offset,
                        leader_epoch,
                        metadata,
                        commit_time_ms,
                    },
                }
            }
            KIND_DELETE_OFFSET => OffsetRecord::DeleteOffset {
                group,
                topic: get_str(&mut buf)?.ok_or(RecordError("null topic"))?,
                partition: get_i32(&mut buf)?,
            },
            KIND_DELETE_GROUP => OffsetRecord::DeleteGroup { group },
            KIND_GROUP_METADATA => {
                let generation = get_i32(&mut buf)?;
                let protocol_type = get_str(&mut buf)?;
                let protocol = get_str(&mut buf)?;
                let leader = get_str(&mut buf)?;
                let count = get_i32(&mut buf)?;
                // Each member takes at least 20 bytes: a bad count cannot allocate much.
                let mut members = Vec::with_capacity((count.max(0) as usize).min(buf.len() / 20));
                for _ in 0..count.max(0) {
                    members.push(MemberSnapshot {
                        member_id: get_str(&mut buf)?.ok_or(RecordError("null member id"))?,
                        instance_id: get_str(&mut buf)?,
                        client_id: get_str(&mut buf)?.unwrap_or_default(),
                        client_host: get_str(&mut buf)?.unwrap_or_default(),
                        session_timeout_ms: get_i32(&mut buf)?,
                        rebalance_timeout_ms: get_i32(&mut buf)?,
                        metadata: get_bytes(&mut buf)?,
                        assignment: get_bytes(&mut buf)?,
                    });
                }
                OffsetRecord::GroupMetadata {
                    group,
                    snapshot: GroupSnapshot {
                        generation,
                        protocol_type,
                        protocol,
                        leader,
                        members,
                    },
                }
            }
            _ => return Err(RecordError("unknown kind")),
        };
        Ok(record)
    }
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        // Group ids, topic names and metadata are bounded far below 64 KiB by the
        // handlers (offset.metadata.max.bytes, name limits); longer ones are cut.
        Some(s) => {
            let bytes = &s.as_bytes()[..s.len().min(usize::from(NULL_STR - 1))];
            out.put_u16(bytes.len() as u16);
            out.put_slice(bytes);
        }
        None => out.put_u16(NULL_STR),
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.put_i32(bytes.len() as i32);
    out.put_slice(bytes);
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, RecordError> {
    let len = usize::try_from(get_i32(buf)?).map_err(|_| RecordError("negative length"))?;
    need(buf, len)?;
    let bytes = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(bytes)
}

fn need(buf: &[u8], n: usize) -> Result<(), RecordError> {
    if buf.len() < n {
        Err(RecordError("truncated"))
    } else {
        Ok(())
    }
}

fn get_u8(buf: &mut &[u8]) -> Result<u8, RecordError> {
    need(buf, 1)?;
    Ok(buf.get_u8())
}

fn get_i32(buf: &mut &[u8]) -> Result<i32, RecordError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}

fn get_i64(buf: &mut &[u8]) -> Result<i64, RecordError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}

fn get_str(buf: &mut &[u8]) -> Result<Option<String>, RecordError> {
    need(buf, 2)?;
    let len = buf.get_u16();
    if len == NULL_STR {
        return Ok(None);
    }
    need(buf, usize::from(len))?;
    let s = std::str::from_utf8(&buf[..usize::from(len)])
        .map_err(|_| RecordError("string is not UTF-8"))?
        .to_string();
    buf.advance(usize::from(len));
    Ok(Some(s))
}

/// The values of the records in one v2 batch written by this module (uncompressed, as
/// `build_batch` writes them).
pub fn batch_values(batch: &[u8]) -> Result<Vec<&[u8]>, RecordError> {
    use spate_core::record_batch::BATCH_HEADER_LEN;
    if batch.len() < BATCH_HEADER_LEN {
        return Err(RecordError("truncated batch"));
    }
    let count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
    let mut rest = &batch[BATCH_HEADER_LEN..];
    let mut values = Vec::new();
    for _ in 0..count.max(0) {
        let len = get_varint(&mut rest)?;
        let len = usize::try_from(len).map_err(|_| RecordError("negative record length"))?;
        need(rest, len)?;
        let mut record = &rest[..len];
        rest = &rest[len..];
        get_u8(&mut record)?; // attributes
        get_varint(&mut record)?; // timestamp delta
        get_varint(&mut record)?; // offset delta
        let key_len = get_varint(&mut record)?;
        if key_len > 0 {
            need(record, key_len as usize)?;
            record = &record[key_len as usize..];
        }
        let value_len = get_varint(&mut record)?;
        let value_len = usize::try_from(value_len).map_err(|_| RecordError("null record value"))?;
        need(record, value_len)?;
        values.push(&record[..value_len]);
    }
    Ok(values)
}

fn get_varint(buf: &mut &[u8]) -> Result<i64, RecordError> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = get_u8(buf)?;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    Err(RecordError("varint too long"))
}

/// Every group's committed offsets, keyed by topic and partition.
#[derive(Debug, Default)]
pub struct OffsetTable {
    /// Each value carries the log offset of its record: commits whose appends finish out
    /// of order still leave the newer one in place, as replay would.
    groups: HashMap<String, GroupOffsets>,
}

/// (topic, partition) -> (log offset of the record, committed position).
type GroupOffsets = BTreeMap<(String, i32), (i64, Committed)>;

impl OffsetTable {
    /// Applies the record stored at `log_offset`.
    pub fn apply(&mut self, record: OffsetRecord, log_offset: i64) {
        match record {
            OffsetRecord::Commit {
                group,
                topic,
                partition,
                committed,
            } => {
                let entry = self
                    .groups
                    .entry(group)
                    .or_default()
                    .entry((topic, partition))
                    .or_insert((log_offset, committed.clone()));
                if entry.0 <= log_offset {
                    *entry = (log_offset, committed);
                }
            }
            OffsetRecord::DeleteOffset {
                group,
                topic,
                partition,
            } => {
                if let Some(offsets) = self.groups.get_mut(&group) {
                    offsets.remove(&(topic, partition));
                    if offsets.is_empty() {
                        self.groups.remove(&group);
                    }
                }
            }
            OffsetRecord::DeleteGroup { group } => {
                self.groups.remove(&group);
            }
            // Membership is the coordinator's business.
            OffsetRecord::GroupMetadata { .. } => {}
        }
    }

    pub fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.groups
            .get(group)?
            .get(&(topic.to_string(), partition))
            .map(|(_, c)| c)
    }

    /// All of a group's offsets, ordered by topic and partition.
    pub fn all(&self, group: &str) -> Vec<(&str, i32, &Committed)> {
        self.groups
            .get(group)
            .map(|offsets| {
                offsets
                    .iter()
                    .map(|((t, p), (_, c))| (t.as_str(), *p, c))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    pub fn groups(&self) -> impl Iterator<Item = &String> {
        self.groups.keys()
    }

    /// Drops the offsets of the groups `which` picks (a coordinator partition led elsewhere).
    pub fn forget_groups(&mut self, which: impl Fn(&str) -> bool) {
        self.groups.retain(|group, _| !which(group));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: i32, offset: i64) -> OffsetRecord {
        OffsetRecord::Commit {
            group: group.into(),
            topic: topic.into(),
            partition,
            committed: Committed {
                offset,
                leader_epoch: -1,
                metadata: if offset % 2 == 0 {
                    None
                } else {
                    Some("m".into())
                },
                commit_time_ms: 7,
            },
        }
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let records = vec![
            commit("g", "t", 0, 5),
            commit("g", "t", 1, 6),
            OffsetRecord::DeleteOffset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
            },
            OffsetRecord::DeleteGroup { group: "h".into() },
            OffsetRecord::GroupMetadata {
                group: "g".into(),
                snapshot: GroupSnapshot {
                    generation: 4,
                    protocol_type: Some("consumer".into()),
                    protocol: Some("range".into()),
                    leader: Some("m-1".into()),
                    members: vec![MemberSnapshot {
                        member_id: "m-1".into(),
                        instance_id: Some("i".into()),
                        client_id: "c".into(),
                        client_host: "/127.0.0.1".into(),
                        session_timeout_ms: 10_000,
                        rebalance_timeout_ms: 30_000,
                        metadata: Bytes::from_static(b"sub"),
                        assignment: Bytes::from_static(b"asg"),
                    }],
                },
            },
        ];
        let values: Vec<Vec<u8>> = records.iter().map(OffsetRecord::encode).collect();
        let batch = spate_core::record_batch::build_batch(1, &values);
        let decoded: Vec<OffsetRecord> = batch_values(&batch)
            .unwrap()
            .into_iter()
            .map(|v| OffsetRecord::decode(v).unwrap())
            .collect();
        assert_eq!(decoded, records);
    }

    #[test]
    fn truncated_or_garbage_records_are_errors() {
        let value = commit("g", "t", 0, 5).encode();
        for cut in 0..value.len() {
            assert!(OffsetRecord::decode(&value[..cut]).is_err(), "cut at {cut}");
        }
        // A group metadata record claiming a huge member count.
        let mut huge = vec![0, KIND_GROUP_METADATA, 0, 1, b'g', 0, 0, 0, 1];
        huge.extend([0xff; 6]); // three null strings
        huge.extend(i32::MAX.to_be_bytes());
        assert!(OffsetRecord::decode(&huge).is_err());
        assert!(OffsetRecord::decode(&[0, 9, 0, 0]).is_err());
        assert!(OffsetRecord::decode(&[1]).is_err());
    }

    #[test]
    fn replay_keeps_the_last_write_and_honours_tombstones() {
        let mut table = OffsetTable::default();
        table.apply(commit("g", "t", 0, 5), 0);
        table.apply(commit("g", "t", 0, 9), 1);
        table.apply(commit("g", "t", 1, 3), 2);
        table.apply(commit("h", "t", 0, 1), 3);
        // An older append finishing late does not overwrite a newer one.
        table.apply(commit("g", "t", 0, 7), 0);
        assert_eq!(table.get("g", "t", 0).unwrap().offset, 9);
        table.apply(
            OffsetRecord::DeleteOffset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
            },
            4,
        );
        assert!(table.get("g", "t", 0).is_none());
        assert_eq!(table.all("g").len(), 1);
        table.apply(OffsetRecord::DeleteGroup { group: "h".into() }, 5);
        assert!(!table.has_group("h"));
        table.apply(commit("h", "t", 0, 2), 6);
        assert_eq!(table.get("h", "t", 0).unwrap().offset, 2);
    }
}
