"""The test bed's Kafka cluster ids (tests/testbed/kafka.py)."""

from __future__ import annotations

import base64

from testbed.kafka import _random_cluster_id


def test_cluster_ids_never_look_like_an_option_and_decode_to_16_bytes():
    # about one plain base64 id in 64 starts with "-", which `kafka-storage format -t` rejects
    ids = [_random_cluster_id() for _ in range(3000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
