//! Where a new partition's replicas go: Kafka's rack-unaware assignment. The active controller
//! runs it over the unfenced brokers before proposing CreateTopic or CreatePartitions, so the
//! replicated command carries the result and `apply` stays deterministic.

use kafka_protocol::ResponseError;

use super::commands::Refusal;

/// Replica lists for partitions `first_partition..first_partition + partitions` over
/// `brokers` (ids sorted ascending). Partition p's first replica (its preferred leader) is
/// broker `(p + start) % n`; the followers come after it at a distance that grows by one each
/// time p wraps around the broker list, so leaders and followers both spread evenly.
/// `start` is random in Kafka (and in Spate's controller); tests fix it.
pub fn assign_replicas(
    brokers: &[i32],
    first_partition: usize,
    partitions: usize,
    replication_factor: usize,
    start: usize,
) -> Result<Vec<Vec<i32>>, Refusal> {
    let n = brokers.len();
    if partitions == 0 {
        return Err(Refusal::new(
            ResponseError::InvalidPartitions,
            "the number of partitions must be at least 1",
        ));
    }
    if replication_factor == 0 || replication_factor > n {
        return Err(Refusal::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} is not possible with {n} available broker(s)"
            ),
        ));
    }
    let start = start % n;
    let mut out = Vec::with_capacity(partitions);
    for p in first_partition..first_partition + partitions {
        let shift = start + p / n;
        let first = (p + start) % n;
        let mut replicas = Vec::with_capacity(replication_factor);
        replicas.push(brokers[first]);
        for j in 0..replication_factor - 1 {
            // n > 1 here: with one broker the replication factor is 1 and this loop is empty.
            let distance = 1 + (shift + j) % (n - 1);
            replicas.push(brokers[(first + distance) % n]);
        }
        out.push(replicas);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_kafkas_rack_unaware_assignment() {
        // Kafka's own expectation for 5 brokers, 10 partitions, RF 3, fixed start 0.
        let got = assign_replicas(&[0, 1, 2, 3, 4], 0, 10, 3, 0).unwrap();
        let want = vec![
            vec![0, 1, 2],
            vec![1, 2, 3],
            vec![2, 3, 4],
            vec![3, 4, 0],
            vec![4, 0, 1],
            vec![0, 2, 3],
            vec![1, 3, 4],
            vec![2, 4, 0],
            vec![3, 0, 1],
            vec![4, 1, 2],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn spreads_leaders_and_replicas_evenly() {
        let brokers = [1, 2, 3];
        for start in 0..3 {
            let got = assign_replicas(&brokers, 0, 6, 3, start).unwrap();
            for b in brokers {
                let leads = got.iter().filter(|r| r[0] == b).count();
                assert_eq!(leads, 2, "start {start}: {got:?}");
            }
            for r in &got {
                let mut s = r.clone();
                s.sort();
                assert_eq!(
                    s,
                    vec![1, 2, 3],
                    "each partition on distinct brokers: {got:?}"
                );
            }
        }
    }

    #[test]
    fn continues_numbering_for_added_partitions() {
        let all = assign_replicas(&[1, 2, 3, 4], 0, 8, 2, 1).unwrap();
        let tail = assign_replicas(&[1, 2, 3, 4], 5, 3, 2, 1).unwrap();
        assert_eq!(&all[5..], &tail[..]);
    }

    #[test]
    fn refuses_impossible_requests() {
        let e = assign_replicas(&[1, 2], 0, 3, 3, 0).unwrap_err();
        assert_eq!(e.error(), ResponseError::InvalidReplicationFactor);
        let e = assign_replicas(&[], 0, 1, 1, 0).unwrap_err();
        assert_eq!(e.error(), ResponseError::InvalidReplicationFactor);
        let e = assign_replicas(&[1], 0, 1, 0, 0).unwrap_err();
        assert_eq!(e.error(), ResponseError::InvalidReplicationFactor);
        let e = assign_replicas(&[1], 0, 0, 1, 0).unwrap_err();
        assert_eq!(e.error(), ResponseError::InvalidPartitions);
        assert_eq!(
            assign_replicas(&[7], 0, 2, 1, 5).unwrap(),
            vec![vec![7], vec![7]]
        );
    }
}
