"""confluent-kafka (librdkafka): produce keyed messages with headers at acks=all, then read
every partition back by assignment and check nothing is missing, extra, reordered or
altered; once uncompressed at scale, then once per codec."""

import pytest

from support import check_served, consume_confluent, create_topic, make_messages, produce_confluent

PARTITIONS = 6


def round_trip(bootstrap: str, count: int, tag: str, **producer_conf) -> None:
    topic = create_topic(bootstrap, PARTITIONS)
    sent = make_messages(count, tag)
    placement = produce_confluent(bootstrap, topic, sent, **producer_conf)
    consumed, highs = consume_confluent(bootstrap, topic, PARTITIONS, count)
    check_served(sent, placement, consumed, highs)


def test_200k_keyed_messages_with_headers(broker):
    round_trip(broker.bootstrap, 200_000, "plain", **{"linger.ms": 5})


@pytest.mark.parametrize("codec", ["lz4", "zstd", "gzip", "snappy"])
def test_compressed_batches(broker, codec):
    # Larger batches so that each compressed batch holds many records.
    round_trip(broker.bootstrap, 20_000, codec, **{"compression.type": codec, "linger.ms": 20})
