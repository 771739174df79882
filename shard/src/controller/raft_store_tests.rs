//! Tests of the controller's Raft storage: openraft's own storage test suite, persistence
//! across reopening, and damaged files giving errors instead of panics.

use std::sync::Mutex;

use openraft::testing::Suite;
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, RaftLogReader, RaftSnapshotBuilder, RaftStorage,
};
use tempfile::TempDir;
use uuid::Uuid;

use super::commands::Command;
use super::metadata_files::MetadataError;
use super::raft_store::MetadataStore;
use super::raft_types::{LogId, Vote};

#[test]
fn passes_openraft_storage_suite() {
    let dirs = Mutex::new(Vec::<TempDir>::new());
    Suite::test_all(|| {
        let dir = TempDir::new().unwrap();
        let store = MetadataStore::open(dir.path(), 0).unwrap();
        dirs.lock().unwrap().push(dir);
        async move { store }
    })
    .unwrap();
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 0), index)
}

fn entry(index: u64, node: i32) -> Entry<super::raft_types::TypeConfig> {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Command::RegisterBroker {
            node_id: node,
            host: "h".into(),
            port: 1,
            rack: None,
            incarnation: Uuid::new_v4(),
        }),
    }
}

fn indexes(store: &mut MetadataStore) -> Vec<u64> {
    block_on(store.try_get_log_entries(..))
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[test]
fn everything_survives_reopening() {
    let dir = TempDir::new().unwrap();
    let vote = Vote::new(3, 0);
    {
        let mut s = MetadataStore::open(dir.path(), 0).unwrap();
        assert!(s.is_empty());
        block_on(async {
            s.save_vote(&vote).await.unwrap();
            s.append_to_log((1..=4).map(|i| entry(i, i as i32)))
                .await
                .unwrap();
            s.save_committed(Some(log_id(3))).await.unwrap();
            let entries = s.try_get_log_entries(1..3).await.unwrap();
            s.apply_to_state_machine(&entries).await.unwrap();
            let snap = s
                .get_snapshot_builder()
                .await
                .build_snapshot()
                .await
                .unwrap();
            assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
            s.purge_logs_upto(log_id(1)).await.unwrap();
            s.delete_conflict_logs_since(log_id(4)).await.unwrap();
        });
        assert_eq!(s.images().borrow().brokers.len(), 2);
    }
    let mut s = MetadataStore::open(dir.path(), 0).unwrap();
    assert!(!s.is_empty());
    assert_eq!(indexes(&mut s), vec![2, 3]);
    block_on(async {
        assert_eq!(s.read_vote().await.unwrap(), Some(vote));
        assert_eq!(s.read_committed().await.unwrap(), Some(log_id(3)));
        let state = s.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1)));
        assert_eq!(state.last_log_id, Some(log_id(3)));
        let (applied, _) = s.last_applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(2)));
        let snap = s.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
        // Appending after a reopen continues the same file.
        s.append_to_log([entry(4, 9)]).await.unwrap();
    });
    // The image comes back from the snapshot.
    assert_eq!(s.images().borrow().brokers.len(), 2);
    drop(s);
    let mut s = MetadataStore::open(dir.path(), 0).unwrap();
    assert_eq!(indexes(&mut s), vec![2, 3, 4]);
}

#[test]
fn a_torn_last_record_is_cut_off() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = MetadataStore::open(dir.path(), 0).unwrap();
        block_on(s.append_to_log([entry(1, 1), entry(2, 2)])).unwrap();
    }
    let log = dir.path().join("log");
    let full = std::fs::read(&log).unwrap();
    // Every cut inside the second record leaves exactly the first.
    let first_len = 8 + u32::from_be_bytes(full[0..4].try_into().unwrap()) as usize;
    for cut in first_len..full.len() {
        std::fs::write(&log, &full[..cut]).unwrap();
        let mut s = MetadataStore::open(dir.path(), 0).unwrap();
        assert_eq!(indexes(&mut s), vec![1], "cut at {cut}");
        assert_eq!(std::fs::metadata(&log).unwrap().len(), first_len as u64);
        block_on(s.append_to_log([entry(2, 2)])).unwrap();
        drop(s);
        let mut s = MetadataStore::open(dir.path(), 0).unwrap();
        assert_eq!(indexes(&mut s), vec![1, 2]);
    }
    // A damaged last record is a torn one too.
    let mut damaged = full.clone();
    let last = damaged.len() - 2;
    damaged[last] ^= 0xff;
    std::fs::write(&log, &damaged).unwrap();
    let mut s = MetadataStore::open(dir.path(), 0).unwrap();
    assert_eq!(indexes(&mut s), vec![1]);
}

#[test]
fn damage_before_the_end_stops_start_up_with_the_file_named() {
    let dir = TempDir::new().unwrap();
    {
        let mut s = MetadataStore::open(dir.path(), 0).unwrap();
        block_on(s.append_to_log([entry(1, 1), entry(2, 2)])).unwrap();
    }
    let log = dir.path().join("log");
    let full = std::fs::read(&log).unwrap();
    for at in 0..20 {
        let mut damaged = full.clone();
        damaged[at] ^= 0x55;
        std::fs::write(&log, &damaged).unwrap();
        match MetadataStore::open(dir.path(), 0) {
            // A damaged length may make the first record look torn: then nothing is kept
            // past it, which is still no panic; a damaged header or body with data after it
            // must be refused.
            Err(MetadataError::Corrupt { path, .. }) => assert_eq!(path, log),
            Ok(mut s) => assert!(indexes(&mut s).is_empty(), "byte {at}"),
            Err(e) => panic!("byte {at}: {e}"),
        }
    }
    // A gap in the indexes is damage.
    std::fs::write(&log, &full).unwrap();
    {
        let mut s = MetadataStore::open(dir.path(), 0).unwrap();
        block_on(s.append_to_log([entry(5, 5)])).unwrap();
    }
    let err = MetadataStore::open(dir.path(), 0).err().unwrap();
    assert!(err.to_string().contains("gap"), "{err}");
}

#[test]
fn damaged_documents_and_a_foreign_directory_are_refused() {
    for name in [
        "vote.json",
        "committed.json",
        "purged.json",
        "snapshot.json",
        "node.json",
    ] {
        let dir = TempDir::new().unwrap();
        MetadataStore::open(dir.path(), 0).unwrap();
        std::fs::write(dir.path().join(name), b"{\"truncated").unwrap();
        let err = MetadataStore::open(dir.path(), 0).err().unwrap();
        assert!(
            matches!(&err, MetadataError::Corrupt { path, .. } if path.ends_with(name)),
            "{name}: {err}"
        );
    }
    let dir = TempDir::new().unwrap();
    MetadataStore::open(dir.path(), 1).unwrap();
    let err = MetadataStore::open(dir.path(), 2).err().unwrap();
    assert!(err.to_string().contains("belongs to controller 1"), "{err}");
}
