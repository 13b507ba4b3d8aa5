"""The batch engine's bookkeeping without a model: prefix slots, UTF-8 and stop strings."""

from __future__ import annotations

from typing import Any

from llmagentos.llm.local_batch import prompt_chunk
from llmagentos.llm.local_prefix import MIN_PREFIX, PrefixCache, common_prefix
from llmagentos.llm.local_sequence import GenerationSpec, Sequence, utf8_complete

SYSTEM = list(range(100, 100 + 3 * MIN_PREFIX))  # a shared few-shot prefix


def test_common_prefix_counts_the_shared_head() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 3, 4]) == 3
    assert common_prefix([1, 2, 3], [1, 9, 3]) == 1
    assert common_prefix([], [1]) == 0
    long = list(range(1000))
    assert common_prefix(long, [*long[:777], -1, *long[778:]]) == 777


def test_a_prompt_with_no_match_is_stored_then_served() -> None:
    cache = PrefixCache([8, 9])
    first = [*SYSTEM, 1, 2, 3]
    miss = cache.match(first)
    assert miss.slot is None and miss.store
    assert cache.use(miss) is None
    slot = cache.victim()
    cache.stored(slot, first)
    again = cache.match([*SYSTEM, 1, 2, 3])
    # The whole prompt is cached, but two tokens are evaluated again (for the logits,
    # and because llama.cpp rounds a lone token's attention differently).
    assert again.slot is slot and again.length == len(first) - 2 and not again.store


def test_a_slot_is_cut_to_what_its_users_share() -> None:
    cache = PrefixCache([8])
    slot = cache.victim()
    cache.stored(slot, [*SYSTEM, 1, 2, 3, 4])
    other = cache.match([*SYSTEM, 7, 7])
    assert other.length == len(SYSTEM) and not other.store
    assert cache.use(other) == len(SYSTEM)  # more than half shared: cut to it
    assert slot.tokens == SYSTEM
    assert cache.stats()["prefix_hits"] == 1


def test_short_matches_do_not_count_and_lru_slots_go_first() -> None:
    cache = PrefixCache([8, 9])
    a, b = cache.victim(), None
    cache.stored(a, [*SYSTEM, 1])
    b = cache.victim()
    assert b is not a  # a free slot before any used one
    cache.stored(b, [5] * (4 * MIN_PREFIX))
    cache.use(cache.match([*SYSTEM, 2]))  # a is used now: b is the oldest
    assert cache.victim() is b
    short = cache.match([*SYSTEM[: MIN_PREFIX - 1], 0, 0])
    assert short.slot is None and short.store
    assert not cache.match([1] * MIN_PREFIX).store  # too short to be worth a slot


def test_a_request_waits_for_a_prompt_about_to_be_stored() -> None:
    cache = PrefixCache([8])
    cache.expect(1, [*SYSTEM, 1, 2])
    follower = [*SYSTEM, 3, 4]
    assert cache.should_wait(follower, cache.match(follower))
    assert not cache.should_wait([1, 2, 3], cache.match([1, 2, 3]))
    cache.forget(1)
    assert not cache.should_wait(follower, cache.match(follower))
    assert not PrefixCache([]).match(follower).store  # cache off: nothing to store


def test_utf8_complete_drops_a_partial_character() -> None:
    assert utf8_complete("añb".encode()) == 4
    assert utf8_complete("añ".encode()[:-1]) == 1
    assert utf8_complete("€".encode()[:2]) == 0
    assert utf8_complete(b"") == 0


def test_stop_strings_cut_the_text_and_are_never_streamed() -> None:
    sent: list[Any] = []
    spec = GenerationSpec("p", stop=("END",), stream=True)
    sequence = Sequence(0, spec, lambda *e: sent.append(e))
    sequence.max_tokens = 10
    for token, piece in enumerate([b"one ", b"E", b"N", b"D two"]):
        finish = sequence.advance(token, piece, eog=False)
    assert finish == "stop"
    result = sequence.completion(finish)
    assert result.text == "one " and result.completion_tokens == 4
    assert "".join(text for kind, text in sent if kind == "text") == "one "


def test_max_tokens_and_eog_finish_a_sequence() -> None:
    sequence = Sequence(0, GenerationSpec("p"), lambda *e: None)
    sequence.max_tokens = 2
    assert sequence.advance(1, b"a", eog=False) is None
    assert sequence.advance(2, b"b", eog=False) == "length"
    other = Sequence(1, GenerationSpec("p"), lambda *e: None)
    other.max_tokens = 5
    assert other.advance(3, b"", eog=True) == "stop"
    assert other.completion("stop").completion_tokens == 0


def test_a_prompt_is_never_decoded_one_token_alone() -> None:
    assert prompt_chunk(38, 512) == 38
    assert prompt_chunk(600, 512) == 512
    assert prompt_chunk(513, 512) == 511  # not 512 and then 1
    assert prompt_chunk(40, 1) == 0  # no room this step
    for remaining in range(2, 40):
        for budget in range(0, 40):
            take = prompt_chunk(remaining, budget)
            assert take != 1 and remaining - take != 1 and take <= budget
