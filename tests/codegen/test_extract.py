"""Code out of model replies: fences, unclosed fences, prose, demos."""

from __future__ import annotations

import pytest

from llmagentos.codegen.extract import extract_code, strip_top_level_calls

FENCE = "```"


def test_a_python_fence_with_prose_around_it() -> None:
    reply = (
        f"Sure! Here it is:\n{FENCE}python\ndef f(x):\n    return x + 1\n{FENCE}\n\nThis adds one."
    )
    assert extract_code(reply, "f") == "def f(x):\n    return x + 1\n"


def test_an_unclosed_fence_cut_off_by_the_token_limit() -> None:
    reply = f"{FENCE}python\ndef f(x):\n    total = x\n    return total"
    assert extract_code(reply, "f") == "def f(x):\n    total = x\n    return total\n"


def test_the_block_that_defines_the_entry_point_wins() -> None:
    reply = (
        f"{FENCE}text\n>>> f(1)\n2\n{FENCE}\n"
        f"{FENCE}python\nprint('hello world, a long unrelated block')\n{FENCE}\n"
        f"{FENCE}py\ndef f(x):\n    return 2 * x\n{FENCE}"
    )
    code = extract_code(reply, "f")
    assert "def f(x):" in code and "print" not in code and ">>>" not in code


def test_helpers_in_other_blocks_are_kept() -> None:
    reply = (
        f"{FENCE}python\nimport math\n{FENCE}\nthen\n"
        f"{FENCE}python\ndef f(x):\n    return math.sqrt(x)\n{FENCE}"
    )
    assert extract_code(reply, "f") == "import math\n\ndef f(x):\n    return math.sqrt(x)\n"


def test_unfenced_code_after_prose_and_before_more_prose() -> None:
    reply = (
        "Here is a function that works:\n"
        "def f(x):\n    return x * 3\n"
        "This function multiplies x by three, as asked."
    )
    assert extract_code(reply, "f") == "def f(x):\n    return x * 3\n"


def test_example_usage_at_the_top_level_is_dropped() -> None:
    reply = (
        f"{FENCE}python\nLIMIT = 3\n\ndef f(x):\n    '''Doc.'''\n    return min(x, LIMIT)\n\n"
        "# Example usage:\nprint(f(10))  # Output: 3\nassert f(1) == 1\n"
        "for i in range(3):\n    print(f(i))\n"
        f"if __name__ == '__main__':\n    f(2)\n{FENCE}"
    )
    code = extract_code(reply, "f")
    assert "print" not in code and "assert" not in code and "__main__" not in code
    assert "LIMIT = 3" in code and "return min(x, LIMIT)" in code and "'''Doc.'''" in code


def test_code_that_does_not_parse_is_kept_for_the_tests_to_report() -> None:
    broken = "def f(x)\n    return x\nprint(f(1))\n"
    assert strip_top_level_calls(broken) == broken


@pytest.mark.parametrize("reply", ["", "I cannot help with that."])
def test_no_code_at_all(reply: str) -> None:
    assert extract_code(reply, "f").strip() == reply.strip()
