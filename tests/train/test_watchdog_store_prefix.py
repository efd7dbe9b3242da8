"""The watchdog's keys: every rank of an elastic job must use the same prefix, whatever its own restart count (a node
that joins later counts from 0); other jobs keep the restart count, since their store may outlive a round."""

from __future__ import annotations

from llm_launch.train.watchdog import store_prefix


def test_ranks_of_an_elastic_round_agree_whatever_their_restart_counts():
    joined_late = {"TORCHELASTIC_RUN_ID": "job", "TORCHELASTIC_RESTART_COUNT": "0", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
    restarted = {**joined_late, "TORCHELASTIC_RESTART_COUNT": "2"}
    assert store_prefix(joined_late) == store_prefix(restarted) == "llm_launch/watchdog/job/"


def test_a_shared_store_keeps_rounds_apart_by_restart_count():
    assert store_prefix({"TORCHELASTIC_RUN_ID": "job", "TORCHELASTIC_RESTART_COUNT": "2"}) == "llm_launch/watchdog/job/2/"
    assert store_prefix({}) == "llm_launch/watchdog/run/0/"
