"""The shape every user-facing error message has: one line, naming where, saying what."""


def assert_one_line(msg: str, prefix: str, fragment: str) -> None:
    assert msg.startswith(prefix), msg
    assert fragment in msg, msg
    assert "\n" not in msg, msg
